"""A TCP relay on loopback that can go silent like a dead Wi-Fi link: the connections stay open, but
nothing crosses them any more in either direction, and neither end is told."""

import socket
import threading


class Relay:
    """Forwards 127.0.0.1:port to 127.0.0.1:target. black_hole() silences every connection, open or
    yet to come; heal() lets new connections through again, while the silenced ones stay silent
    until an end gives up on them."""

    def __init__(self, target: int):
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._silent = False
        self._links: list[Link] = []
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def black_hole(self) -> None:
        with self._lock:
            self._silent = True
            for link in self._links:
                link.silent = True

    def heal(self) -> None:
        with self._lock:
            self._silent = False

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone would leave it listening
        except OSError:  # closed already
            pass
        self._listener.close()
        with self._lock:
            for link in self._links:
                link.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the broker is down: so is this connection
                client.close()
                continue
            link = Link(client, server)
            with self._lock:
                link.silent = self._silent
                self._links.append(link)
            link.start()


class Link:
    """One relayed connection: a pump each way."""

    def __init__(self, client: socket.socket, server: socket.socket):
        self.sockets = (client, server)
        self.silent = False
        self._closed = threading.Event()

    def start(self) -> None:
        client, server = self.sockets
        for source, sink in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, sink), name="relay-pump", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # ends the connection now, though a pump is still inside recv()
            except OSError:  # already gone
                pass
            s.close()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self.silent:
                data = source.recv(65536)
                if not data:  # an end closed: pass it on
                    sink.shutdown(socket.SHUT_WR)
                    return
                if not self.silent:  # what was on its way when the link died is lost
                    sink.sendall(data)
        except OSError:  # the relay closed the sockets under the pump
            return
        self._closed.wait()  # read no more: the bytes pile up unacknowledged, as over a dead link
