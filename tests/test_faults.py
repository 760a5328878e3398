"""`binbot run` under faults: a full disk, a closed stdout, a crowd of idle or slow connections, a source that
throws.

In each, frames must go on being classified (the frame counter in /metrics rises), /healthz must
answer, and nothing already written may be lost.
"""

import json
import os
import resource
import select
import socket
import subprocess
import threading

import numpy as np
import pytest

from binbot.device.capture import Capture, LatestFrame
from binbot.device.frames import resize_to_input
from binbot.device.httpguard import MAX_WAITING
from binbot.device.httpserver import MAX_CONNECTIONS
from binbot.device.metrics import Metrics
from binbot.device.source import Frame, Source
from helpers import fill, log_lines, wait_for


@pytest.fixture
def run(start_daemon, small_cnn_bundles, image_folder):
    """start(*args, **options): `binbot run` on a paced replay, every frame an event."""
    return lambda *args, **options: start_daemon(
        "--bundle", str(small_cnn_bundles["int8"]), "--source", f"replay:{image_folder}", "--fps", "30",
        "--window", "1", "--threshold", "0", "--threads", "1", *args, **options)


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
    code, log = daemon.stop(), daemon.log.read_text()
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
    code, log = daemon.stop(), daemon.log.read_text()
    assert code == 0 and "Traceback" not in log and "events: cannot write to stdout (Broken pipe)" in log


def test_a_daemon_started_with_stdout_closed_classifies_and_says_why_it_writes_no_events(run):
    daemon = run("--events", "-", preexec_fn=lambda: os.close(1))

    assert daemon.classifying()
    status, health = daemon.health()
    assert status == 200 and health["outputs"]["events"] == {
        "to": "stdout", "ok": False, "error": "cannot write to stdout (Bad file descriptor)",
        "dropped": health["outputs"]["events"]["dropped"]}
    assert health["outputs"]["events"]["dropped"] > 0
    code, log = daemon.stop(), daemon.log.read_text()
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
    port = int(daemon.url.rsplit(":", 1)[1])
    idle = []
    try:
        for _ in range(idle_count):  # connect and never send a byte
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))

        # Beyond the cap on connections still sending their request, the longest waiting are answered 503, and closed.
        busy = [sock for sock in idle[:50] if sock.recv(200).startswith(b"HTTP/1.0 503")]
        assert len(busy) == 50
        # Idle connections hold no thread and no slot, so a whole request is answered meanwhile.
        status, health = wait_for("/healthz to answer", lambda: (answer := daemon.health())[0] == 200 and answer)
        assert health["ok"] and health["source"]["state"] == "open"
        assert daemon.classifying()
        assert daemon.metric("binbot_http_refused_total") >= idle_count - MAX_WAITING
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert daemon.classifying()
    code, log = daemon.stop(), daemon.log.read_text()
    assert code == 0 and "Traceback" not in log


class Slowloris:
    """count connections sending a request head one byte every `every` seconds, never finishing it, each
    reconnected as soon as the server cuts it; what the server answered a cut one is kept."""

    HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "

    def __init__(self, port, count, every):
        self.port, self.count, self.every = port, count, every
        self.connected, self.answers = threading.Event(), []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris")

    def __enter__(self):
        self._thread.start()
        assert self.connected.wait(30), "the attack could not connect"
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(self.HEAD[:1])
        return [sock, 1]

    def _run(self):
        slow = [self._connect() for _ in range(self.count)]
        self.connected.set()
        while not self._stop.wait(self.every):
            cut, _, _ = select.select([sock for sock, _ in slow], [], [], 0)
            for n, (sock, sent) in enumerate(slow):
                if sock in cut:
                    self.answers.append(sock.recv(200).split(b"\r\n")[0])
                    sock.close()
                    slow[n] = self._connect()
                    continue
                try:
                    sock.sendall(self.HEAD[sent:sent + 1] or b"a")
                    slow[n][1] += 1
                except OSError:
                    sock.close()
                    slow[n] = self._connect()
        for sock, _ in slow:
            sock.close()


def test_a_slowloris_crowd_does_not_keep_healthz_from_answering(run):
    daemon = run("--events", os.devnull)
    wait_for("/healthz to answer", lambda: daemon.health()[0] == 200)
    port = int(daemon.url.rsplit(":", 1)[1])

    # As many slow clients as the server answers at once, each byte well within a read's timeout.
    with Slowloris(port, MAX_CONNECTIONS, every=3.0) as attack:
        # deploy's health check asks every 0.5 s
        wait_for("/healthz to answer 200 in the attack", lambda: daemon.health()[0] == 200, timeout=10, interval=0.5)
        wait_for("the slow requests to be cut at the deadline", lambda: len(attack.answers) >= MAX_CONNECTIONS)
        wait_for("/healthz to answer 200 with the attack reconnected", lambda: daemon.health()[0] == 200,
                 timeout=10, interval=0.5)

    assert set(attack.answers) == {b"HTTP/1.0 408 Request Timeout"}
    code, log = daemon.stop(), daemon.log.read_text()
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


def test_the_capture_thread_survives_any_error_from_its_source_and_reopens_it(caplog):
    metrics, logged = Metrics(), log_lines(caplog)
    slot = LatestFrame(metrics)
    camera = ThrowingCamera()
    capture = Capture(camera, slot, metrics, lambda rgb: resize_to_input(rgb, 32, 32))
    capture.start()
    try:
        taken = [wait_for("a frame", lambda: slot.take(0.1)) for _ in range(6)]
    finally:
        capture.stop(1.0)

    assert len({item.id for item in taken}) == 6 and camera.reads >= 8
    assert any("RuntimeError: Camera frontend has timed out!; reopening" in line for line in logged())
    assert metrics.registry.get_sample_value("binbot_source_reopens_total") >= 2
    assert not capture._thread.is_alive()  # it stopped when asked, not before
