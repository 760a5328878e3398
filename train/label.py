"""`binbot label`: file the frames in FIELD/unlabelled/ into FIELD/<class>/ from a page in a browser.

A kept frame is a pair, <id>.jpg and its sidecar <id>.json (binbot.device.kept). Filing one moves
the pair into FIELD/<class>/ (or FIELD/discarded/) as the field folder moves pairs
(binbot.device.fieldfolder: renames, the sidecar last, never overwriting). What comes out is the
layout `binbot train --data` reads (it skips unlabelled/, discarded/ and the sidecars), so sorting
the files by hand is just as good.

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
import shlex
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from binbot import boundedfile, boundedjson
from binbot.device import kept
from binbot.device.fieldfolder import (DISCARDED, UNLABELLED, FrameMissing, FrameTaken, class_folders,
                                       class_name_problem, move_pair, waiting)
from binbot.device.httpguard import GuardedHandler, GuardedServer, Refused, answer, header_number
from binbot.errors import BinbotError

PAGE = "label.html"
DEFAULT_HTTP = "127.0.0.1:8090"
TOP = 3  # classes shown with bars for each frame
MAX_BODY = 1024  # bytes: the API's bodies are an id and a class name
FRAME_PATH = re.compile(rf"/frame/({kept.KEPT_ID.pattern})\.jpg")
BODY_KEYS = {"/api/file": {"id", "class"}, "/api/discard": {"id"}, "/api/undo": set()}


@dataclass(frozen=True)
class Move:
    id: str
    to: str  # the class folder, or DISCARDED


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


class Field:
    """A field folder, its classes and this session's moves: the API without the HTTP. Thread-safe."""

    def __init__(self, root: Path, classes: list[str], log: Callable[[str], None] = lambda line: None):
        self.root, self.classes, self._log = Path(root), list(classes), log
        self._moves: list[Move] = []  # this session's, for undo; the last one on top
        self._entries: dict[str, dict] = {}  # sidecars as the page shows them, by id (a frame's sidecar never changes)
        self._lock = threading.Lock()

    @property
    def unlabelled(self) -> Path:
        return self.root / UNLABELLED

    def state(self) -> dict:
        """What GET /api/frames answers."""
        with self._lock:
            frames, problems = self._frames()
            filed = Counter(move.to for move in self._moves)
            last = self._moves[-1] if self._moves else None
        return {
            "field": str(self.root), "classes": self.classes, "frames": frames, "problems": problems,
            "filed": {name: filed[name] for name in [*self.classes, DISCARDED]},
            "undo": last and {"id": last.id, "to": last.to},
            "next": f"binbot train --data PHOTOS --data {shlex.quote(str(self.root))} "
                    "--init RUN/model.keras --out NEWRUN",
        }

    def jpeg(self, frame_id: str) -> bytes:
        """The JPEG of a frame left to label."""
        with self._lock:
            self._check_left(frame_id)
        try:  # outside the lock, and within bounds: a slow read, or a FIFO, holds up this request alone
            return boundedfile.read(self.unlabelled / f"{frame_id}.jpg", kept.MAX_JPEG, "a JPEG")
        except FileNotFoundError:
            raise Refused(404, f"{frame_id} is not in {UNLABELLED}/ (filed already?)") from None
        except BinbotError as error:
            raise Refused(500, str(error)) from None

    def file(self, frame_id: str, label: str) -> dict:
        """Move a frame left to label into its class folder."""
        if label not in self.classes:
            raise Refused(400, f"{label!r} is not one of the classes ({', '.join(self.classes)})")
        return self._move_out(frame_id, label)

    def discard(self, frame_id: str) -> dict:
        return self._move_out(frame_id, DISCARDED)

    def undo(self) -> dict:
        """Move the session's last filed or discarded frame back to unlabelled/."""
        with self._lock:
            if not self._moves:
                raise Refused(409, "nothing to undo in this session")
            last = self._moves[-1]
            try:
                self._move(last.id, last.to, UNLABELLED)
            except Refused as refused:
                if refused.status == 404:  # moved away by hand since: there is nothing left to undo
                    self._moves.pop()
                raise
            self._moves.pop()
        self._log(f"label: undone: {last.id} back from {last.to}/ to {UNLABELLED}/")
        return {"id": last.id, "from": last.to, "to": UNLABELLED}

    def _move_out(self, frame_id: str, to: str) -> dict:
        with self._lock:
            self._check_left(frame_id)
            self._move(frame_id, UNLABELLED, to)
            self._moves.append(Move(frame_id, to))
        self._log(f"label: {frame_id} -> {to}/")
        return {"id": frame_id, "from": UNLABELLED, "to": to}

    def _move(self, frame_id: str, source: str, to: str) -> None:
        """Move a pair between two sub-folders; a refusal is the HTTP answer for why. The callers hold the lock."""
        try:
            move_pair(frame_id, self.root / source, self.root / to)
        except FrameMissing as missing:
            raise Refused(404, str(missing)) from None
        except FrameTaken as taken:
            raise Refused(409, str(taken)) from None
        except BinbotError as error:
            raise Refused(500, str(error)) from None

    def _check_left(self, frame_id: str) -> None:
        if not kept.is_id(frame_id):
            raise Refused(400, f"{frame_id!r} is not a kept frame's id (like 20261130T144223123Z-3fa2b1c9)")
        if not (self.unlabelled / f"{frame_id}.json").is_file():
            raise Refused(404, f"{frame_id} is not in {UNLABELLED}/ (filed already?)")

    def _frames(self) -> tuple[list[dict], list[str]]:
        frames, problems = [], []
        for frame_id in waiting(self.root):
            if not (self.unlabelled / f"{frame_id}.jpg").is_file():
                problems.append(f"{UNLABELLED}/{frame_id}.json: its {frame_id}.jpg is missing")
                continue
            if frame_id not in self._entries:
                self._entries[frame_id] = frame_entry(self.unlabelled / f"{frame_id}.json")
            frames.append(self._entries[frame_id])
        return frames, problems


def frame_entry(path: Path) -> dict:
    """A sidecar as the page shows it; one that cannot be read is still listed, with its problem, to be filed."""
    try:
        frame = kept.read_sidecar(path)
    except BinbotError as error:
        return {"id": path.stem, "problem": str(error)}
    return {"id": frame.id, "label": frame.label, "confidence": frame.confidence,
            "top": [{"label": label, "p": p} for label, p in frame.top(TOP)], "reasons": frame.reasons,
            "time": frame.time, "model": frame.model, "item": frame.item, "origin": frame.origin}


def open_field(root: Path, given: list[str] | None = None, log: Callable[[str], None] = print) -> Field:
    """The field folder at root, with its classes: given (--classes), else those the sidecars score in
    the model's order (their union, first seen first, if they differ); then any other class folder in root."""
    root = Path(root)
    if not (root / UNLABELLED).is_dir():
        raise BinbotError(f"{root}: has no {UNLABELLED}/ folder of frames to label "
                          "(binbot collect puts the frames it copies from a Pi there)")
    if given is not None:
        for name in given:
            if problem := class_name_problem(name):
                raise BinbotError(f"--classes: {problem}")
        if len(set(given)) != len(given):
            raise BinbotError("--classes: a class is named twice")
        classes = list(given)
    else:
        classes = sidecar_classes(root, log)
    folders = [name for name in class_folders(root) if not class_name_problem(name)]
    return Field(root, classes + [name for name in folders if name not in classes], log)


def sidecar_classes(root: Path, log: Callable[[str], None]) -> list[str]:
    """The classes the sidecars in root/unlabelled/ score, first seen first; names unfit for a folder are skipped."""
    unlabelled = root / UNLABELLED
    classes: dict[str, None] = {}
    for frame_id in waiting(root):
        try:
            frame = kept.read_sidecar(unlabelled / f"{frame_id}.json")
        except BinbotError:
            continue  # listed on the page with its problem
        for name in frame.classes:
            if name not in classes and (problem := class_name_problem(name)):
                log(f"label: warning: {unlabelled / frame_id}.json: class skipped: {problem} (use --classes)")
            classes.setdefault(name, None)
    return [name for name in classes if not class_name_problem(name)]


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
