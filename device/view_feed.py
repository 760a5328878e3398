"""The live view's feed for /events: each frame's result (a few a second) and each item event, numbered.

A ring that each listener reads at its own pace: a listener that falls behind skips messages (counted
by the view), one that reconnects with Last-Event-ID is sent what it missed if the ring still holds it,
and a new one is sent the last few events and the last result, unless that result is stale.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

FEED_SIZE = 100  # messages kept for a listener that reconnects (Last-Event-ID) or falls behind
RECENT_EVENTS = 10  # item events a page is sent as it opens


@dataclass(frozen=True)
class Message:
    id: int
    kind: str  # "result" or "event"
    data: dict
    at: float = 0.0  # time.monotonic() when published

    @property
    def text(self) -> bytes:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {json.dumps(self.data)}\n\n".encode()


class Feed:
    """The messages for /events: a numbered ring that each listener reads at its own pace."""

    def __init__(self, size: int = FEED_SIZE, recent: int = RECENT_EVENTS, stale_after: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stale_after, self._clock = stale_after, clock  # a result older than stale_after s is not sent anew
        self._ring: deque[Message] = deque(maxlen=size)
        self._recent: deque[Message] = deque(maxlen=recent)  # the last item events
        self._result: Message | None = None  # the last result
        self._last_id = 0
        self._changed = threading.Condition()
        self.closed = False

    def publish(self, kind: str, data: dict) -> None:
        with self._changed:
            self._last_id += 1
            message = Message(self._last_id, kind, data, self._clock())
            self._ring.append(message)
            if kind == "event":
                self._recent.append(message)
            else:
                self._result = message
            self._changed.notify_all()

    def start(self, last_event_id: int | None) -> tuple[list[Message], int]:
        """What a listener is sent first, and the id it goes on from: after a reconnection, what it missed
        (if the ring still holds all of it); else the last few events and the last result, unless it is stale."""
        with self._changed:
            oldest = self._ring[0].id if self._ring else self._last_id + 1
            if last_event_id is not None and oldest - 1 <= last_event_id <= self._last_id:
                return [m for m in self._ring if m.id > last_event_id], self._last_id
            fresh = self._result and self._clock() - self._result.at <= self.stale_after
            backlog = [*self._recent, *([self._result] if fresh else [])]
            return sorted(backlog, key=lambda m: m.id), self._last_id

    def wait(self, after: int, timeout: float) -> list[Message]:
        """The messages numbered above after that the ring still holds; [] after timeout or once closed."""
        with self._changed:
            self._changed.wait_for(lambda: self.closed or self._last_id > after, timeout)
            return [] if self.closed else [m for m in self._ring if m.id > after]

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()
