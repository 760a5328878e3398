"""`binbot run` under faults: a full disk, a closed stdout, a crowd of idle connections, a source that throws.

In each, frames must go on being classified (the frame counter in /metrics rises), /healthz must
answer, and nothing already written may be lost.
"""

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from binbot.device.capture import Capture, LatestFrame
from binbot.device.httpserver import MAX_CONNECTIONS
from binbot.device.metrics import Metrics
from binbot.device.source import Frame, Source
from test_daemon import TIMEOUT, wait_for
from test_jsonlines import fill, small_disk  # noqa: F401 - a fixture


class Run:
    """`binbot run` on a paced replay, with its stdout wherever the test wants it."""

    def __init__(self, tmp_path, bundle, images, *args, stdout=subprocess.DEVNULL, preexec_fn=None):
        self.log = tmp_path / "daemon.log"
        command = [sys.executable, "-m", "binbot", "run", "--bundle", str(bundle), "--source", f"replay:{images}",
                   "--fps", "30", "--window", "1", "--threshold", "0", "--http", "127.0.0.1:0", "--threads", "1", *args]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, stdout=stdout, stderr=log, preexec_fn=preexec_fn)
        self.port = int(wait_for("the daemon to listen", self._port))

    def _port(self):
        if self.process.poll() is not None:
            raise AssertionError(f"binbot run exited with {self.process.returncode}:\n{self.log.read_text()}")
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log.read_text())
        return found and found.group(1)

    def get(self, path):
        """(status, body) over a fresh connection, with a deadline: a starved server fails the test, not hangs it."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()

    def health(self):
        status, body = self.get("/healthz")
        return status, json.loads(body)

    def metric(self, name, labels=""):
        status, text = wait_for("/metrics", lambda: (answer := self.get("/metrics"))[0] == 200 and answer)
        found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else None

    def frames(self):
        return self.metric("binbot_frames_total")

    def classifying(self):
        """True once the frame counter has risen while the test watched."""
        start = self.frames()
        return wait_for("more frames classified", lambda: self.frames() > start)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=TIMEOUT)
        return code, self.log.read_text()


@pytest.fixture
def run(tmp_path, small_cnn_bundles, image_folder):
    runs = []

    def start(*args, **kwargs):
        folder = tmp_path / f"run{len(runs)}"
        folder.mkdir()
        runs.append(Run(folder, small_cnn_bundles["int8"], image_folder, *args, **kwargs))
        return runs[-1]

    yield start
    for each in runs:
        if each.process.poll() is None:
            each.process.kill()
            each.process.wait()


def whole_lines(path):
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_full_disk_stops_the_writing_not_the_classifying_and_writing_resumes(run, small_disk):
    events, results = small_disk / "events.jsonl", small_disk / "results.jsonl"
    daemon = run("--events", str(events), "--results", str(results))
    wait_for("some results written", lambda: results.exists() and len(whole_lines(results)) >= 5)

    fill(small_disk)
    wait_for("the results output to fail", lambda: not daemon.health()[1]["outputs"]["results"]["ok"])
    kept = {path: path.read_bytes() for path in (events, results)}

    assert daemon.classifying()
    status, health = daemon.health()
    assert status == 200 and health["ok"]
    assert health["outputs"]["results"]["error"] == f"cannot write to {results} (No space left on device)"
    assert daemon.metric("binbot_output_write_failures_total", '{output="results"}') > 0
    assert daemon.metric("binbot_output_failing", '{output="results"}') == 1
    for path, before in kept.items():  # what was written stays, and no half line was added
        assert path.read_bytes().startswith(before)
        whole_lines(path)

    os.remove(small_disk / "filler")
    wait_for("results written again", lambda: len(results.read_bytes()) > len(kept[results]))
    assert wait_for("the output to be ok", lambda: daemon.health()[1]["outputs"]["results"]["ok"])
    code, log = daemon.stop()
    assert code == 0 and "Traceback" not in log
    assert "results: cannot write to" in log and "results: writing to" in log and "again, after" in log
    lines = whole_lines(results)
    assert [line["frame"] for line in lines] == sorted(line["frame"] for line in lines)


def test_stdout_whose_reader_goes_away_does_not_stop_the_daemon(run):
    daemon = run(stdout=subprocess.PIPE)
    first = json.loads(daemon.process.stdout.readline())
    assert first["label"]

    daemon.process.stdout.close()  # `binbot run | head -1`, or a journal that went away

    assert wait_for("the events output to fail", lambda: not daemon.health()[1]["outputs"]["events"]["ok"])
    assert daemon.classifying()
    status, health = daemon.health()
    assert status == 200 and "Broken pipe" in health["outputs"]["events"]["error"]
    code, log = daemon.stop()
    assert code == 0 and "Traceback" not in log and "events: cannot write to stdout (Broken pipe)" in log


def test_a_daemon_started_with_stdout_closed_classifies_and_says_why_it_writes_no_events(run):
    daemon = run(preexec_fn=lambda: os.close(1))

    assert daemon.classifying()
    status, health = daemon.health()
    assert status == 200 and health["outputs"]["events"] == {
        "to": "stdout", "ok": False, "error": "cannot write to stdout (Bad file descriptor)",
        "dropped": health["outputs"]["events"]["dropped"]}
    assert health["outputs"]["events"]["dropped"] > 0
    code, log = daemon.stop()
    assert code == 0 and "Traceback" not in log


def lower_open_files_limit():
    """The daemon gets the soft limit systemd gives a service (1024), whatever this shell allows."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def test_a_crowd_of_idle_connections_does_not_starve_the_daemon(run):
    idle_count = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < idle_count + 200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, idle_count + 200), hard))
    daemon = run("--events", os.devnull, preexec_fn=lower_open_files_limit)
    idle = []
    try:
        for _ in range(idle_count):  # connect and never send a byte
            idle.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=10))

        busy = [sock for sock in idle[-50:] if sock.recv(200).startswith(b"HTTP/1.0 503")]
        assert len(busy) == 50, "connections beyond the cap are answered 503 at once, and closed"
        # The idle ones the server took on are closed after its request timeout; then it answers again.
        status, health = wait_for("/healthz to answer", lambda: (answer := daemon.health())[0] == 200 and answer)
        assert health["ok"] and health["source"]["state"] == "open"
        assert daemon.classifying()
        assert daemon.metric("binbot_http_refused_total") >= idle_count - MAX_CONNECTIONS
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert daemon.classifying()
    code, log = daemon.stop()
    assert code == 0 and "Traceback" not in log


class ThrowingCamera(Source):
    """A camera library that raises something other than SourceError now and then, as real ones do."""

    def __init__(self):
        self.reads = 0

    def open(self):
        pass

    def read(self):
        self.reads += 1
        if self.reads % 3 == 0:
            raise RuntimeError("Camera frontend has timed out!")
        return Frame(np.zeros((48, 64, 3), np.uint8))

    def close(self):
        pass


def test_the_capture_thread_survives_any_error_from_its_source_and_reopens_it():
    metrics, logged = Metrics(), []
    slot = LatestFrame(metrics)
    camera = ThrowingCamera()
    capture = Capture(camera, slot, metrics, logged.append, (32, 32))
    capture.start()
    try:
        taken = [wait_for("a frame", lambda: slot.take(0.1)) for _ in range(6)]
    finally:
        capture.stop(1.0)

    assert len({item.id for item in taken}) == 6 and camera.reads >= 8
    assert any("RuntimeError: Camera frontend has timed out!; reopening" in line for line in logged)
    assert metrics.registry.get_sample_value("binbot_source_reopens_total") >= 2
    assert not capture._thread.is_alive()  # it stopped when asked, not before
