"""`binbot run`: frames from a source, classified by a bundle, handed to the outputs, under systemd.

Threads: capture (source -> newest-frame slot), HTTP, each slow output's own, and a bundle loader
on SIGHUP. Everything else happens in the main loop, which also dispatches signals: the handlers
only record them, and are installed before the slow bundle load so that a SIGTERM then is honoured.

Shutdown fits the unit's TimeoutStopSec (5 s): the frame in hand is finished, the capture thread is
given CAPTURE_DEADLINE, the HTTP server stops, and the outputs close side by side within
outputs.CLOSE_BUDGET (the servo back at rest, MQTT's `offline` sent, files complete); what did not
finish is logged by name. Whatever fails at start-up, the outputs already opened are closed the same way.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

from binbot.device import sdnotify
from binbot.device.bundle import LoadedBundle, load_bundle
from binbot.device.capture import Capture, Captured, LatestFrame
from binbot.device.config import RunConfig
from binbot.device.frame_step import FrameStep, now_iso
from binbot.device.httpserver import serve
from binbot.device.metrics import Metrics
from binbot.device.outputs import CLOSE_BUDGET, FrameRecord, LatestResult, Outputs, build_outputs
from binbot.device.reload import Reloader
from binbot.device.service_status import ServiceStatus
from binbot.device.smoothing import Smoother
from binbot.device.source import Source
from binbot.errors import BinbotError

CAPTURE_DEADLINE = 1.0  # seconds to wait for the capture thread on shutdown (a camera read takes far less)
SERVER_STOP = 0.5  # seconds the HTTP server may take to stop: its poll interval
# All of shutdown, at most: the unit's TimeoutStopSec must leave room beyond it (tests/test_systemd.py checks).
SHUTDOWN_BUDGET = CAPTURE_DEADLINE + SERVER_STOP + CLOSE_BUDGET
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
FIRST_OPEN_WAIT = 10.0  # seconds start-up waits for the source's first open to succeed or fail

log = logging.getLogger("binbot.daemon")


class Daemon:
    """Classifies frames from source with config's bundle until SIGTERM/SIGINT or the source ends."""

    def __init__(self, config: RunConfig, source: Source):
        self.config, self.source = config, source
        self.metrics = Metrics()
        self.slot = LatestFrame(self.metrics)
        self.status = ServiceStatus(self.metrics)
        self.reloader = Reloader(lambda: self._load("reload"), self.metrics)
        self.model: LoadedBundle | None = None
        self.step: FrameStep | None = None
        self.capture: Capture | None = None
        self.outputs: Outputs | None = None
        self.latest: LatestResult | None = None
        self._signals: list[int] = []
        self._stopping = False
        self._started = time.monotonic()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or a replay played once ends); 0 on a clean stop."""
        previous = {signum: signal.signal(signum, self._record_signal) for signum in HANDLED_SIGNALS}
        server = None
        try:
            self.model = self._load("starting")
            self.metrics.serving(self.model.bundle.id, self.model.classifier.runtime)
            self._dispatch_signals()
            if self._stopping:
                return 0
            self.step = self._step_for(self.model)
            self.outputs, self.latest = build_outputs(self.config, self.metrics)
            self.capture = Capture(self.source, self.slot, self.metrics, self.step.resize)
            server = self._serve()
            log.info("source: %s", self.source.describe())
            self.capture.start()
            if self._source_opens():
                self._loop()
        finally:
            self._shut_down(server)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        elapsed = time.monotonic() - self._started
        frames = self.status.frames
        log.info("stopped after %d frames in %.1f s (%.1f fps overall)", frames, elapsed, frames / elapsed)
        return 0

    def _source_opens(self) -> bool:
        """Wait (signals still heard) for the source's first open. A camera or file that cannot be opened at
        start-up is a one-line error (systemd restarts the service), not a thread retrying for ever unseen;
        one that hangs as it opens is waited out by the loop, /healthz saying so. False: stopped meanwhile."""
        deadline = time.monotonic() + FIRST_OPEN_WAIT
        while not self.capture.first_open(0.2) and time.monotonic() < deadline:
            self._dispatch_signals()
            if self._stopping:
                return False
        if self.capture.first_error:
            raise BinbotError(f"source: {self.capture.first_error}")
        return True

    def _shut_down(self, server) -> None:
        """Stop capture and the HTTP server, then close the outputs side by side, within the unit's stop timeout."""
        sdnotify.notify("STOPPING=1")
        started = time.monotonic()
        if self.capture:
            self.capture.stop(CAPTURE_DEADLINE)
        if server:
            server.shutdown()
        late = self.outputs.close() if self.outputs else []
        log.info("shutdown took %.2f s%s", time.monotonic() - started, f"; {', '.join(late)} left unfinished" if late else "")

    def stop(self) -> None:
        """Finish the frame in hand and return from run(), as SIGTERM does; callable from any thread."""
        self._signals.append(signal.SIGTERM)

    def _record_signal(self, signum: int, _frame) -> None:
        self._signals.append(signum)

    def _loop(self) -> None:
        while not self._stopping:
            self._dispatch_signals()
            self._adopt_reloaded()
            item = self.slot.take(timeout=0.2)
            if item is not None:
                self.classify(item)
            elif self.slot.ended:
                log.info("source ended")
                return
            self.status.tick(self.model.bundle.id, self.capture.state)

    def classify(self, item: Captured) -> None:
        """Run one captured frame through the model and hand what it gave to the outputs."""
        bundle = self.model.bundle
        try:
            step = self.step(item.model_input)
        except (ValueError, RuntimeError) as error:
            self.metrics.errors.labels("inference").inc()
            log.warning("frame %d: not classified: %s", item.id, error)
            return
        stage = self.metrics.stage
        stage["preprocess"].observe(item.resize_seconds + step.seconds["preprocess"])
        stage["invoke"].observe(step.seconds["invoke"])
        stage["postprocess"].observe(step.seconds["postprocess"])
        when = now_iso()
        self.outputs.frame(FrameRecord(time=when, frame=item.id, origin=item.frame.origin, model=bundle.id,
                                       scores=dict(zip(bundle.class_names, step.probabilities.tolist())),
                                       rgb=item.frame.rgb, **step.result))
        if step.change is not None:
            self.metrics.events.inc()
            self.outputs.event({"time": when, **step.change, "frame": item.id, "origin": item.frame.origin,
                                "model": bundle.id})
        self.status.classified(bundle.id)

    def _dispatch_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGHUP:
                log.info("SIGHUP: reloading %s", self.config.bundle)
                self.reloader.start(self.model.bundle.id)
            else:
                log.info("%s: finishing and exiting", signal.Signals(signum).name)
                self._stopping = True

    def _adopt_reloaded(self) -> None:
        incoming = self.reloader.take()
        if incoming is None:
            return
        old = self.model
        self.model, self.step = incoming, self._step_for(incoming, old)
        self.capture.prepare = self.step.resize
        self.metrics.serving(incoming.bundle.id, incoming.classifier.runtime)
        log.info("reload: now serving model %s (was %s)", incoming.bundle.id, old.bundle.id)

    def _step_for(self, model: LoadedBundle, old: LoadedBundle | None = None) -> FrameStep:
        if old is not None and model.bundle.class_names == old.bundle.class_names:
            smoother = self.step.smoother  # the same classes: the window goes on
        else:  # a window of another model's classes means nothing to this one
            smoother = Smoother(self.config.window, self.config.threshold)
        return FrameStep(model.classifier, model.bundle.class_names, self.config.top_k, smoother,
                         model.bundle.resize_policy)

    def _load(self, why: str) -> LoadedBundle:
        # Resolved at each load, so a `current` symlink switched by a deploy is followed on SIGHUP.
        path = Path(self.config.bundle).resolve()
        loaded = load_bundle(path, self.config.threads)
        log.info("%s: bundle %s (model %s) passed its self-test within %.4g on %s, %d thread(s)", why, path,
                 loaded.bundle.id, loaded.selftest_difference, loaded.classifier.runtime, self.config.threads)
        return loaded

    def _serve(self):
        address = self.config.http_address
        if address is None:
            return None
        try:
            server = serve(address, self.health, self.metrics.text, lambda: self.latest.result,
                           refused=self.metrics.http_refused.inc, routes=self.outputs.routes())
        except OSError as error:
            raise BinbotError(f"http {self.config.http}: cannot listen ({error.strerror or error})") from None
        host, port = server.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        view = " and the live view at /" if "/" in self.outputs.routes() else ""
        log.info("http: listening on http://%s:%d (/healthz, /metrics, /latest%s)", shown, port, view)
        return server

    def health(self) -> tuple[bool, dict]:
        """Healthy only while frames are being classified from an open source."""
        now = time.monotonic()
        if self.capture is None:
            return False, {"ok": False, "state": "starting", "uptime": round(now - self._started, 1)}
        last = self.status.last_frame_at
        age = None if last is None else now - last
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
            "fps": round(self.status.fps, 2),
            "last_frame_age": None if age is None else round(age, 3),
            "frames": self.status.frames,
            "dropped": self.slot.dropped,
            "source": {"name": self.source.describe(), "state": state, "error": capture.error,
                       "unreadable": self.source.unreadable},
            "reload_error": self.reloader.error,
            "outputs": self.outputs.health(),
            "uptime": round(now - self._started, 1),
        }
