"""The daemon's Prometheus metrics: counts of what happened, and how long each stage of a frame takes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

STAGES = ("capture", "preprocess", "invoke", "postprocess")
# Seconds: from a resize of a small frame (~0.1 ms) to a slow camera read on a Pi Zero.
BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # our own, so tests and reloads never see duplicates
        r = self.registry
        self.frames = Counter("binbot_frames", "Frames classified", registry=r)
        self.dropped = Counter("binbot_frames_dropped", "Frames dropped because a newer one arrived first", registry=r)
        self.errors = Counter("binbot_errors", "Errors, by where they happened", ["kind"], registry=r)
        self.reopens = Counter("binbot_source_reopens", "Times the frame source was reopened after failing", registry=r)
        self.unreadable = Counter("binbot_source_unreadable", "Frames or files the source passed over as unreadable",
                                  registry=r)
        self.events = Counter("binbot_events", "Events: stable changes of the item in view", registry=r)
        self.reloads = Counter("binbot_reloads", "Bundle reloads, by outcome", ["outcome"], registry=r)
        self.fps = Gauge("binbot_fps", "Frames classified per second, over the last second or so", registry=r)
        self.output_lines = Counter("binbot_output_lines", "Lines written, by output", ["output"], registry=r)
        self.output_failures = Counter("binbot_output_write_failures",
                                       "Lines dropped because they could not be written, by output", ["output"], registry=r)
        self.output_failing = Gauge("binbot_output_failing", "1 while an output cannot be written", ["output"], registry=r)
        self.output_dropped = Counter("binbot_output_dropped", "Items an output dropped because it fell behind",
                                      ["output"], registry=r)
        self.output_errors = Counter("binbot_output_errors", "Errors raised by an output", ["output"], registry=r)
        self.http_refused = Counter("binbot_http_refused", "HTTP connections turned away: too many at once",
                                    registry=r)
        self.model = Gauge("binbot_model_info", "The model being served (value 1)", ["model", "runtime"], registry=r)
        stage = Histogram("binbot_stage_seconds", "Time per frame in each stage", ["stage"], buckets=BUCKETS, registry=r)
        self.stage = {name: stage.labels(name) for name in STAGES}
        for kind in ("source", "inference", "reload"):
            self.errors.labels(kind)
        for outcome in ("ok", "failed"):
            self.reloads.labels(outcome)

    def serving(self, model: str, runtime: str) -> None:
        self.model.clear()
        self.model.labels(model, runtime).set(1)

    def text(self) -> bytes:
        return generate_latest(self.registry)
