"""`binbot run`: frames from a source, classified by a bundle, smoothed into events, under systemd.

Threads: capture (source -> newest-frame slot), HTTP, and a bundle loader on SIGHUP. Everything
else happens in the main loop, which also dispatches signals: the handlers only record them.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from binbot.device import sdnotify
from binbot.device.bundle import Bundle, LoadedBundle, load_bundle, read_selftest_inputs
from binbot.device.capture import Capture, Captured, LatestFrame
from binbot.device.config import RunConfig
from binbot.device.frames import resize_to_input
from binbot.device.httpserver import serve
from binbot.device.jsonlines import JsonLinesWriter
from binbot.device.metrics import Metrics
from binbot.device.smoothing import Smoother
from binbot.device.source import Source, open_source
from binbot.device.source_replay import ReplaySource
from binbot.errors import BinbotError

SHUTDOWN_DEADLINE = 1.5  # seconds to wait for the capture thread; systemd's is the 2 s


def log(message: str) -> None:
    try:
        print(f"binbot run: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass  # stderr closed or gone: the daemon goes on without its log


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Daemon:
    def __init__(self, config: RunConfig):
        self.config = config
        self.metrics = Metrics()
        self.model: LoadedBundle | None = None
        self.smoother = Smoother(config.window, config.threshold)
        self.slot = LatestFrame(self.metrics)
        self.capture: Capture | None = None
        self.latest: dict | None = None
        self.events: JsonLinesWriter | None = None
        self.results: JsonLinesWriter | None = None
        self.last_frame_at: float | None = None
        self.fps = 0.0
        self.frames = 0
        self.reload_error = ""
        self._signals: list[int] = []
        self._stopping = False
        self._incoming: LoadedBundle | None = None
        self._loader: threading.Thread | None = None
        self._ready_sent = False
        self._watchdog = sdnotify.watchdog_interval()
        self._last_ping = 0.0
        self._window_start, self._window_frames = time.monotonic(), 0
        self._started = time.monotonic()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or a replay played once ends); 0 on a clean stop."""
        self.model = self._load("starting")
        classifier = self.model.classifier
        self.capture = Capture(self._source(), self.slot, self.metrics, log, (classifier.height, classifier.width))
        self.events = JsonLinesWriter("events", self.config.events, self.metrics, log)
        self.results = JsonLinesWriter("results", self.config.results, self.metrics, log) if self.config.results else None
        server = self._serve()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda received, _frame: self._signals.append(received))
        log(f"source: {self.capture.source.describe()}; events to {self.events.where}")
        self.capture.start()
        try:
            self._loop()
        finally:
            sdnotify.notify("STOPPING=1")
            self.capture.stop(SHUTDOWN_DEADLINE)
            if server:
                server.shutdown()
            for writer in (self.events, self.results):
                if writer:
                    writer.close()
        elapsed = time.monotonic() - self._started
        log(f"stopped after {self.frames} frames in {elapsed:.1f} s ({self.frames / elapsed:.1f} fps overall)")
        return 0

    def _loop(self) -> None:
        while not self._stopping:
            self._dispatch_signals()
            self._adopt_reloaded()
            item = self.slot.take(timeout=0.2)
            if item is not None:
                self._classify(item)
                if self.results and self.latest and self.latest["frame"] == item.id:
                    self.results.write(self.latest)
            elif self.slot.ended:
                log("source ended")
                return
            self._tick()

    def _classify(self, item: Captured) -> None:
        probabilities = self._infer(item)
        if probabilities is None:
            return
        self._publish(item, probabilities)
        self._progress()

    def _infer(self, item: Captured) -> np.ndarray | None:
        """Resize, invoke, dequantize, each stage timed; None (counted, logged) if the frame cannot be."""
        classifier, stage = self.model.classifier, self.metrics.stage
        try:
            start = time.perf_counter()
            # The capture thread resized the frame already; this is a no-op unless a reload changed the size.
            classifier.set_input(resize_to_input(item.frame.rgb, classifier.height, classifier.width))
            prepared = time.perf_counter()
            classifier.interpreter.invoke()
            invoked = time.perf_counter()
            probabilities = classifier.probabilities()
        except (ValueError, RuntimeError) as error:
            self.metrics.errors.labels("inference").inc()
            log(f"frame {item.id}: not classified: {error}")
            return None
        stage["preprocess"].observe(item.resize_seconds + prepared - start)
        stage["invoke"].observe(invoked - prepared)
        stage["postprocess"].observe(time.perf_counter() - invoked)
        return probabilities

    def _publish(self, item: Captured, probabilities: np.ndarray) -> None:
        """The frame's result for /latest, and an event if the smoothed view changed."""
        bundle = self.model.bundle
        result, change = frame_result(probabilities, bundle.class_names, self.config.top_k, self.smoother)
        self.latest = {"time": now_iso(), "frame": item.id, "origin": item.frame.origin, "model": bundle.id, **result}
        if change is not None:
            event = {"time": self.latest["time"], **change,
                     "frame": item.id, "origin": item.frame.origin, "model": bundle.id}
            self.metrics.events.inc()
            self.events.write(event)

    def _progress(self) -> None:
        """A frame was classified: count it, and tell systemd (READY once, WATCHDOG as due)."""
        self.metrics.frames.inc()
        self.frames += 1
        self.last_frame_at = time.monotonic()
        self._window_frames += 1
        if not self._ready_sent:
            self._ready_sent = True
            sdnotify.notify(f"READY=1\nSTATUS=classifying with model {self.model.bundle.id}")
            log(f"ready: first frame classified with model {self.model.bundle.id}")
        if self._watchdog and self.last_frame_at - self._last_ping >= self._watchdog:
            # Petted only here, after a real inference: a stuck camera or interpreter stops it.
            sdnotify.notify("WATCHDOG=1")
            self._last_ping = self.last_frame_at

    def _tick(self) -> None:
        """Once a second: the fps figure, and STATUS= for systemctl status."""
        now = time.monotonic()
        if now - self._window_start < 1.0:
            return
        self.fps = self._window_frames / (now - self._window_start)
        self._window_start, self._window_frames = now, 0
        self.metrics.fps.set(self.fps)
        sdnotify.notify(f"STATUS={self.fps:.1f} fps, model {self.model.bundle.id}, source {self.capture.state}")

    def _dispatch_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGHUP:
                self._start_reload()
            else:
                log(f"{signal.Signals(signum).name}: finishing and exiting")
                self._stopping = True

    def _start_reload(self) -> None:
        if self._loader is not None and self._loader.is_alive():
            log("SIGHUP: a reload is already under way")
            return
        log(f"SIGHUP: reloading {self.config.bundle}")
        self._loader = threading.Thread(target=self._reload, name="reload", daemon=True)
        self._loader.start()

    def _reload(self) -> None:
        """On the loader thread: the old model keeps serving while the new one is verified."""
        try:
            self._incoming = self._load("reload")
        except BinbotError as error:
            self.reload_error = f"{now_iso()}: {error}"
            self.metrics.errors.labels("reload").inc()
            self.metrics.reloads.labels("failed").inc()
            log(f"reload failed, still serving model {self.model.bundle.id}: {error}")

    def _adopt_reloaded(self) -> None:
        incoming, self._incoming = self._incoming, None
        if incoming is None:
            return
        old = self.model
        if incoming.bundle.class_names != old.bundle.class_names:
            self.smoother.reset()  # a window of the old classes' scores means nothing to the new model
        self.model, self.reload_error = incoming, ""
        self.capture.input_size = (incoming.classifier.height, incoming.classifier.width)
        self.metrics.reloads.labels("ok").inc()
        self.metrics.serving(incoming.bundle.id, incoming.classifier.runtime)
        log(f"reload: now serving model {incoming.bundle.id} (was {old.bundle.id})")

    def _load(self, why: str) -> LoadedBundle:
        # Resolved at each load, so a `current` symlink switched by a deploy is followed on SIGHUP.
        path = Path(self.config.bundle).resolve()
        loaded = load_bundle(path, self.config.threads)
        log(f"{why}: bundle {path} (model {loaded.bundle.id}) passed its self-test within "
            f"{loaded.selftest_difference:.4g} on {loaded.classifier.runtime}, {self.config.threads} thread(s)")
        if why == "starting":
            self.metrics.serving(loaded.bundle.id, loaded.classifier.runtime)
        return loaded

    def _source(self) -> Source:
        return frame_source(self.config.source, self.model.bundle, self.config.loop, self.config.fps)

    def _serve(self):
        address = self.config.http_address
        if address is None:
            return None
        try:
            server = serve(address, self.health, self.metrics.text, lambda: self.latest,
                           refused=self.metrics.http_refused.inc)
        except OSError as error:
            raise BinbotError(f"http {self.config.http}: cannot listen ({error.strerror or error})") from None
        host, port = server.server_address[:2]
        log(f"http: listening on http://{host}:{port} (/healthz, /metrics, /latest)")
        return server

    def health(self) -> tuple[bool, dict]:
        """Healthy only while frames are being classified from an open source."""
        now = time.monotonic()
        age = None if self.last_frame_at is None else now - self.last_frame_at
        capture = self.capture
        ok = age is not None and age < self.config.stale_after and capture.state in ("open", "ended")
        state = capture.state
        if state == "open" and now - capture.last_read_at > self.config.stale_after:
            # A camera can hang inside its read; only the watchdog (systemd's restart) can end that.
            state = "stalled"
        model = self.model
        return ok, {
            "ok": ok,
            "model": model.bundle.id,
            "bundle": str(model.bundle.path),
            "runtime": model.classifier.runtime,
            "fps": round(self.fps, 2),
            "last_frame_age": None if age is None else round(age, 3),
            "frames": self.frames,
            "dropped": self.slot.dropped,
            "source": {"name": capture.source.describe(), "state": state, "error": capture.error,
                       "unreadable": capture.source.unreadable},
            "reload_error": self.reload_error,
            "outputs": {writer.name: writer.health() for writer in (self.events, self.results) if writer},
            "uptime": round(now - self._started, 1),
        }


def frame_source(spec: str, bundle: Bundle, loop: bool = True, fps: float = 0.0) -> Source:
    """The source spec names; without one, a replay of the bundle's self-test frames (held in memory)."""
    if not spec:
        return ReplaySource(bundle.path / "selftest.npz", loop, fps, frames=read_selftest_inputs(bundle))
    return open_source(spec, bundle.height, bundle.width, loop, fps)


def frame_result(probabilities: np.ndarray, names: list[str], k: int, smoother: Smoother) -> tuple[dict, dict | None]:
    """One frame's result (label, confidence, top k, item in view) and, when the smoothed view changed,
    the event's label, confidence and top k; the caller stamps both with time, frame and model."""
    decision = smoother.update(probabilities)
    label = int(np.argmax(probabilities))
    result = {
        "label": names[label], "confidence": round(float(probabilities[label]), 4),
        "top": top_k(probabilities, names, k),
        "item": None if smoother.current is None else names[smoother.current],
    }
    if decision is None:
        return result, None
    return result, {"label": names[decision.label], "confidence": round(decision.confidence, 4),
                    "top": top_k(decision.mean, names, k)}


def top_k(probabilities: np.ndarray, names: list[str], k: int) -> list[dict]:
    """The k likeliest classes; ties in class order, so the first is always argmax's label."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"label": names[i], "p": round(float(probabilities[i]), 4)} for i in order]
