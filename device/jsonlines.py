"""The events and results outputs: JSON lines that outlive their failures (a full disk, a closed
pipe, a read-only file), written on a thread of their own so a slow pipe never holds up the loop.

The daemon must go on classifying whatever happens to where its lines go. A line that cannot be
written is dropped and counted; the failure is logged once, then at most once a minute while it
lasts; writing resumes by itself when it can (the disk has room again, the file can be opened).
A line is written whole or not at all: a partial write to a file is cut back off, so a reader
never meets half a line, and nothing written before a failure is lost.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from binbot.device.metrics import Metrics
from binbot.device.outputs import FrameRecord, Handoff, Output, OutputKind
from binbot.logs import Every
from binbot.schema import REQUIRED, setting

if TYPE_CHECKING:
    from binbot.device.config import RunConfig

log = logging.getLogger("binbot.jsonlines")

STDOUT = "-"
REOPEN_EVERY = 5.0  # seconds between attempts to open a file that could not be opened
QUEUE = 1000  # lines waiting to be written before the oldest is dropped


@dataclass(frozen=True)
class EventsSettings:
    file: str = setting(STDOUT, "JSON-lines file each item event is appended to; - is standard output (under "
                        "systemd, the journal: journalctl -u binbot -o cat)")


@dataclass(frozen=True)
class ResultsSettings:
    file: str = setting(REQUIRED, "JSON-lines file every frame's result (as /latest shows it) is appended to; "
                        "the table turns it on")


class JsonLinesOutput(Output):
    """Each event (name "events") or each frame's result (name "results") as a line of path."""

    def __init__(self, name: str, path: str, metrics: Metrics):
        self.name = name
        self._writer = JsonLinesWriter(name, path, metrics)
        self._handoff: Handoff[dict] = Handoff(name, self._writer.write, QUEUE, metrics)

    def frame(self, record: FrameRecord) -> None:
        if self.name == "results":
            self._handoff.put(record.result)

    def event(self, event: dict) -> None:
        if self.name == "events":
            self._handoff.put(event)

    def health(self) -> dict:
        return self._writer.health()

    def close(self, until: float) -> None:
        if self._handoff.close(until):
            self._writer.close()
        # else the worker is blocked in a write: its descriptor stays open, lest the number be reused under it


def _events(settings: EventsSettings, config: RunConfig, metrics: Metrics) -> JsonLinesOutput:
    log.info("events to %s", "stdout" if settings.file == STDOUT else settings.file)
    return JsonLinesOutput("events", settings.file, metrics)


EVENTS = OutputKind(EventsSettings, _events, always_on=True)
RESULTS = OutputKind(ResultsSettings, lambda settings, config, metrics: JsonLinesOutput("results", settings.file, metrics))


class JsonLinesWriter:
    """Appends one JSON object a line to path ("-": standard output)."""

    def __init__(self, name: str, path: str, metrics: Metrics, clock: Callable[[], float] = time.monotonic):
        self.name, self.path, self.clock = name, path, clock
        self._failures = Every(clock=clock)
        self._written, self._failed = metrics.output_lines.labels(name), metrics.output_failures.labels(name)
        self._failing = metrics.output_failing.labels(name)
        self._fd: int | None = None
        self._error = ""  # what went wrong, while it goes on
        self._dropped = 0  # lines dropped since it started going wrong
        self._dropped_total = 0
        self._opened_at = -float("inf")
        self._open()

    @property
    def where(self) -> str:
        return "stdout" if self.path == STDOUT else self.path

    def write(self, record: dict) -> bool:
        """Write record as one line; False (dropped, counted, logged) if it could not be."""
        if self._fd is None and not self._reopen():
            return self._dropped_line()
        data = (json.dumps(record) + "\n").encode()
        try:
            self._write_whole(data)
        except OSError as error:
            return self._dropped_line(error)
        self._written.inc()
        if self._error:
            log.info("%s: writing to %s again, after %d dropped line(s)", self.name, self.where, self._dropped)
            self._error, self._dropped = "", 0
            self._failing.set(0)
        return True

    def health(self) -> dict:
        return {"to": self.where, "ok": not self._error, "error": self._error, "dropped": self._dropped_total}

    def close(self) -> None:
        if self._fd is not None and self.path != STDOUT:
            os.close(self._fd)
        self._fd = None

    def _reopen(self) -> bool:
        # Standard output is not reopened: a closed fd 1 may since name another file.
        if self.path == STDOUT or self.clock() - self._opened_at < REOPEN_EVERY:
            return False
        return self._open()

    def _open(self) -> bool:
        self._opened_at = self.clock()
        try:
            if self.path == STDOUT:
                # A duplicate, so that if fd 1 was closed and reused for another file we never write into it.
                self._fd = os.dup(1)
            else:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            self._fail(error)
            return False
        return True

    def _write_whole(self, data: bytes) -> None:
        size_before = self._size()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            if size_before is not None and view.nbytes != len(data):
                try:
                    os.ftruncate(self._fd, size_before)  # the part of the line that did fit
                except OSError:
                    pass
            raise

    def _size(self) -> int | None:
        """The file's size, or None where it cannot be cut back (a pipe, a terminal, the journal)."""
        if self.path == STDOUT:
            return None
        try:
            return os.fstat(self._fd).st_size
        except OSError:
            return None

    def _dropped_line(self, error: OSError | None = None) -> bool:
        if error is not None:
            self._fail(error)
        self._dropped += 1
        self._dropped_total += 1
        self._failed.inc()
        return False

    def _fail(self, error: OSError) -> None:
        message = f"cannot write to {self.where} ({error.strerror or error})"
        if self._failures.due(message):
            more = f"; {self._dropped} line(s) dropped so far" if self._dropped else ""
            log.warning("%s: %s; classifying goes on, lines are dropped and counted%s", self.name, message, more)
        self._error = message
        self._failing.set(1)
