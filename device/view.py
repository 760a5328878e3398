"""The live view: what the camera sees and what the classifier thinks, in a browser.

An output that also answers four paths on the daemon's HTTP server:
  /              one self-contained page (view.html: nothing fetched from elsewhere, no build step)
  /stream.mjpg   the classified frames as a multipart/x-mixed-replace JPEG stream
  /events        server-sent events: each frame's result (at most [view] fps a second) and each item event
  /snapshot.jpg  the newest frame, once

The loop only keeps a reference to the newest frame (and, while a page listens, hands a result to
the feed a few times a second). JPEGs are encoded on the view's own thread, only while a stream is
watched (or on a snapshot's own connection), at most [view] fps a second, from the newest frame, and
every viewer is sent that one encoding. Each viewer's connection thread waits for the next JPEG or
message and writes it: one that reads slowly skips frames (counted as dropped) instead of queueing
them. A stream that stops being read fills the kernel's buffers within seconds (its frames are tens
of KB), so the server's write timeout cuts it off and frees its place. The feed is too light for that:
a quiet one (a keepalive every 10 s) takes hours to fill the buffers of a listener that stopped
reading (a phone asleep), and what the kernel acknowledged says nothing of what the page read. So a
listener is let go after LISTEN_FOR, told to reconnect at once, and its browser's EventSource does,
resuming after the last id it saw: a page misses nothing, and a place is held at most that long.

All four paths answer only a Host header that names this machine (httpguard.check_host).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from binbot.device.httpguard import answer, header_number, refuse
from binbot.device.jpeg import encode_jpeg
from binbot.device.metrics import BUCKETS, Metrics
from binbot.device.outputs import FrameRecord, Output, OutputKind, Route
from binbot.logs import Every
from binbot.schema import setting

if TYPE_CHECKING:
    from binbot.device.config import RunConfig

log = logging.getLogger("binbot.view")

PAGE = "view.html"
BOUNDARY = "binbot-frame"
# Each JPEG is followed at once by the next part's boundary and headers: a browser shows a part only once it
# has read the next one's headers, so sending them with the next frame would keep the picture a frame late.
# (Hence no Content-Length in them: the parts are delimited by the boundary alone, as the format allows.)
PART_HEAD = f"\r\n--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\n".encode()
JPEG_QUALITY = 80
POLL = 0.02  # seconds between looks for a new frame while someone watches
KEEPALIVE = 10.0  # seconds: a quiet stream or feed is written to this often, so a viewer that left is noticed
FEED_SIZE = 100  # messages kept for a listener that reconnects (Last-Event-ID) or falls behind
RECENT_EVENTS = 10  # item events a page is sent as it opens
RETRY_MS = 2000  # how soon a browser's EventSource reconnects after losing the feed
LISTEN_FOR = 60.0  # seconds a listener is sent the feed before it is told to reconnect (see above)
RECONNECT_MS = 100  # how soon it does so
MAX_FPS = 30.0
# Each live viewer holds two of the HTTP server's 32 connections (stream and events); the rest stay for others.
MAX_CLIENTS = 8
# Bytes the kernel may hold for a viewer (it doubles them). Left alone, it lets a stalled viewer's unsent
# frames grow to megabytes: seconds of stale picture queued, and long before the write timeout cuts it off.
STREAM_SEND_BUFFER = 128 * 1024  # a few frames
EVENTS_SEND_BUFFER = 16 * 1024  # a few seconds of results


@dataclass(frozen=True)
class ViewSettings:
    enabled: bool = setting(True, "the live view on the HTTP server: a page at /, /stream.mjpg, /events and "
                            "/snapshot.jpg (false: none of them, and nothing encoded)")
    fps: float = setting(5.0, "frames a second encoded and sent to viewers, at most", above=0.0, high=MAX_FPS)
    width: int = setting(640, "pixels the frames sent are scaled down to; a narrower frame (a lores stream) is "
                         "sent as the source gave it", low=32, high=4096)
    clients: int = setting(4, "viewers at once, each holding a stream and an event feed; one more is answered "
                           "503", low=1, high=MAX_CLIENTS)


def _build(settings: ViewSettings, config: RunConfig, metrics: Metrics) -> LiveView | None:
    if not settings.enabled or config.http_address is None:  # the live view lives on the HTTP server
        return None
    return LiveView(settings, metrics, stale_after=config.stale_after)


KIND = OutputKind(ViewSettings, _build, always_on=True)


class LiveView(Output):
    """Serves the live view; frame() and event() only keep references and wake waiting viewers."""

    name = "view"
    wants_frames = True

    def __init__(self, settings: ViewSettings, metrics: Metrics, listen_for: float = LISTEN_FOR,
                 stale_after: float = 5.0):
        fps, width, clients = settings.fps, settings.width, settings.clients
        self.interval, self.listen_for = 1.0 / fps, listen_for
        self._page = resources.files("binbot.device").joinpath(PAGE).read_bytes()
        registry = metrics.registry
        open_now = Gauge("binbot_view_clients", "Live view connections open, by kind", ["kind"], registry=registry)
        refused = Counter("binbot_view_refused", "Live view connections answered 503: more than [view] clients",
                          ["kind"], registry=registry)
        self._streams = Slots(clients, open_now.labels("stream"), refused.labels("stream"))
        self._listeners = Slots(clients, open_now.labels("events"), refused.labels("events"))
        self._dropped = metrics.output_dropped.labels(self.name)  # frames and messages a slow viewer skipped
        self.encoder = Encoder(self.interval, width, metrics)
        self.feed = Feed(stale_after=stale_after)
        self._frames = 0
        self._fps = 0.0
        self._window_start, self._window_frames = time.monotonic(), 0
        self._published_at = -float("inf")

    def frame(self, record: FrameRecord) -> None:
        self._frames += 1
        if record.rgb is not None:
            self.encoder.offer(self._frames, record.rgb)
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._fps = (self._frames - self._window_frames) / (now - self._window_start)
            self._window_start, self._window_frames = now, self._frames
        if self._listeners.taken and now - self._published_at >= self.interval:
            self._published_at = now
            self.feed.publish("result", {**record.result, "fps": round(self._fps, 1)})

    def event(self, event: dict) -> None:
        self.feed.publish("event", event)

    def health(self) -> dict:
        return {"streams": self._streams.taken, "listeners": self._listeners.taken}

    def routes(self) -> dict[str, Route]:
        return {"/": self._serve_page, "/stream.mjpg": self._serve_stream, "/events": self._serve_events,
                "/snapshot.jpg": self._serve_snapshot}

    def close(self, until: float) -> None:
        self.feed.close()
        self.encoder.close(until)  # viewers' threads wake, see it closed, and end their answers

    def _serve_page(self, request: BaseHTTPRequestHandler) -> None:
        answer(request, 200, self._page, "text/html; charset=utf-8")

    def _serve_snapshot(self, request: BaseHTTPRequestHandler) -> None:
        jpeg = self.encoder.snapshot()
        if jpeg is None:
            refuse(request, 404, "no frame classified yet")
        else:
            answer(request, 200, jpeg.data, "image/jpeg")

    def _serve_stream(self, request: BaseHTTPRequestHandler) -> None:
        with until_gone(), self._streams.taken_by(request) as admitted:
            if not admitted:
                return
            start_stream(request, f"multipart/x-mixed-replace; boundary={BOUNDARY}", STREAM_SEND_BUFFER)
            request.wfile.write(PART_HEAD)
            with self.encoder.watching():
                sent = 0
                while not self.encoder.closed:
                    # A quiet stream (a camera that stopped) sends its last frame again as a keepalive.
                    jpeg = self.encoder.wait(after=sent, timeout=KEEPALIVE)
                    if jpeg is None:
                        continue
                    if sent and jpeg.number > sent + 1:
                        self._dropped.inc(jpeg.number - sent - 1)
                    request.wfile.write(jpeg.part)
                    sent = jpeg.number

    def _serve_events(self, request: BaseHTTPRequestHandler) -> None:
        with until_gone(), self._listeners.taken_by(request) as admitted:
            if not admitted:
                return
            start_stream(request, "text/event-stream; charset=utf-8", EVENTS_SEND_BUFFER)
            backlog, last = self.feed.start(header_number(request, "Last-Event-ID"))
            request.wfile.write(f"retry: {RETRY_MS}\n\n".encode() + b"".join(m.text for m in backlog))
            ends = time.monotonic() + self.listen_for
            while not self.feed.closed and (left := ends - time.monotonic()) > 0:
                messages = self.feed.wait(after=last, timeout=min(KEEPALIVE, left))
                if not messages:
                    request.wfile.write(b": keepalive\n\n")
                    continue
                if messages[0].id > last + 1:
                    self._dropped.inc(messages[0].id - last - 1)
                request.wfile.write(b"".join(m.text for m in messages))
                last = messages[-1].id
            if not self.feed.closed:
                request.wfile.write(f"retry: {RECONNECT_MS}\n\n".encode())


class Slots:
    """At most limit connections of one kind at once; one more is answered 503 and counted."""

    def __init__(self, limit: int, gauge, refused):
        self.limit, self._gauge, self._refused = limit, gauge, refused
        self.taken = 0
        self._lock = threading.Lock()

    @contextmanager
    def taken_by(self, request: BaseHTTPRequestHandler) -> Iterator[bool]:
        with self._lock:
            admitted = self.taken < self.limit
            if admitted:
                self.taken += 1
                self._gauge.set(self.taken)
        if not admitted:
            self._refused.inc()
            refuse(request, 503, f"too many live viewers ({self.limit} at once, [view] clients); try again later",
                   {"Retry-After": "5"})
        try:
            yield admitted
        finally:
            if admitted:
                with self._lock:
                    self.taken -= 1
                    self._gauge.set(self.taken)


@dataclass(frozen=True)
class Jpeg:
    number: int  # 1, 2, ... in the order encoded
    frame: int  # the view's count of the frame it shows
    at: float  # time.monotonic() when encoded
    data: bytes

    @property
    def part(self) -> bytes:
        """This JPEG as the stream sends it, the next part's head after it."""
        return self.data + PART_HEAD


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
        self._errors = metrics.output_errors.labels(LiveView.name)
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


def start_stream(request: BaseHTTPRequestHandler, content_type: str, send_buffer: int) -> None:
    """The head of an answer that goes on until the client leaves or the daemon stops."""
    request.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    request.send_response(200)
    request.send_header("Content-Type", content_type)
    request.send_header("Cache-Control", "no-store")
    request.send_header("Connection", "close")
    request.end_headers()


@contextmanager
def until_gone() -> Iterator[None]:
    """Ends a streaming answer quietly when its client leaves, or stops reading for the server's timeout."""
    try:
        yield
    except OSError:  # a broken pipe, a reset, or a write that timed out
        pass
