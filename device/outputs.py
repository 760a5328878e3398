"""The outputs seam: where each frame's result and each item event go.

The inference loop hands every output each frame's result (with the frame, to an output that asks
for it) and each event, and never waits on one: an output whose work can be slow (a file, a pipe,
a broker, a servo) does it on its own thread, from a small bounded Handoff that drops the oldest
item and counts it when the output falls behind. Each output is one module with its own settings,
its own metrics and a close() that finishes its work on shutdown. An output that raises is logged
and counted; the loop and the other outputs go on.
"""

from __future__ import annotations

import threading
import time
from abc import ABC
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Generic, TypeVar

import numpy as np

from binbot.device.config import RunConfig
from binbot.device.metrics import Metrics

Item = TypeVar("Item")
CLOSE_DEADLINE = 1.0  # seconds an output may take to finish its work on shutdown
# Answers one GET on the daemon's HTTP server, on that connection's own thread (never the loop's).
Route = Callable[[BaseHTTPRequestHandler], None]


class Output(ABC):
    """One place results go. Every method is called from the inference loop, so none may block."""

    name = "output"
    wants_frames = False  # True: frame() also gets the RGB frame the classifier saw
    wants_scores = False  # True: frame() also gets every class's probability, as scores={name: p}

    def frame(self, result: dict, rgb: np.ndarray | None) -> None:
        """One classified frame: its result as /latest shows it (and scores=, if the output wants them)."""

    def event(self, event: dict) -> None:
        """The item in view changed."""

    def health(self) -> dict:
        """What /healthz says of this output."""
        return {}

    def routes(self) -> dict[str, Route]:
        """Paths this output answers on the daemon's HTTP server, if any."""
        return {}

    def close(self) -> None:
        """Finish or abandon pending work (within CLOSE_DEADLINE) and release what the output holds."""


class Handoff(Generic[Item]):
    """A bounded queue from the loop to a worker thread that calls work(item) for each item.

    put() never blocks: when the queue is full, the oldest item is dropped and counted. A work()
    that raises is logged and counted, and the worker goes on with the next item.
    """

    def __init__(self, name: str, work: Callable[[Item], None], size: int, metrics: Metrics,
                 log: Callable[[str], None]):
        self.name, self._work, self._log = name, work, log
        self._items: deque[Item] = deque(maxlen=size)
        self._ready = threading.Condition()
        self._closing = False
        self._dropped = metrics.output_dropped.labels(name)
        self._errors = metrics.output_errors.labels(name)
        self._thread = threading.Thread(target=self._run, name=f"output-{name}", daemon=True)
        self._thread.start()

    def put(self, item: Item) -> None:
        with self._ready:
            if len(self._items) == self._items.maxlen:
                self._dropped.inc()  # deque(maxlen) drops the oldest as the new one goes in
            self._items.append(item)
            self._ready.notify()

    def close(self, deadline: float = CLOSE_DEADLINE) -> bool:
        """Let the worker finish what is queued, for deadline seconds at most; False if it is still at work."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(deadline)
        if self._thread.is_alive():
            self._log(f"{self.name}: still busy at the shutdown deadline; {len(self._items)} item(s) not handled")
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
                self._log(f"{self.name}: failed ({type(error).__name__}: {error}); going on")


class Outputs:
    """Every configured output, each called in turn; one that raises does not stop the others."""

    def __init__(self, outputs: list[Output], metrics: Metrics, log: Callable[[str], None]):
        self.outputs, self._metrics, self._log = outputs, metrics, log
        self.wants_frames = any(output.wants_frames for output in outputs)
        self.wants_scores = any(output.wants_scores for output in outputs)
        self._last_logged: dict[str, float] = {}

    def frame(self, result: dict, rgb: np.ndarray | None, scores: dict[str, float] | None = None) -> None:
        """Hand one frame to every output; scores (every class's probability) only to those that want them."""
        for output in self.outputs:
            frame = rgb if output.wants_frames else None
            if output.wants_scores:
                self._call(output, output.frame, result, frame, scores)
            else:
                self._call(output, output.frame, result, frame)

    def event(self, event: dict) -> None:
        for output in self.outputs:
            self._call(output, output.event, event)

    def health(self) -> dict:
        return {output.name: output.health() for output in self.outputs if output.health()}

    def routes(self) -> dict[str, Route]:
        return {path: route for output in self.outputs for path, route in output.routes().items()}

    def close(self) -> None:
        for output in self.outputs:
            self._call(output, output.close)

    def _call(self, output: Output, method: Callable, *args) -> None:
        try:
            method(*args)
        except Exception as error:  # noqa: BLE001 - an output's bug must not stop classification
            self._metrics.output_errors.labels(output.name).inc()
            now = time.monotonic()
            if now - self._last_logged.get(output.name, -60.0) >= 60.0:
                self._last_logged[output.name] = now
                self._log(f"{output.name}: {method.__name__} failed ({type(error).__name__}: {error}); going on")


class LatestResult(Output):
    """The last frame's result, for /latest."""

    name = "latest"

    def __init__(self) -> None:
        self.result: dict | None = None

    def frame(self, result: dict, rgb: np.ndarray | None) -> None:
        self.result = result


def build_outputs(config: RunConfig, metrics: Metrics, log: Callable[[str], None]) -> tuple[Outputs, LatestResult]:
    """The outputs the settings ask for, and the /latest one every daemon has."""
    latest = LatestResult()
    outputs: list[Output] = [latest]
    try:
        _add_configured(outputs, config, metrics, log)
    except BaseException:  # one that cannot start: those already open (pins, files, a broker) are let go
        Outputs(outputs, metrics, log).close()
        raise
    return Outputs(outputs, metrics, log), latest


def _add_configured(outputs: list[Output], config: RunConfig, metrics: Metrics, log: Callable[[str], None]) -> None:
    from binbot.device.jsonlines import JsonLinesOutput

    outputs.append(JsonLinesOutput("events", config.events, metrics, log))
    if config.results:
        outputs.append(JsonLinesOutput("results", config.results, metrics, log))
    if config.view and config.http_address is not None:  # the live view lives on the HTTP server
        from binbot.device.view import LiveView

        outputs.append(LiveView(config.view_fps, config.view_width, config.view_clients, metrics, log))
    if "gpio" in config.tables:
        from binbot.device.gpio import build_gpio

        outputs.append(build_gpio(config, metrics, log))
    if "mqtt" in config.tables:  # imported only then: paho-mqtt is an optional extra
        from binbot.device.mqtt import mqtt_output

        outputs.append(mqtt_output(config, metrics, log))
    if "keep" in config.tables:
        from binbot.device.keep import keep_output

        outputs.append(keep_output(config, metrics, log))
