"""The capture thread: reads a source into a one-frame slot, reopening the source when it fails."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from binbot.device.metrics import Metrics
from binbot.device.source import Frame, Source, SourceError

log = logging.getLogger("binbot.capture")

FIRST_BACKOFF, MAX_BACKOFF = 0.1, 5.0  # seconds between reopening attempts, doubling


@dataclass
class Captured:
    id: int
    frame: Frame  # as the source delivered it, for outputs that show or keep it
    model_input: np.ndarray | None = None  # the frame resized to the model's input size
    resize_seconds: float = 0.0


class LatestFrame:
    """Holds only the newest frame: a live source overwrites (the stale frame is dropped and
    counted); a non-live one (an unpaced replay) waits until its frame has been taken."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics
        self._ready = threading.Condition()
        self._item: Captured | None = None
        self.ended = False
        self.dropped = 0

    def put(self, item: Captured, live: bool, stop: threading.Event) -> None:
        with self._ready:
            while not live and self._item is not None and not stop.is_set():
                self._ready.wait(0.1)
            if self._item is not None and live:
                self._metrics.dropped.inc()
                self.dropped += 1
            self._item = item
            self._ready.notify_all()

    def end(self) -> None:
        with self._ready:
            self.ended = True
            self._ready.notify_all()

    def take(self, timeout: float) -> Captured | None:
        with self._ready:
            self._ready.wait_for(lambda: self._item is not None or self.ended, timeout)
            item, self._item = self._item, None
            self._ready.notify_all()
            return item


def describe(error: Exception) -> str:
    return str(error) if isinstance(error, SourceError) else f"{type(error).__name__}: {error}"


class Capture:
    """Runs source into slot on a thread; state says "starting", "open", "reopening" or "ended".

    Frames are resized for the model here (by prepare), so that resizing the next frame overlaps the
    interpreter's work on this one instead of adding to it.
    """

    def __init__(self, source: Source, slot: LatestFrame, metrics: Metrics,
                 prepare: Callable[[np.ndarray], np.ndarray]):
        self.source, self.slot, self.metrics = source, slot, metrics
        self.prepare = prepare  # frame -> model input; the daemon changes it when a reload does
        self.state, self.error = "starting", ""
        self.last_read_at: float | None = None  # time.monotonic() of the newest frame read
        self._unreadable_counted = 0
        self._next_id = 0
        self._first_open = threading.Event()  # set once the first open has succeeded or failed
        self.first_error = ""  # why the first open failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def first_open(self, timeout: float) -> bool:
        """Wait up to timeout for the thread's first open of the source: True once it has ended (opened or
        failed: see first_error), False if it is still under way (a camera can hang as it opens)."""
        return self._first_open.wait(timeout)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop reading and wait up to timeout for the thread; a capture never started just stops."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = FIRST_BACKOFF
        while not self._stop.is_set():
            delivered_before = self._next_id
            try:
                self.source.open()
                self._first_open.set()
                if self.state != "starting":
                    log.info("source: %s reopened", self.source.describe())
                self.state, self.error = "open", ""
                self.last_read_at = time.monotonic()  # opening counts as a sign of life
                self._deliver()
                if self.state == "ended":
                    return
            except Exception as error:  # noqa: BLE001 - whatever a camera library raises, the thread must live
                problem = describe(error)
                if not self._first_open.is_set():
                    self.first_error = problem
                    self._first_open.set()
                self.metrics.errors.labels("source").inc()
                if self.error != problem:
                    log.warning("source: %s; reopening (backing off up to %gs)", problem, MAX_BACKOFF)
                self.state, self.error = "reopening", problem
                self.metrics.reopens.inc()
            finally:
                self._close_source()
            if self._next_id > delivered_before:
                backoff = FIRST_BACKOFF  # it worked for a while: try again soon
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _count_unreadable(self) -> None:
        skipped = self.source.unreadable - self._unreadable_counted
        if skipped:
            self.metrics.unreadable.inc(skipped)
            self._unreadable_counted += skipped

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception as error:  # noqa: BLE001 - a failing close must not end the capture thread
            log.warning("source: closing failed (%s: %s)", type(error).__name__, error)

    def _deliver(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            try:
                frame = self.source.read()
            finally:
                self._count_unreadable()
            self.metrics.stage["capture"].observe(time.perf_counter() - start)
            self.last_read_at = time.monotonic()
            if frame is None:
                self.state = "ended"
                self.slot.end()
                break
            resize_start = time.perf_counter()
            resized = self.prepare(frame.rgb)
            resize_seconds = time.perf_counter() - resize_start
            self.slot.put(Captured(self._next_id, frame, resized, resize_seconds), self.source.live, self._stop)
            self._next_id += 1  # kept across reopenings, so that frame ids never repeat
