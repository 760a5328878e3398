"""The server of `binbot label`: its page and its JSON API, on a Field (binbot.train.label).

The server listens on loopback unless told otherwise, since its API moves files:
  GET  /               the page (label.html: one file, nothing fetched from elsewhere)
  GET  /api/frames     the classes, the frames left (oldest first, with their sidecars' essentials),
                       what this session filed, and the command to run next
  GET  /frame/<id>.jpg a frame left to label
  POST /api/file       {"id": ID, "class": CLASS}: unlabelled/ID.* -> CLASS/
  POST /api/discard    {"id": ID}: unlabelled/ID.* -> discarded/
  POST /api/undo       {}: the last move of this session, back to unlabelled/
A POST must say Content-Type: application/json (a form on another site cannot, without a CORS
preflight this server never grants), and any request must name this machine in its Host header, so
another web page open in the same browser cannot drive it, not even through DNS rebinding. The
server is binbot.device.httpguard's, as the daemon's is: a whole request must arrive within its
deadline, at most a few dozen are answered at once, and a failure is a 500 answer and one log line.
Nothing a file in the field folder can do (a FIFO named like a frame, a sidecar nested 100,000
deep) blocks the server or ends it: files are read within bounds, and the JPEGs outside its lock.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from binbot import boundedjson
from binbot.device import kept
from binbot.device.httpguard import GuardedHandler, GuardedServer, Refused, answer, header_number
from binbot.errors import BinbotError
from binbot.train.label import Field, open_field

PAGE = "label.html"
DEFAULT_HTTP = "127.0.0.1:8090"
MAX_BODY = 1024  # bytes: the API's bodies are an id and a class name
FRAME_PATH = re.compile(rf"/frame/({kept.KEPT_ID.pattern})\.jpg")
BODY_KEYS = {"/api/file": {"id", "class"}, "/api/discard": {"id"}, "/api/undo": set()}


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT ([::1]:PORT for IPv6) as (host, port), or a BinbotError."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise BinbotError(f"--http {text}: should be HOST:PORT (e.g. {DEFAULT_HTTP} or [::1]:8090; "
                          "port 0: any free one)")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise BinbotError(f"--http {text}: an IPv6 address goes in brackets, as [::1]:8090")
    return host.removeprefix("[").removesuffix("]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LabelServer(GuardedServer):
    """The page and the API for one Field."""

    def __init__(self, address: tuple[str, int], field: Field):
        self.field = field
        self.page = resources.files("binbot.train").joinpath(PAGE).read_bytes()
        super().__init__(address, Handler)


class Handler(GuardedHandler):
    server: LabelServer

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, work: Callable[[str], tuple[int, bytes, str]]) -> None:
        self.check_host()
        status, body, content_type = work(urlsplit(self.path).path)
        answer(self, status, body, content_type,
               {"Cache-Control": "private, max-age=600" if content_type == "image/jpeg" else "no-store"})

    def _get(self, path: str) -> tuple[int, bytes, str]:
        field = self.server.field
        if path == "/":
            return 200, self.server.page, "text/html; charset=utf-8"
        if path == "/api/frames":
            return 200, _json(field.state()), "application/json"
        if found := FRAME_PATH.fullmatch(path):
            return 200, field.jpeg(found.group(1)), "image/jpeg"
        raise Refused(404, "try /, /api/frames or /frame/<id>.jpg")

    def _post(self, path: str) -> tuple[int, bytes, str]:
        if path not in BODY_KEYS:
            raise Refused(404, f"try POST {', '.join(BODY_KEYS)}")
        body = self._json_body(BODY_KEYS[path])
        field = self.server.field
        if path == "/api/file":
            done = field.file(body["id"], body["class"])
        elif path == "/api/discard":
            done = field.discard(body["id"])
        else:
            done = field.undo()
        return 200, _json(done), "application/json"

    def _json_body(self, keys: set[str]) -> dict:
        """The request's JSON object, checked: sent by this page or a script, small, with exactly keys, as strings."""
        if self.headers.get_content_type() != "application/json":
            raise Refused(415, "send the body as JSON, with Content-Type: application/json")
        origin = self.headers.get("Origin")  # sent by browsers with every POST; scripts may leave it out
        if origin is not None and origin != f"http://{self.headers.get('Host')}":
            raise Refused(403, f"a request from a page of {origin} is not allowed; use the page this server serves")
        length = header_number(self, "Content-Length")
        if length is None:
            raise Refused(411, "the body needs a Content-Length")
        if length > MAX_BODY:
            raise Refused(413, f"the body is over {MAX_BODY} bytes")
        try:
            body = boundedjson.parse(self.rfile.read(length) or b"{}", "the body", MAX_BODY)
        except BinbotError as error:
            raise Refused(400, str(error)) from None
        if not isinstance(body, dict) or set(body) != keys or not all(isinstance(v, str) for v in body.values()):
            wanted = ", ".join(f'"{key}": "..."' for key in sorted(keys))
            raise Refused(400, f"the body should be {{{wanted}}}")
        return body


def _json(data: object) -> bytes:
    return json.dumps(data).encode()


def serve(root: Path, http: str = DEFAULT_HTTP, classes: list[str] | None = None, allow_remote: bool = False) -> int:
    """`binbot label`: serve the page for root until Ctrl+C or SIGTERM, then sum the session up."""
    address = parse_address(http)
    if not allow_remote and not is_loopback(address[0]):
        raise BinbotError(f"--http {http}: not a loopback address; anyone who can reach it could move your files "
                          "(use 127.0.0.1, or pass --allow-remote on a network you trust)")
    field = open_field(root, classes)
    try:
        server = LabelServer(address, field)
    except OSError as error:
        raise BinbotError(f"--http {http}: cannot listen ({error.strerror or error})") from None
    state = field.state()
    keys = ", ".join(f"{n + 1 if n < 9 else 0} {name}" if n < 10 else name for n, name in enumerate(field.classes))
    keys = keys or "none yet (pass --classes A,B,C)"
    print(f"label: {len(state['frames'])} frame(s) to label in {field.unlabelled}; classes: {keys}")
    print(f"label: listening on {server.url} (open it in a browser; Ctrl+C to stop)")
    stop = lambda *_: threading.Thread(target=server.shutdown).start()  # noqa: E731 - serve_forever runs here
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    state = field.state()
    filed = ", ".join(f"{name} {n}" for name, n in state["filed"].items() if n) or "nothing"
    print(f"label: this session: {filed}; {len(state['frames'])} left in {field.unlabelled}")
    if not state["frames"] and any(state["filed"].values()):
        print(f"label: next: {state['next']}")
    return 0
