"""/healthz, /metrics and /latest over HTTP, answered from a thread beside the inference loop."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST


def serve(address: tuple[str, int], health: Callable[[], tuple[bool, dict]], metrics: Callable[[], bytes],
          latest: Callable[[], dict | None]) -> ThreadingHTTPServer:
    """Start answering on address (port 0: any free port; see server.server_address) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
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
            else:
                self._send(404, b'{"error": "try /healthz, /metrics or /latest"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            pass  # a scrape every few seconds would drown the journal

    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
