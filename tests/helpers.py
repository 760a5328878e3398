"""Helpers the tests share: waiting on a condition, a stand-in for systemd's notify socket, `binbot run`
as a child process, a filesystem filled up, a Python without TensorFlow."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

TIMEOUT = 60  # generous: the machine may be busy; the waits end as soon as the thing happens


def wait_for(what, condition, timeout=TIMEOUT, interval=0.05):
    """condition()'s first true value, polling; fails naming what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class NotifySocket:
    """Stands in for systemd: a datagram socket collecting what the daemon sends."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="binbot-notify-")  # short: AF_UNIX paths are limited to 108 bytes
        self.path = os.path.join(self.folder, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def received(self, prefix):
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            pass
        return [m for m in self.messages if any(line.startswith(prefix) for line in m.splitlines())]

    def close(self):
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class DaemonProcess:
    """`binbot run` in a child process, its log in a file and its events in another (unless args name
    --events); stdout and preexec_fn as subprocess.Popen takes them."""

    def __init__(self, tmp, *args, env=None, stdout=subprocess.DEVNULL, preexec_fn=None):
        self.events, self.log = tmp / "events.jsonl", tmp / "daemon.log"
        events = [] if "--events" in args or stdout is not subprocess.DEVNULL else ["--events", str(self.events)]
        command = [sys.executable, "-m", "binbot", "run", "--http", "127.0.0.1:0", *events, *args]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, stdout=stdout, stderr=log, preexec_fn=preexec_fn,
                                            env={**os.environ, **(env or {})})
        self.url = wait_for("the daemon to log its address", self._address)

    def _address(self):
        if self.process.poll() is not None:
            raise AssertionError(f"binbot run exited with {self.process.returncode}:\n{self.log.read_text()}")
        found = re.search(r"listening on (http://\S+)", self.log.read_text())
        return found and found.group(1)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def health(self):
        status, body = self.get("/healthz")
        return status, json.loads(body)

    def metric(self, name, labels=""):
        """A sample from /metrics (waiting out a busy server's 503s), or None if it is not there."""
        _, text = wait_for("/metrics", lambda: (answer := self.get("/metrics"))[0] == 200 and answer)
        found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else None

    def classifying(self):
        """True once the frame counter in /metrics has risen while the caller watched."""
        start = self.metric("binbot_frames_total")
        return wait_for("more frames classified", lambda: self.metric("binbot_frames_total") > start)

    def event_lines(self):
        text = self.events.read_text() if self.events.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=TIMEOUT)



def close(output):
    """Close a daemon output as the shutdown does, with time to spare."""
    output.close(time.monotonic() + TIMEOUT)


def log_lines(caplog):
    """lines(): the messages BinBot's loggers have logged (INFO and up) since this was called."""
    import logging

    caplog.set_level(logging.INFO, logger="binbot")
    return lambda: [record.getMessage() for record in caplog.records if record.name.startswith("binbot")]


def fill(folder, name="filler"):
    """Write to folder until its filesystem has no room left."""
    with open(folder / name, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 1024)
        except OSError:
            pass


# Run in a child interpreter: make `import tensorflow` (and keras) fail as on a Pi without them.
BLOCK_TENSORFLOW = """
import importlib.abc, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, NoTensorFlow())
"""


def run_without_tensorflow(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW + code], capture_output=True, text=True, timeout=120)


def run_daemon(daemon, check):
    """daemon.run() in this (the main) thread while check(daemon) runs beside it; then stop it.

    Returns run()'s exit status; re-raises what check raised.
    """
    import threading

    failure = []

    def watch():
        try:
            check(daemon)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            failure.append(error)
        finally:
            daemon.stop()

    watcher = threading.Thread(target=watch, name="check")
    watcher.start()
    try:
        code = daemon.run()
    finally:
        daemon.stop()
        watcher.join(TIMEOUT)
    if failure:
        raise failure[0]
    assert not watcher.is_alive(), "the check did not finish"
    return code
