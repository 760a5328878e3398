"""The live view: what the camera sees and what the classifier thinks, in a browser.

An output that also answers four paths on the daemon's HTTP server:
  /              one self-contained page (view.html: nothing fetched from elsewhere, no build step)
  /stream.mjpg   the classified frames as a multipart/x-mixed-replace JPEG stream
  /events        server-sent events: each frame's result (at most [view] fps a second) and each item event
  /snapshot.jpg  the newest frame, once

The loop only keeps a reference to the newest frame (and, while a page listens, hands a result to
the feed a few times a second). JPEGs are encoded by binbot.device.view_encoder on a thread of its
own, only while a stream is watched (or on a snapshot's own connection), at most [view] fps a second,
from the newest frame, and every viewer is sent that one encoding; results and events go through
binbot.device.view_feed. Each viewer's connection thread waits for the next JPEG or
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

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from binbot.device.httpguard import answer, header_number, refuse
from binbot.device.metrics import Metrics
from binbot.device.outputs import FrameRecord, Output, OutputKind, Route
from binbot.device.view_encoder import Encoder
from binbot.device.view_feed import Feed
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
KEEPALIVE = 10.0  # seconds: a quiet stream or feed is written to this often, so a viewer that left is noticed
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
                    request.wfile.write(jpeg.data + PART_HEAD)
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
