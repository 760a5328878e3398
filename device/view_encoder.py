"""The live view's pictures: the newest classified frame as a JPEG, at most fps a second, only while watched.

The loop only leaves a reference to its newest frame (offer); the encoder's thread, started with the
first viewer, encodes it as soon as it is seen but never sooner than an interval after the last one,
and every viewer is sent that one encoding.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Histogram

from binbot.device.jpeg import encode_jpeg
from binbot.device.metrics import BUCKETS, Metrics
from binbot.logs import Every

log = logging.getLogger("binbot.view")

JPEG_QUALITY = 80
POLL = 0.02  # seconds between looks for a new frame while someone watches


@dataclass(frozen=True)
class Jpeg:
    number: int  # 1, 2, ... in the order encoded
    frame: int  # the view's count of the frame it shows
    at: float  # time.monotonic() when encoded
    data: bytes


class Encoder:
    """Encodes the newest frame, at most once an interval, while anyone watches; its thread starts with
    the first viewer."""

    def __init__(self, interval: float, width: int, metrics: Metrics):
        self.interval, self.width = interval, width
        registry = metrics.registry
        self._encoded = Counter("binbot_view_frames_encoded", "JPEG frames encoded for the live view",
                                registry=registry)
        self._seconds = Histogram("binbot_view_encode_seconds", "Time to scale and encode one live view frame",
                                  buckets=BUCKETS, registry=registry)
        self._errors = metrics.output_errors.labels("view")
        self._newest: tuple[int, np.ndarray] | None = None
        self.latest: Jpeg | None = None
        self.closed = False
        self._viewers = 0
        self._changed = threading.Condition()
        self._encoding = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failures = Every()

    def offer(self, number: int, rgb: np.ndarray) -> None:
        """The newest classified frame; called by the loop, so it keeps a reference and nothing more."""
        self._newest = (number, rgb)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """While in it, frames are encoded for a viewer."""
        with self._changed:
            self._viewers += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="output-view", daemon=True)
                self._thread.start()
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._viewers -= 1

    def wait(self, after: int, timeout: float) -> Jpeg | None:
        """The first JPEG numbered above after, or after timeout the latest one; None if there is none or closed."""
        with self._changed:
            self._changed.wait_for(lambda: self.closed or (self.latest is not None and self.latest.number > after),
                                   timeout)
            return None if self.closed else self.latest

    def snapshot(self) -> Jpeg | None:
        """The newest frame as a JPEG: the one viewers were last sent if it is that recent, else encoded now."""
        return self._refresh(max_age=self.interval)

    def close(self, until: float) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, until - time.monotonic()))

    def _run(self) -> None:
        # A new frame is encoded as soon as it is seen, but never sooner than interval after the last one:
        # a slow classifier's frames are not shown late, and a fast one's are not sent more often than [view] fps.
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._viewers or self.closed)
                if self.closed:
                    return
            latest, newest, now = self.latest, self._newest, time.monotonic()
            due = latest.at + self.interval if latest else now
            if now >= due and newest is not None and (latest is None or newest[0] != latest.frame):
                try:
                    self._refresh()
                except Exception as error:  # noqa: BLE001 - one bad frame must not end the view
                    self._errors.inc()
                    if self._failures.due():
                        log.warning("view: encoding a frame failed (%s: %s); going on", type(error).__name__, error)
                continue
            with self._changed:  # the loop only leaves a reference, so new frames are looked for, not signalled
                self._changed.wait_for(lambda: self.closed, max(POLL, due - now))

    def _refresh(self, max_age: float = 0.0) -> Jpeg | None:
        with self._encoding:
            newest, latest = self._newest, self.latest
            if newest is None:
                return latest
            if latest is not None and (latest.frame == newest[0] or time.monotonic() - latest.at < max_age):
                return latest
            started = time.perf_counter()
            data = encode_jpeg(newest[1], JPEG_QUALITY, self.width)
            self._seconds.observe(time.perf_counter() - started)
            self._encoded.inc()
            with self._changed:
                self.latest = Jpeg(latest.number + 1 if latest else 1, newest[0], time.monotonic(), data)
                self._changed.notify_all()
            return self.latest
