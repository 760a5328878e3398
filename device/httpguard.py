"""What every BinBot HTTP server (`binbot run`'s and `binbot label`'s) does about clients that misbehave.

- A whole-request deadline: the request line, the headers and any body must all arrive within
  REQUEST_TIMEOUT seconds of connecting, however slowly they trickle in; a request that is late is
  answered 408 and closed. Each write of the answer is then given REQUEST_TIMEOUT as well.
- Waiting is cheap: until its request head (the line and the headers) has arrived, a connection is
  read by one thread through a selector, so it holds a file descriptor and a few bytes, no thread and
  no slot. At most MAX_WAITING connections wait at once; one more pushes out the one that has waited
  longest (answered 503). The deadline alone would not do: slow clients (slowloris, a header byte
  every few seconds) that held the answering slots would hold them until the deadline and take them
  again at once by reconnecting. Kept apart, they only ever compete with each other, and a whole
  request, such as deploy's health check, is read as soon as it arrives.
- A cap on answers at once: each request that has arrived whole is answered on a thread of its
  own, at most max_connections at once; one more is answered 503 at once.
- A Host check for whatever is private (check_host): a Host that names another server, as a page
  of another site using DNS rebinding does, is refused 403. Allowed: no Host at all (browsers always
  send one), any IP address (a rebinding needs a name), localhost, and this machine's own name,
  bare or with .local (mDNS). The port is not checked: an SSH tunnel may forward any local port.
- Any failure while answering is a 500 answer and one log line, never a traceback or a dead server.

Longer than 300 lines on purpose: the deadline, the waiting room and the handler share each
Connection's state, and are read together.
"""

from __future__ import annotations

import errno
import io
import ipaddress
import json
import logging
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer

MAX_CONNECTIONS = 32  # requests answered at once, a thread each
MAX_WAITING = 4 * MAX_CONNECTIONS  # connections whose request head is still arriving
REQUEST_TIMEOUT = 5.0  # seconds for a whole request to arrive (and for each write of its answer)
MAX_HEAD = 64 * 1024  # bytes of request line and headers, as the stdlib's parser allows
BACKLOG = 128  # connections the kernel holds until they are accepted
HOST = re.compile(r"(?:\[([0-9a-f:.]+)\]|([^][:@/\\\s]+))(?::[0-9]{1,5})?", re.I)  # [IPv6] or a name, then a port
DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() takes '²', and int() refuses 5,000 digits

log = logging.getLogger("binbot.http")


def canned(status: str, message: str) -> bytes:
    """A whole answer sent on a connection no handler took: a one-line JSON error, then the connection closes."""
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


BUSY = canned("503 Service Unavailable", "too many connections; try again")
TOO_LARGE = canned("431 Request Header Fields Too Large", f"the request head is over {MAX_HEAD} bytes")


class Refused(Exception):
    """A request turned down: an HTTP status and a message for the user, answered as {"error": message}."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


@dataclass(eq=False)
class Connection:
    """An accepted connection and the part of its request read so far."""

    sock: socket.socket
    address: tuple
    deadline: float  # time.monotonic() by which the whole request must have arrived
    head: bytearray = field(default_factory=bytearray)

    def head_ended(self, new: int) -> bool:
        """True if the blank line that ends the head is in it (looked for only around the new bytes)."""
        tail = self.head[-(new + 2):]
        return b"\n\n" in tail or b"\n\r\n" in tail


class GuardedServer(HTTPServer):
    """An HTTP server for handlers derived from GuardedHandler: see the module's docstring."""

    request_queue_size = BACKLOG
    request_timeout = REQUEST_TIMEOUT

    def __init__(self, address: tuple[str, int], handler: type[GuardedHandler],
                 max_connections: int = MAX_CONNECTIONS, refused: Callable[[], None] = lambda: None):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = refused
        self._waiting = Waiting(self)  # before the socket is bound: a failed bind closes it again
        super().__init__(address, handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def process_request(self, request: socket.socket, client_address) -> None:
        self._waiting.add(Connection(request, client_address, time.monotonic() + self.request_timeout))

    def answer(self, connection: Connection) -> None:
        """Answer a connection whose request head has arrived, on a thread of its own if a slot is free."""
        if self._slots.acquire(blocking=False):
            try:
                threading.Thread(target=self._answer, args=(connection,), name="http-request", daemon=True).start()
                return
            except RuntimeError:  # no thread to be had (TasksMax): as busy as being full
                self._slots.release()
        self.refused()
        self.turn_away(connection, BUSY)

    def turn_away(self, connection: Connection, answer: bytes) -> None:
        """Send a canned answer, as far as the socket takes it at once, and close."""
        try:
            connection.sock.setblocking(False)
            connection.sock.send(answer)
        except OSError:
            pass
        self.shutdown_request(connection.sock)

    def _answer(self, connection: Connection) -> None:
        try:
            self.RequestHandlerClass(connection, connection.address, self)
        except (ConnectionError, TimeoutError):
            pass  # the client left while its answer was being finished
        except Exception as error:  # noqa: BLE001 - a failure around a handler must not end the server either
            log.warning("http: answering %s failed (%s: %s)", connection.address[0], type(error).__name__, error)
        finally:
            self.shutdown_request(connection.sock)
            self._slots.release()

    def handle_error(self, request, client_address) -> None:  # the stdlib's prints a traceback
        log.warning("http: a connection from %s failed and was closed", client_address[0])

    def get_request(self):
        try:
            return super().get_request()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # Out of descriptors: the listening socket stays readable, so without a pause this loop spins a core.
                time.sleep(0.1)
            raise

    def shutdown(self) -> None:
        super().shutdown()
        self._waiting.close()

    def server_close(self) -> None:
        super().server_close()
        self._waiting.close()


class Waiting:
    """The connections whose request head is still arriving, read by one thread through a selector."""

    def __init__(self, server: GuardedServer, limit: int = MAX_WAITING):
        self._server, self._limit = server, limit
        self._selector = selectors.DefaultSelector()
        self._wake, self._waker = socket.socketpair()
        for sock in (self._wake, self._waker):
            sock.setblocking(False)
        self._selector.register(self._wake, selectors.EVENT_READ)
        self._accepted: list[Connection] = []  # handed over by the accepting thread
        self._waiting: dict[socket.socket, Connection] = {}  # oldest first
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="http-waiting", daemon=True)
        self._thread.start()

    def add(self, connection: Connection) -> None:
        with self._lock:
            if self._closed:
                connection.sock.close()
                return
            self._accepted.append(connection)
        self._signal()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._signal()
        self._thread.join()

    def _signal(self) -> None:
        try:
            self._waker.send(b"\0")
        except OSError:
            pass  # its buffer is full: the thread is woken already

    def _run(self) -> None:
        while not self._closed:
            deadline = min((c.deadline for c in self._waiting.values()), default=None)
            for key, _ in self._selector.select(None if deadline is None else deadline - time.monotonic()):
                if key.fileobj is self._wake:
                    self._take_accepted()
                elif key.fileobj in self._waiting:  # not pushed out by a newer one in this same round
                    self._read(key.data)
            now = time.monotonic()
            for connection in [c for c in self._waiting.values() if c.deadline <= now]:
                self._turn_away(connection, canned("408 Request Timeout", too_slow(self._server.request_timeout)))
        for connection in [*self._waiting.values(), *self._accepted]:
            connection.sock.close()
        self._selector.close()
        self._wake.close()
        self._waker.close()

    def _take_accepted(self) -> None:
        try:
            while self._wake.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            accepted, self._accepted = self._accepted, []
        for connection in accepted:
            if len(self._waiting) >= self._limit:
                self._server.refused()
                self._turn_away(next(iter(self._waiting.values())), BUSY)
            try:
                connection.sock.setblocking(False)
                self._selector.register(connection.sock, selectors.EVENT_READ, connection)
            except (OSError, ValueError):  # closed already by the client's reset: this thread must go on
                connection.sock.close()
                continue
            self._waiting[connection.sock] = connection

    def _read(self, connection: Connection) -> None:
        try:
            data = connection.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client left
            self._forget(connection)
            connection.sock.close()
        elif len(connection.head) + len(data) > MAX_HEAD:
            self._turn_away(connection, TOO_LARGE)
        else:
            connection.head += data
            if connection.head_ended(len(data)):
                self._forget(connection)
                self._server.answer(connection)

    def _turn_away(self, connection: Connection, answer: bytes) -> None:
        self._forget(connection)
        self._server.turn_away(connection, answer)

    def _forget(self, connection: Connection) -> None:
        self._selector.unregister(connection.sock)
        del self._waiting[connection.sock]


class RequestReader(io.RawIOBase):
    """A request as its handler reads it: the head already read, then the socket, until the request's deadline."""

    def __init__(self, connection: Connection, timeout: float):
        self._head = memoryview(bytes(connection.head))
        self._sock, self._deadline, self._timeout = connection.sock, connection.deadline, timeout  # writes' too

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count], self._head = self._head[:count], self._head[count:]
            return count
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise Refused(408, too_slow(self._timeout))
        self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            raise Refused(408, too_slow(self._timeout)) from None
        finally:
            self._sock.settimeout(self._timeout)


def too_slow(timeout: float) -> str:
    return f"the request took over {timeout:g} s to arrive; send it whole, at once"


class GuardedHandler(BaseHTTPRequestHandler):
    """A request to a GuardedServer. A Refused raised while answering is answered as a JSON error, and any
    other exception as a 500 and one log line."""

    server: GuardedServer
    answered = False  # the status line is on its way: an error can no longer be answered

    def setup(self) -> None:
        connection: Connection = self.request
        self.request, self.timeout = connection.sock, self.server.request_timeout
        super().setup()
        self.rfile.close()  # replaced by one that starts with the head the server read
        self.rfile = io.BufferedReader(RequestReader(connection, self.timeout))

    def handle(self) -> None:
        try:
            super().handle()
        except Refused as refused:
            self._fail(refused.status, str(refused), refused.headers)
        except (ConnectionError, TimeoutError):
            pass  # the client left, or stopped reading: nobody to answer
        except Exception as error:  # noqa: BLE001 - one request's failure must not end the server
            log.warning("http: %s %s failed (%s: %s); answered 500", self.command, self.path, type(error).__name__,
                        error)
            self._fail(500, f"the server failed on this request ({type(error).__name__}); its log says more")

    def send_response(self, code: int, message: str | None = None) -> None:
        self.answered = True
        super().send_response(code, message)

    def check_host(self) -> None:
        """Refuse (403) a request that names another server in its Host header, as one by DNS rebinding does."""
        host = self.headers.get("Host")
        if host is not None and not names_this_machine(host):
            raise Refused(403, f"Host {host!r} is not this server; open it by its IP address, as localhost "
                               f"or as {socket.gethostname()}.local")

    def log_message(self, format: str, *args) -> None:
        pass  # a line per request would drown the log (a scrape every few seconds, a move per key press)

    def _fail(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        if self.answered:
            return  # the answer is cut short, which is all a client can be told now
        try:
            refuse(self, status, message, headers)
        except OSError:
            pass


def names_this_machine(host: str) -> bool:
    """True if a Host header names this machine in a way DNS rebinding cannot fake (see the module's docstring)."""
    found = HOST.fullmatch(host)
    if not found:
        return False
    name = (found.group(1) or found.group(2)).lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        own = socket.gethostname().lower()
        return name in ("localhost", own, f"{own}.local")


def header_number(request: BaseHTTPRequestHandler, name: str) -> int | None:
    """A header's value as a whole number, or None if it is absent or not plainly one."""
    value = request.headers.get(name, "")
    return int(value) if DIGITS.fullmatch(value) else None


def answer(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str,
           headers: dict[str, str] | None = None) -> None:
    """A whole answer: status, headers (not cached, unless headers say otherwise) and body."""
    request.send_response(status)
    fields = {"Content-Type": content_type, "Content-Length": str(len(body)), "Cache-Control": "no-store",
              "X-Content-Type-Options": "nosniff", **(headers or {})}
    for name, value in fields.items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(body)


def refuse(request: BaseHTTPRequestHandler, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """An error answer: {"error": message}."""
    answer(request, status, json.dumps({"error": message}).encode(), "application/json", headers)
