"""/healthz, /metrics, /latest and the outputs' own paths over HTTP, answered from threads beside the
inference loop.

Clients are not trusted to behave (binbot.device.httpguard): a whole request must arrive within
httpguard.REQUEST_TIMEOUT, a connection still sending its request holds no thread and no slot, at most
MAX_CONNECTIONS requests are answered at once (one more is answered 503 at once), and each write of
an answer is given that timeout too, so a streaming answer to a client that stopped reading ends.

/healthz and /metrics answer whatever the Host header says: Prometheus scrapes by whatever name it
was given, and neither holds anything private. Everything else (/latest and the live view's
pictures and results) answers only a Host that names this machine (httpguard.check_host), so a page
of another site cannot read it through DNS rebinding, not even through an SSH tunnel.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from prometheus_client import CONTENT_TYPE_LATEST

from binbot.device.httpguard import MAX_CONNECTIONS, GuardedHandler, GuardedServer, Refused, answer

OPEN_PATHS = ("/healthz", "/metrics")  # answered for any Host


def serve(address: tuple[str, int], health: Callable[[], tuple[bool, dict]], metrics: Callable[[], bytes],
          latest: Callable[[], dict | None], refused: Callable[[], None] = lambda: None,
          max_connections: int = MAX_CONNECTIONS,
          routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] | None = None) -> GuardedServer:
    """Start answering on address (port 0: any free port; see server.server_address) in a daemon thread.

    routes: more paths, each answered by a function given the request handler (the outputs' pages).
    """
    routes = routes or {}
    known = ", ".join(["/healthz", "/metrics", "/latest", *routes])

    class Handler(GuardedHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path not in OPEN_PATHS:
                self.check_host()
            if path == "/healthz":
                ok, body = health()
                answer(self, 200 if ok else 503, json.dumps(body).encode(), "application/json")
            elif path == "/metrics":
                answer(self, 200, metrics(), CONTENT_TYPE_LATEST)
            elif path == "/latest":
                result = latest()
                if not result:
                    raise Refused(404, "no frame classified yet")
                answer(self, 200, json.dumps(result).encode(), "application/json")
            elif path in routes:
                routes[path](self)
            else:
                raise Refused(404, f"try {known}")

    server = GuardedServer(address, Handler, max_connections, refused)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
