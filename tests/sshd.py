"""A real OpenSSH server on loopback for the tests of the SSH commands (binbot deploy, binbot collect).

The `sshd` fixture (and running_sshd(), for a benchmark) starts /usr/sbin/sshd on a free port of
127.0.0.1, accepting a generated key for root, and writes an ssh config with host aliases: pi1 and pi2 (that sshd), flaky (through a relay that
cuts a connection once the client has sent DROP_AFTER_BYTES, as a lost Wi-Fi link would) and down
(a port nothing listens on). conftest.py makes the fixture available to every test module.
"""

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import wait_for

SSHD = Path("/usr/sbin/sshd")
# A drop after this many bytes from the client spares the small commands (about 8 KB with the ssh
# handshake) and cuts an upload (the same plus a bundle of some 25 KB) mid-way.
DROP_AFTER_BYTES = 12_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DroppingProxy:
    """A TCP relay to sshd that cuts any connection once the client has sent limit bytes: a dropped link."""

    def __init__(self, target_port: int, limit: int):
        self.target_port, self.limit, self.dropped = target_port, limit, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._relay, args=(client, upstream, self.limit), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, None), daemon=True).start()

    def _relay(self, source, sink, limit):
        sent = 0
        try:
            while data := source.recv(65536):
                sent += len(data)
                if limit is not None and sent > limit:
                    self.dropped += 1
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            sock.close()

    def close(self):
        self.server.close()


@contextmanager
def running_sshd(folder: Path) -> Iterator[dict]:
    """A real sshd on a free loopback port accepting a generated key for root, with its files in folder:
    {"port", "folder", "config" (an ssh config with the hosts pi1, pi2, flaky and down), "proxy"}."""
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = free_port()
    (folder / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {folder}/host_key
PidFile {folder}/sshd.pid
AuthorizedKeysFile {folder}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    log = open(folder / "sshd.log", "w")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(folder / "sshd_config")], stderr=log)
    proxy = None
    try:
        wait_for("sshd to listen",
                 lambda: process.poll() is not None or "Server listening" in (folder / "sshd.log").read_text())
        assert process.poll() is None, f"sshd exited:\n{(folder / 'sshd.log').read_text()}"
        proxy = DroppingProxy(port, DROP_AFTER_BYTES)
        common = f"""\
  HostName 127.0.0.1
  User root
  IdentityFile {folder}/client_key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile {folder}/known_hosts
  LogLevel ERROR
"""
        (folder / "ssh_config").write_text(
            f"Host pi1 pi2\n  Port {port}\n{common}"
            f"Host flaky\n  Port {proxy.port}\n{common}"
            f"Host down\n  Port {free_port()}\n{common}"  # nothing listens there
        )
        yield {"port": port, "folder": folder, "config": folder / "ssh_config", "proxy": proxy}
    finally:
        if proxy is not None:
            proxy.close()
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """running_sshd() for the tests of a module; skipped where sshd is not installed."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is not installed (apt install openssh-server)")
    with running_sshd(tmp_path_factory.mktemp("ssh")) as server:
        yield server
