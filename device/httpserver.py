"""/healthz, /metrics, /latest and the outputs' own paths over HTTP, answered from threads beside the
inference loop.

Clients are not trusted to behave: a connection gets REQUEST_TIMEOUT seconds to send its request,
and at most MAX_CONNECTIONS are served at once; one more is answered 503 and closed at once, on
the accepting thread, so a crowd of idle connections costs neither threads nor file descriptors.
The timeout also bounds each write, so a streaming answer to a client that stopped reading ends.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

MAX_CONNECTIONS = 32
REQUEST_TIMEOUT = 5.0  # seconds a connection may take to send its request (or to take an answer)
BACKLOG = 128  # connections the kernel holds until they are accepted
BUSY_BODY = b'{"error": "too many connections; try again"}'
BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BUSY_BODY), BUSY_BODY))


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, up to max_connections; refused() is called for each one turned away."""

    daemon_threads = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int, refused: Callable[[], None]):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._slots = threading.BoundedSemaphore(max_connections)
        self._refused = refused
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self._refused()
            try:
                request.setblocking(False)
                request.send(BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread was started to release it
            raise

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def get_request(self):
        try:
            return super().get_request()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # Out of descriptors: the listening socket stays readable, so without a pause this loop spins a core.
                time.sleep(0.1)
            raise


def serve(address: tuple[str, int], health: Callable[[], tuple[bool, dict]], metrics: Callable[[], bytes],
          latest: Callable[[], dict | None], refused: Callable[[], None] = lambda: None,
          max_connections: int = MAX_CONNECTIONS,
          routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] | None = None) -> ThreadingHTTPServer:
    """Start answering on address (port 0: any free port; see server.server_address) in a daemon thread.

    routes: more paths, each answered by a function given the request handler (the outputs' pages).
    """
    routes = routes or {}
    known = ", ".join(["/healthz", "/metrics", "/latest", *routes])
    not_found = json.dumps({"error": f"try {known}"}).encode()

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/healthz":
                ok, body = health()
                self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
            elif path == "/metrics":
                self._send(200, metrics(), CONTENT_TYPE_LATEST)
            elif path == "/latest":
                result = latest()
                self._send(200 if result else 404, json.dumps(result or {"error": "no frame classified yet"}).encode(),
                           "application/json")
            elif path in routes:
                routes[path](self)
            else:
                self._send(404, not_found, "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            pass  # a scrape every few seconds would drown the journal

    server = BoundedHTTPServer(address, Handler, max_connections, refused)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
