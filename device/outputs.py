"""The outputs seam: where each frame's record and each item event go.

The inference loop hands every output each frame's record (FrameRecord: its result, every class's
score, and the frame itself to an output that asks for frames) and each event, and never waits on
one: an output whose work can be slow (a file, a pipe, a broker, a servo) does it on its own thread,
from a small bounded Handoff that drops the oldest item and counts it when the output falls behind.
Each output is one module with its own table of settings, its own metrics and a close() that
finishes its work by a deadline; binbot.device.registry names them. An output that raises is logged
and counted; the loop and the other outputs go on. On shutdown the outputs close side by side,
within one budget, so that all of them fit inside the unit's TimeoutStopSec.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from abc import ABC
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

from binbot.device.metrics import Metrics
from binbot.logs import Every

if TYPE_CHECKING:
    from binbot.device.config import RunConfig

log = logging.getLogger("binbot.outputs")

Item = TypeVar("Item")
CLOSE_BUDGET = 2.0  # seconds the outputs have, together, to finish their work on shutdown
# Answers one GET on the daemon's HTTP server, on that connection's own thread (never the loop's).
Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass(frozen=True)
class FrameRecord:
    """One classified frame, as the outputs are handed it."""

    time: str  # UTC, to the millisecond
    frame: int  # the capture's count
    origin: str  # the source's name for the frame (a replayed file's path), or ""
    model: str  # the bundle id
    label: str  # the frame's own top-1 class
    confidence: float
    top: list[dict]  # the top k classes: {"label", "p"}
    item: str | None  # the smoothed item in view
    scores: dict[str, float]  # every class's probability, in the model's order
    rgb: np.ndarray | None = None  # the frame the classifier saw, for an output that asked for frames

    @property
    def result(self) -> dict:
        """The frame as /latest, the results file and the live view show it: no scores, no pixels."""
        return {"time": self.time, "frame": self.frame, "origin": self.origin, "model": self.model,
                "label": self.label, "confidence": self.confidence, "top": self.top, "item": self.item}


class Output(ABC):
    """One place results go. frame() and event() are called from the inference loop, so neither may block."""

    name = "output"
    wants_frames = False  # True: the records it is handed carry the frame itself (rgb)

    def frame(self, record: FrameRecord) -> None:
        """One classified frame."""

    def event(self, event: dict) -> None:
        """The item in view changed."""

    def health(self) -> dict:
        """What /healthz says of this output."""
        return {}

    def routes(self) -> dict[str, Route]:
        """Paths this output answers on the daemon's HTTP server, if any."""
        return {}

    def close(self, until: float) -> None:
        """Finish or abandon pending work by time.monotonic() == until, and release what the output holds."""


@dataclass(frozen=True)
class OutputKind:
    """What binbot.device.registry needs of an output's module: its table's settings, and how to build it."""

    settings: type  # a binbot.schema dataclass: the output's table in binbot.toml
    build: Callable[[object, RunConfig, Metrics], Output | None]  # None: nothing to run (the view with http off)
    always_on: bool = False  # run with its defaults when the file has no table for it
    # Settles what depends on the daemon's own settings (keep's band_high is the threshold by default); may refuse.
    settle: Callable[[object, RunConfig], object] = lambda settings, config: settings


class Handoff(Generic[Item]):
    """A bounded queue from the loop to a worker thread that calls work(item) for each item.

    put() never blocks: when the queue is full, the oldest item is dropped and counted. A work()
    that raises is logged and counted, and the worker goes on with the next item.
    """

    def __init__(self, name: str, work: Callable[[Item], None], size: int, metrics: Metrics):
        self.name, self._work = name, work
        self._items: deque[Item] = deque(maxlen=size)
        self._ready = threading.Condition()
        self._closing = False
        self._dropped = metrics.output_dropped.labels(name)
        self._errors = metrics.output_errors.labels(name)
        self._failures = Every()
        self._thread = threading.Thread(target=self._run, name=f"output-{name}", daemon=True)
        self._thread.start()

    def put(self, item: Item) -> None:
        with self._ready:
            if len(self._items) == self._items.maxlen:
                self._dropped.inc()  # deque(maxlen) drops the oldest as the new one goes in
            self._items.append(item)
            self._ready.notify()

    def close(self, until: float) -> bool:
        """Let the worker finish what is queued, until time.monotonic() == until at most; False if it is still at work."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(max(0.0, until - time.monotonic()))
        if self._thread.is_alive():
            log.warning("%s: still busy at the shutdown deadline; %d item(s) not handled", self.name, len(self._items))
            return False
        return True

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._items or self._closing)
                if not self._items:
                    return
                item = self._items.popleft()
            try:
                self._work(item)
            except Exception as error:  # noqa: BLE001 - one bad item must not end the output
                self._errors.inc()
                if self._failures.due():
                    log.warning("%s: failed (%s: %s); going on", self.name, type(error).__name__, error)


class Outputs:
    """Every configured output, each called in turn; one that raises does not stop the others."""

    def __init__(self, outputs: list[Output], metrics: Metrics):
        self.outputs, self._metrics = outputs, metrics
        self._failures = Every()

    def frame(self, record: FrameRecord) -> None:
        """Hand one frame's record to every output; the frame itself only to those that asked for frames."""
        bare = dataclasses.replace(record, rgb=None)
        for output in self.outputs:
            self._call(output, output.frame, record if output.wants_frames else bare)

    def event(self, event: dict) -> None:
        for output in self.outputs:
            self._call(output, output.event, event)

    def health(self) -> dict:
        return {output.name: output.health() for output in self.outputs if output.health()}

    def routes(self) -> dict[str, Route]:
        return {path: route for output in self.outputs for path, route in output.routes().items()}

    def close(self, budget: float = CLOSE_BUDGET) -> list[str]:
        """Close every output at once, each on a thread of its own, within budget seconds; the names of
        those still closing then, which are logged (their threads are left to end with the process)."""
        until = time.monotonic() + budget
        closing = [(output, threading.Thread(target=self._call, args=(output, output.close, until),
                                             name=f"close-{output.name}", daemon=True)) for output in self.outputs]
        for _, thread in closing:
            thread.start()
        for _, thread in closing:
            thread.join(max(0.0, until - time.monotonic()))
        late = [output.name for output, thread in closing if thread.is_alive()]
        if late:
            log.warning("shutdown: %s did not finish closing within %g s", ", ".join(late), budget)
        return late

    def _call(self, output: Output, method: Callable, *args) -> None:
        try:
            method(*args)
        except Exception as error:  # noqa: BLE001 - an output's bug must not stop classification
            self._metrics.output_errors.labels(output.name).inc()
            if self._failures.due(output.name):
                log.warning("%s: %s failed (%s: %s); going on", output.name, method.__name__, type(error).__name__,
                            error)


class LatestResult(Output):
    """The last frame's result, for /latest."""

    name = "latest"

    def __init__(self) -> None:
        self.result: dict | None = None

    def frame(self, record: FrameRecord) -> None:
        self.result = record.result


def build_outputs(config: RunConfig, metrics: Metrics) -> tuple[Outputs, LatestResult]:
    """The outputs config turns on, in the registry's order, and the /latest one every daemon has.

    If one cannot start, those already open (pins, files, a broker) are closed before the error goes on.
    """
    from binbot.device import registry

    latest = LatestResult()
    outputs: list[Output] = [latest]
    try:
        for name in registry.names():
            settings = config.output(name)
            output = registry.kind(name).build(settings, config, metrics) if settings is not None else None
            if output is not None:
                outputs.append(output)
    except BaseException:
        Outputs(outputs, metrics).close()
        raise
    return Outputs(outputs, metrics), latest
