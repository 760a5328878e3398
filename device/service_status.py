"""What systemd and /healthz are told of progress: READY once, WATCHDOG while frames are classified,
and the frame rate in STATUS= once a second."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from binbot.device import sdnotify
from binbot.device.metrics import Metrics

log = logging.getLogger("binbot.daemon")


class ServiceStatus:
    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic):
        self._metrics, self._clock = metrics, clock
        self.frames = 0
        self.fps = 0.0
        self.last_frame_at: float | None = None
        self._ready_sent = False
        self._watchdog = sdnotify.watchdog_interval()
        self._last_ping = 0.0
        self._window_start, self._window_frames = clock(), 0

    def classified(self, model: str) -> None:
        """A frame was classified: count it, and tell systemd (READY once, WATCHDOG as due)."""
        self._metrics.frames.inc()
        self.frames += 1
        self._window_frames += 1
        self.last_frame_at = self._clock()
        if not self._ready_sent:
            self._ready_sent = True
            sdnotify.notify(f"READY=1\nSTATUS=classifying with model {model}")
            log.info("ready: first frame classified with model %s", model)
        if self._watchdog and self.last_frame_at - self._last_ping >= self._watchdog:
            # Petted only here, after a real inference: a stuck camera or interpreter stops it.
            sdnotify.notify("WATCHDOG=1")
            self._last_ping = self.last_frame_at

    def tick(self, model: str, source_state: str) -> None:
        """Called every loop; once a second, the fps figure and STATUS= for systemctl status."""
        now = self._clock()
        if now - self._window_start < 1.0:
            return
        self.fps = self._window_frames / (now - self._window_start)
        self._window_start, self._window_frames = now, 0
        self._metrics.fps.set(self.fps)
        sdnotify.notify(f"STATUS={self.fps:.1f} fps, model {model}, source {source_state}")
