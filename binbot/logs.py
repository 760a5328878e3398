"""Log lines of BinBot's long-running commands, through `logging`, readable by a person and by journald.

Every line is "PROGRAM: message" on standard error. Under systemd, where standard error is the
journal (JOURNAL_STREAM names it), each line starts with its syslog priority as <N>, which journald
takes off and keeps, so `journalctl -p warning -u binbot` shows the warnings and worse alone.
Repeated failures are logged through Every: once when they start, then at most once an interval.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

ROOT = "binbot"
# syslog's priorities (sd-daemon(3)), by logging's levels.
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class Formatter(logging.Formatter):
    def __init__(self, program: str, journal: bool):
        super().__init__()
        self.program, self.journal = program, journal

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.program}: {record.getMessage()}"
        if not self.journal:
            return line
        priority = PRIORITIES.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        return f"<{priority}>{line}"


class Handler(logging.StreamHandler):
    """Standard error at the time of each line, which may have been closed or redirected since."""

    def __init__(self):
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        try:
            super().emit(record)
        except (OSError, ValueError, AttributeError):
            pass  # stderr closed or gone: the daemon goes on without its log

    def handleError(self, record: logging.LogRecord) -> None:
        pass  # the same: a log that cannot be written must not print a traceback about it


def setup(program: str, verbose: bool = False) -> None:
    """Send the binbot loggers' lines to standard error as "program: message" (DEBUG too with verbose)."""
    handler = Handler()
    handler.setFormatter(Formatter(program, stderr_is_journal()))
    logger = logging.getLogger(ROOT)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def stderr_is_journal() -> bool:
    """True if standard error is the stream systemd connected to the journal (JOURNAL_STREAM=DEVICE:INODE)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        found = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return f"{found.st_dev}:{found.st_ino}" == f"{device}:{inode}"


class Every:
    """Says when a failure that goes on is due to be logged again: at once, then once an interval (per key)."""

    def __init__(self, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.seconds, self._clock = seconds, clock
        self._last: dict[object, float] = {}

    def due(self, key: object = None) -> bool:
        now = self._clock()
        if now - self._last.get(key, -float("inf")) < self.seconds:
            return False
        self._last[key] = now
        return True
