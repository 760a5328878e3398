"""Shell scripts run on a Pi through the system's OpenSSH client.

Using `ssh` itself, not a Python SSH library, means keys, the agent, ~/.ssh/config, known hosts and
jump hosts work exactly as they do in the user's shell. BatchMode keeps ssh from ever prompting, so a
missing key is an error instead of a hang. Scripts are POSIX sh and need only coreutils, tar and
python3, which every Raspberry Pi OS has, so a Pi can be deployed to before binbot is installed on it.
They are files in scripts/, read with remote_script().
"""

from __future__ import annotations

import io
import os
import re
import select
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import BinaryIO

from binbot.errors import BinbotError

SUDO_MODES = ("auto", "always", "never")
MAX_OUTPUT = 16 << 20  # bytes of a script's answer held here; a listing of 100,000 kept frames is some 10 MB
MAX_STDERR = 64 << 10  # bytes: the end of what a script says on stderr, where its `binbot: ...` line is
EXIT_GRACE = 1.0  # seconds the pipes are read after the command ended
SCRIPTS = files(__package__) / "scripts"


def remote_script(name: str) -> str:
    """scripts/<name> as it is sent: lib.sh's functions go in front of a shell script, a Python one goes as it is."""
    text = (SCRIPTS / name).read_text()
    return (SCRIPTS / "lib.sh").read_text() + text if name.endswith(".sh") else text


class RemoteError(BinbotError):
    """A step on one host failed: str() is "host: problem"."""

    def __init__(self, host: str, problem: str):
        super().__init__(f"{host}: {problem}")
        self.host, self.problem = host, problem


def require_ssh() -> None:
    if shutil.which("ssh") is None:
        raise BinbotError("ssh: not found; install the OpenSSH client (apt install openssh-client)")


@dataclass(frozen=True)
class HostSpec:
    """One host: [user@]host[:port] as ssh takes it, and the name it goes by in output."""

    name: str
    host: str
    user: str | None = None
    port: int | None = None


def parse_host(spec: str, name: str | None = None) -> HostSpec:
    """Split [user@]host[:port] (an IPv6 address goes in brackets: [::1]:22)."""
    user, at, address = spec.rpartition("@")
    if not at:
        user = None
    port = None
    if address.startswith("["):
        host, bracket, tail = address[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise BinbotError(f"host {spec!r}: an IPv6 address goes in brackets, as [::1] or [::1]:22")
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_text = address.partition(":")
        port_text = port_text if colon else None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BinbotError(f"host {spec!r}: port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    if not host or host.startswith("-") or re.search(r"[\s/]", host) or (at and not user):
        raise BinbotError(f"host {spec!r}: expected [user@]host[:port], e.g. pi@binbot.local or pi@10.0.0.7:2222")
    return HostSpec(name or spec, host, user, port)


@dataclass(frozen=True)
class SshSettings:
    config: Path | None = None  # ssh -F
    options: tuple[str, ...] = ()  # ssh -o, in order
    connect_timeout: int = 10  # seconds
    sudo: str = "auto"  # one of SUDO_MODES: auto uses `sudo -n` unless the ssh user is root
    parallel: int = 8  # hosts worked on at once


class Remote:
    """Runs scripts on one host over one shared ssh connection; use it as a context manager."""

    def __init__(self, target: HostSpec, settings: SshSettings):
        self.target, self.settings = target, settings
        self._sockets: str | None = None

    def __enter__(self) -> Remote:
        # A deploy is a handful of short commands: one login (for a Pi, about a second) serves them all.
        self._sockets = tempfile.mkdtemp(prefix="binbot-ssh-")
        return self

    def __exit__(self, *exc_info) -> None:
        if self._sockets:
            try:
                subprocess.run([*self._ssh(), "-O", "exit", self.target.host], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
            except subprocess.TimeoutExpired:
                pass  # the master ends by itself once idle (ControlPersist)
            shutil.rmtree(self._sockets, ignore_errors=True)

    @property
    def name(self) -> str:
        return self.target.name

    def ssh_command(self, remote_command: str) -> list[str]:
        return [*self._ssh(), self.target.host, remote_command]

    def _ssh(self) -> list[str]:
        """ssh and this host's options, up to the host name."""
        settings = self.settings
        command = ["ssh", "-T"]
        if settings.config:
            command += ["-F", str(settings.config)]
        # ssh keeps the first value it sees for an option, so the user's come before these defaults.
        # ServerAlive: a dropped link is noticed within 15 s instead of hanging until TCP gives up.
        options = [*settings.options, "BatchMode=yes", f"ConnectTimeout={settings.connect_timeout}",
                   "ServerAliveInterval=5", "ServerAliveCountMax=3"]
        if self._sockets:
            # The shared connection outlives an interrupted binbot by two idle minutes at most.
            options += ["ControlMaster=auto", f"ControlPath={self._sockets}/%C", "ControlPersist=120"]
        for option in options:
            command += ["-o", option]
        if self.target.port:
            command += ["-p", str(self.target.port)]
        if self.target.user:
            command += ["-l", self.target.user]
        return command

    def run(self, script: str, *args: str, privileged: bool = False, timeout: float = 120,
            send: Callable[[BinaryIO], None] | None = None, into: BinaryIO | None = None,
            limit: int = MAX_OUTPUT) -> str:
        """script's stdout; args become its $1, $2...; send(stdin) streams input to it.

        With into (a binary file), stdout is written there as bytes instead, and "" is returned. The Pi
        is not trusted to stop: past limit bytes of stdout (for into: what the Pi announced) the command
        is cut off and refused. Raises RemoteError naming the host, with the script's own `binbot: ...`
        message when it gave one.
        """
        mode = self.settings.sudo if privileged else "never"
        wrapper = (SCRIPTS / "privileges.sh").read_text()  # sent as it is: it needs nothing from lib.sh
        remote_command = shlex.join(["sh", "-c", wrapper, "binbot", mode, script, *args])
        sink = into if into is not None else io.BytesIO()
        process = subprocess.Popen(self.ssh_command(remote_command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.PIPE if send else subprocess.DEVNULL)
        try:
            if send:
                threading.Thread(target=_send, args=(process, send), name="ssh-send", daemon=True).start()
            outcome = pump(process, sink, limit, time.monotonic() + timeout)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
            process.stderr.close()
        if outcome.timed_out:
            raise RemoteError(self.name, f"no answer within {timeout:.0f} s")
        if outcome.over:
            raise RemoteError(self.name, f"sent more than the {limit:,} bytes expected of it; cut off and refused "
                              "(has someone tampered with it?)")
        stderr = outcome.stderr.decode(errors="replace")
        if process.returncode != 0:
            raise RemoteError(self.name, explain_failure(process.returncode, stderr, self.target))
        return "" if into is not None else sink.getvalue().decode(errors="replace")


def _send(process: subprocess.Popen, send: Callable[[BinaryIO], None]) -> None:
    try:
        send(process.stdin)
        process.stdin.close()
    except (BrokenPipeError, ConnectionResetError, ValueError):
        pass  # the connection or the script ended early (or was cut off): its exit status says why


@dataclass
class Pumped:
    stderr: bytes = b""  # its last MAX_STDERR bytes
    over: bool = False  # stdout went past the limit, and the command was killed
    timed_out: bool = False


def pump(process: subprocess.Popen, sink: BinaryIO, limit: int, deadline: float) -> Pumped:
    """Copy process's stdout into sink (at most limit bytes) and keep the tail of its stderr, until it ends.

    The pipes are read as they fill, so a Pi that sends without end is cut off at limit, not after it
    has filled the disk here. A backgrounded ssh master may hold a pipe open after the command ended:
    once the process has exited, what is left is read for a moment and the rest abandoned.
    """
    outcome, written, exited_at = Pumped(), 0, None
    names = {process.stdout.fileno(): "stdout", process.stderr.fileno(): "stderr"}
    while names:
        now = time.monotonic()
        if now >= deadline:
            outcome.timed_out = True
            return outcome
        if exited_at is None and process.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > EXIT_GRACE:
            break
        ready, _, _ = select.select(list(names), [], [], 0.1)
        for descriptor in ready:
            chunk = os.read(descriptor, 1 << 16)
            if not chunk:
                del names[descriptor]
            elif names[descriptor] == "stderr":
                outcome.stderr = (outcome.stderr + chunk)[-MAX_STDERR:]
            elif written + len(chunk) > limit:
                outcome.over = True
                process.kill()
                return outcome
            else:
                sink.write(chunk)
                written += len(chunk)
    return outcome


def explain_failure(status: int, stderr: str, target: HostSpec) -> str:
    """One line saying why a remote command failed, with what to do where that is clear."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    ours = [line.removeprefix("binbot: ") for line in lines if line.startswith("binbot: ")]
    if ours:
        return ours[-1]
    text = " ".join(lines)
    user = target.user or "your user"
    if "Host key verification failed" in text:
        return ("ssh: host key unknown or changed (Host key verification failed); connect once with "
                f"`ssh {target.host}` to check and accept it, or pass -o StrictHostKeyChecking=accept-new")
    if "Permission denied" in text and status == 255:
        return f"ssh: permission denied for {user}; install your public key there (ssh-copy-id) or name the user"
    if "a password is required" in text or "sudo: a terminal is required" in text:
        return (f"sudo asks {user} for a password; allow it passwordless sudo (Raspberry Pi OS does for its "
                "first user), or use --sudo never with a --remote-dir that user can write")
    if status == 255:
        # A session sharing a connection ends silently when that connection drops.
        last = lines[-1] if lines else "the connection was lost"
        return last if last.startswith("ssh: ") else f"ssh: {last}"
    return lines[-1] if lines else f"remote command failed with exit status {status}"
