"""The live view: `binbot run` as a subprocess on a replayed folder, its page, stream, feed and snapshot
over real HTTP, and the page in a real headless Chromium."""

import contextlib
import http.client
import importlib.util
import json
import os
from importlib import resources
import re
import shutil
import socket
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from binbot.device.config import load_config
from binbot.device.httpserver import serve
from binbot.device.metrics import Metrics
from binbot.device.outputs import FrameRecord
from binbot.device.view import LiveView, ViewSettings
from binbot.device.view_feed import Feed
from binbot.errors import BinbotError
from helpers import CHROMEDRIVER, CHROMIUM, chromium, close, wait_for

DOCS = Path(__file__).resolve().parents[1] / "docs"
STALL_SECONDS = 30  # how long a viewer that never reads is kept connected while the daemon is watched
RATE_WINDOW = 3.0  # seconds over which a stream's frames are counted against its cap


@pytest.fixture(scope="module")
def camera_images(tmp_path_factory):
    """bottle/, can/, paper/ with 6 generated 640x480 photos each: frames the size of a camera's."""
    from binbot.train.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("view") / "images", per_class=6, seed=5, width=640, height=480)


@pytest.fixture
def start(start_daemon, small_cnn_bundles, camera_images):
    """Starts `binbot run` on the photos replayed at 20 fps, an event at each change of label; args override."""
    return lambda *args: start_daemon(
        "--bundle", str(small_cnn_bundles["int8"]), "--source", f"replay:{camera_images}", "--fps", "20",
        "--window", "1", "--threshold", "0", "--threads", "1", *args)


@contextlib.contextmanager
def opened(daemon, path, headers=None):
    """A GET whose answer is read as it comes: the http.client response, its headers read."""
    address = urlsplit(daemon.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=15)
    response = None
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        yield response
    finally:
        if response is not None:
            response.close()  # the response holds the socket: it is closed only when both are
        connection.close()


class Parts:
    """A multipart/x-mixed-replace stream read part by part, checking its framing: the boundary, each part's headers."""

    def __init__(self, response):
        content_type = response.getheader("Content-Type")
        assert content_type.startswith("multipart/x-mixed-replace; boundary="), content_type
        self.delimiter = f"\r\n--{content_type.split('boundary=', 1)[1]}\r\n".encode()
        self.response, self.buffer = response, b""
        assert self._until(self.delimiter) == b""  # the stream starts with a boundary

    def next(self):
        """The next part's JPEG bytes."""
        assert self._until(b"\r\n\r\n") == b"Content-Type: image/jpeg"
        return self._until(self.delimiter)

    def _until(self, marker):
        while marker not in self.buffer:
            chunk = self.response.read1(65536)
            assert chunk, "the stream ended"
            self.buffer += chunk
        found, self.buffer = self.buffer.split(marker, 1)
        return found


def decode(jpeg):
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG OpenCV can decode"
    return image


def read_message(response):
    """The next server-sent event's fields (comments skipped), e.g. {"id": "3", "event": "result", "data": "{...}"}."""
    fields = {}
    while True:
        line = response.readline()
        assert line, "the feed ended"
        line = line.decode().removesuffix("\n")
        if not line and fields:
            return fields
        if line and not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def metric(daemon, name, labels=""):
    status, text = daemon.get("/metrics")
    assert status == 200
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def viewers(daemon, kind="stream"):
    return metric(daemon, "binbot_view_clients", f'{{kind="{kind}"}}')


def frames(daemon):
    return daemon.health()[1]["frames"]


def more_frames(daemon, count):
    start = frames(daemon)
    wait_for(f"{count} more frames classified", lambda: frames(daemon) >= start + count)


def process_status(pid):
    """(resident MB, threads) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024
    return rss, int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))


def a_record(rgb=None):
    return FrameRecord(time="2026-12-03T12:00:00.000+00:00", frame=0, origin="", model="m", label="can",
                       confidence=0.9, top=[], item=None, scores={"can": 0.9}, rgb=rgb)


def test_the_loop_hands_the_view_a_reference_and_nothing_is_encoded_without_a_viewer():
    metrics = Metrics()
    view = LiveView(ViewSettings(), metrics)
    rgb = np.zeros((480, 640, 3), np.uint8)

    view.frame(a_record(rgb))
    view.event({"label": "can"})

    assert view.encoder._newest[1] is rgb  # not a copy
    assert view.encoder._thread is None  # no viewer, no encoding thread
    assert metrics.registry.get_sample_value("binbot_view_frames_encoded_total") == 0
    backlog, _ = view.feed.start(None)
    assert [m.kind for m in backlog] == ["event"]  # results are fed only while a page listens
    close(view)


def test_a_new_listener_is_not_sent_a_result_older_than_stale_after():
    now = [100.0]
    feed = Feed(stale_after=5.0, clock=lambda: now[0])
    feed.publish("event", {"label": "can"})
    feed.publish("result", {"label": "can", "frame": 1})

    fresh, _ = feed.start(None)
    now[0] += 5.5
    stale, _ = feed.start(None)

    assert [m.kind for m in fresh] == ["event", "result"]
    assert [m.kind for m in stale] == ["event"]  # a camera that stopped: its last answer is not shown as news


def test_the_pages_carry_their_icon_so_browsers_ask_for_no_favicon():
    for page in (resources.files("binbot.device") / "view.html", resources.files("binbot.train") / "label.html"):
        assert '<link rel="icon" href="data:image/svg+xml,' in page.read_text()


def test_the_page_is_one_self_contained_file_served_at_the_root(start):
    daemon = start()

    with opened(daemon, "/") as response:
        page = response.read().decode()
        assert response.status == 200 and response.getheader("Content-Type") == "text/html; charset=utf-8"

    assert 'src="stream.mjpg"' in page and 'new EventSource("events")' in page
    # Nothing is fetched from elsewhere: no links, imports or URLs but its own relative paths.
    # (Its icon is a data: URI in the page itself, so the browser asks for no /favicon.ico.)
    assert not re.search(r"""(src|href)\s*=\s*["']?[a-z]*:?//|<link(?! rel="icon" href="data:)|@import|url\(""", page,
                         re.I)
    assert not re.search(r"<script[^>]+src", page, re.I)


def test_the_stream_is_whole_jpegs_at_the_view_width_capped_at_the_view_rate(start):
    daemon = start("--view-fps", "4", "--view-width", "320")

    with opened(daemon, "/stream.mjpg") as response:
        assert response.status == 200
        stream = Parts(response)
        first = stream.next()
        parts, end = [], time.monotonic() + RATE_WINDOW
        while time.monotonic() < end:
            parts.append(stream.next())

    images = [decode(jpeg) for jpeg in [first, *parts]]
    assert {image.shape for image in images} == {(240, 320, 3)}  # 640x480 frames scaled down to 320 wide
    assert len({jpeg for jpeg in parts}) > 1  # a moving picture
    # The replay gives 20 frames a second; the stream sends at most 4 (a generous bound: timing is not tested).
    assert 1 <= len(parts) <= 4 * RATE_WINDOW * 1.5


def test_viewers_share_one_encoding_and_none_is_made_while_nobody_watches(start):
    daemon = start()
    more_frames(daemon, 20)
    assert metric(daemon, "binbot_view_frames_encoded_total") == 0

    count = 8
    with opened(daemon, "/stream.mjpg") as first, opened(daemon, "/stream.mjpg") as second:
        for response in (first, second):  # the second's parts wait in its socket meanwhile
            stream = Parts(response)
            received = [stream.next() for _ in range(count)]
            assert all(decode(jpeg).shape == (480, 640, 3) for jpeg in received)
        encoded = metric(daemon, "binbot_view_frames_encoded_total")
    assert 1 <= encoded <= count + 3, f"{encoded} encodings for {count} frames sent to each of 2 viewers"

    wait_for("both viewers to be gone", lambda: viewers(daemon) == 0)
    more_frames(daemon, 10)
    before = metric(daemon, "binbot_view_frames_encoded_total")
    more_frames(daemon, 20)
    assert metric(daemon, "binbot_view_frames_encoded_total") == before


def test_the_snapshot_is_the_newest_frame_once(start):
    daemon = start("--view-width", "320")
    more_frames(daemon, 1)

    with opened(daemon, "/snapshot.jpg") as response:
        jpeg = response.read()
        assert response.status == 200 and response.getheader("Content-Type") == "image/jpeg"
        assert int(response.getheader("Content-Length")) == len(jpeg)

    assert decode(jpeg).shape == (240, 320, 3)
    more_frames(daemon, 5)
    with opened(daemon, "/snapshot.jpg") as response:
        assert response.read() != jpeg  # a newer frame


def test_the_feed_sends_results_and_events_and_a_reconnection_resumes_after_the_last_id(start):
    daemon = start()
    more_frames(daemon, 1)

    with opened(daemon, "/events") as response:
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
        assert read_message(response) == {"retry": "2000"}
        messages = []
        while sum(m["event"] == "result" for m in messages) < 12:
            messages.append(read_message(response))
    ids = [int(m["id"]) for m in messages]
    assert ids == sorted(ids) and ids[-1] - ids[-10] == 9  # numbered, and none skipped once live
    results = [json.loads(m["data"]) for m in messages if m["event"] == "result"]
    events = [json.loads(m["data"]) for m in messages if m["event"] == "event"]
    assert events and all({"time", "label", "confidence", "top", "model"} <= set(e) for e in events)
    assert len(results) >= 10 and all({"label", "confidence", "top", "model", "frame", "fps"} <= set(r)
                                      for r in results)
    # At most 5 results a second though 20 frames are classified (the span of 10, stamped by the daemon).
    first, last = (datetime.fromisoformat(r["time"]) for r in (results[-10], results[-1]))
    assert (last - first).total_seconds() >= 9 * 0.2 * 0.8

    with opened(daemon, "/events", {"Last-Event-ID": str(ids[-1])}) as response:
        assert read_message(response) == {"retry": "2000"}
        assert int(read_message(response)["id"]) == ids[-1] + 1  # what it missed, from where it left

    with opened(daemon, "/events") as response:  # a fresh page is sent the last events first
        read_message(response)
        backlog = [read_message(response) for _ in range(3)]
    assert backlog[0]["event"] == "event" and int(backlog[0]["id"]) <= ids[-1]


def test_viewers_beyond_the_cap_are_answered_503_and_a_freed_place_is_taken_again(start):
    daemon = start("--view-clients", "2")
    more_frames(daemon, 1)

    with contextlib.ExitStack() as stack:
        for path in ("/stream.mjpg", "/events"):
            for _ in range(2):
                assert stack.enter_context(opened(daemon, path)).status == 200
            with opened(daemon, path) as refused:
                body = json.loads(refused.read())
                assert refused.status == 503 and refused.getheader("Retry-After") == "5"
                assert body == {"error": "too many live viewers (2 at once, [view] clients); try again later"}
        assert daemon.health()[0] == 200  # the rest of the server still answers
    assert metric(daemon, "binbot_view_refused_total", '{kind="stream"}') == 1

    wait_for("the viewers to be gone", lambda: viewers(daemon) == 0 and viewers(daemon, "events") == 0)
    with opened(daemon, "/stream.mjpg") as response:
        assert response.status == 200
        decode(Parts(response).next())


def test_a_viewer_that_never_reads_is_cut_off_and_costs_the_daemon_no_frames_or_memory(start):
    daemon = start()
    with opened(daemon, "/stream.mjpg") as response:  # the encoding thread, once started, stays
        Parts(response).next()
    wait_for("the first viewer to be gone", lambda: viewers(daemon) == 0)
    more_frames(daemon, 20)
    fps_before = daemon.health()[1]["fps"]
    rss_before, threads_before = process_status(daemon.process.pid)

    address = urlsplit(daemon.url)
    stalled = [socket.socket(), socket.socket()]
    started = time.monotonic()
    try:
        for sock, path in zip(stalled, ("/stream.mjpg", "/events")):  # a phone that went to sleep
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((address.hostname, address.port))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())  # and never a byte read
        wait_for("the stalled viewers to be admitted", lambda: viewers(daemon) == viewers(daemon, "events") == 1)
        with opened(daemon, "/stream.mjpg") as response:  # another viewer is served meanwhile
            stream = Parts(response)
            assert len({stream.next() for _ in range(5)}) > 1
        # The server's write timeout cuts the stalled viewers off, and their places are free again.
        wait_for("the stalled viewers to be cut off", lambda: viewers(daemon) == viewers(daemon, "events") == 0,
                 timeout=STALL_SECONDS)
        time.sleep(max(0.0, STALL_SECONDS - (time.monotonic() - started)))
        status, health = daemon.health()
        rss_after, threads_after = process_status(daemon.process.pid)
    finally:
        for sock in stalled:
            sock.close()

    assert status == 200 and health["fps"] >= 0.75 * fps_before, (fps_before, health["fps"])
    assert rss_after - rss_before < 10, f"RSS grew from {rss_before:.1f} to {rss_after:.1f} MB"
    assert threads_after <= threads_before + 1  # + the /healthz answer's thread, if it has not ended yet


def test_a_listener_that_never_reads_is_let_go_even_while_the_feed_is_quiet():
    metrics = Metrics()
    view = LiveView(ViewSettings(width=64, clients=1), metrics, listen_for=1.0)
    server = serve(("127.0.0.1", 0), lambda: (True, {}), metrics.text, lambda: None, routes=view.routes())
    listeners = lambda: metrics.registry.get_sample_value("binbot_view_clients", {"kind": "events"})  # noqa: E731
    asleep = socket.socket()
    try:
        asleep.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        asleep.connect(server.server_address)
        asleep.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never a byte read
        wait_for("the listener to be admitted", lambda: listeners() == 1)

        # No frames: a keepalive every 10 s, which its buffers would take for ever to fill.
        wait_for("its place to be freed", lambda: listeners() == 0, timeout=10)
        with opened(SimpleNamespace(url=server.url), "/events") as response:
            assert response.status == 200 and read_message(response) == {"retry": "2000"}
    finally:
        asleep.close()
        server.shutdown()
        server.server_close()
        close(view)


def test_the_view_and_latest_answer_only_a_host_that_names_this_machine(start):
    daemon = start()
    more_frames(daemon, 1)
    port = urlsplit(daemon.url).port

    for path in ("/", "/stream.mjpg", "/events", "/snapshot.jpg", "/latest"):  # a page of another site, rebound
        with opened(daemon, path, {"Host": f"evil.example:{port}"}) as response:
            assert response.status == 403, path
            assert json.loads(response.read())["error"].startswith(f"Host 'evil.example:{port}' is not this server")
    for host in (f"127.0.0.1:{port}", "localhost:8080", "[::1]:9000", f"{socket.gethostname()}.local:{port}",
                 "192.168.1.20:8080"):  # an SSH tunnel's local port may be any
        with opened(daemon, "/snapshot.jpg", {"Host": host}) as response:
            assert response.status == 200 and decode(response.read()) is not None, host
    for path in ("/healthz", "/metrics"):  # Prometheus scrapes by whatever name it was given
        with opened(daemon, path, {"Host": "pi-kitchen.lan:8080"}) as response:
            assert response.status == 200, path


def test_a_last_event_id_that_is_not_plainly_a_number_is_ignored(start):
    daemon = start()
    more_frames(daemon, 1)

    for value in ("\N{SUPERSCRIPT TWO}", "5" * 5000, "-1", "1e3"):
        with opened(daemon, "/events", {"Last-Event-ID": value}) as response:
            assert response.status == 200 and read_message(response) == {"retry": "2000"}
            assert "id" in read_message(response)  # the feed, from its start

    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log.read_text()


def test_view_off_serves_no_live_view_and_encodes_nothing(start):
    daemon = start("--view", "off")
    more_frames(daemon, 5)

    for path in ("/", "/stream.mjpg", "/events", "/snapshot.jpg"):
        assert daemon.get(path) == (404, '{"error": "try /healthz, /metrics, /latest"}'), path
    assert "binbot_view_" not in daemon.get("/metrics")[1]
    assert "view" not in daemon.health()[1]["outputs"]
    assert daemon.stop() == 0
    assert "live view" not in daemon.log.read_text()


def test_the_view_settings_are_strict(tmp_path):
    config = tmp_path / "binbot.toml"
    config.write_text('bundle = "b"\n[view]\nenabled = "off"\n')

    with pytest.raises(BinbotError, match=r"\[view\] enabled should be true or false, not 'off'"):
        load_config(config, {})
    for key, value, problem in (("fps", 0.0, "must be above 0 and at most 30"),
                                ("width", 8, "must be between 32 and 4096"),
                                ("clients", 9, "must be between 1 and 8")):
        with pytest.raises(BinbotError, match=rf"command line: \[view\] {key} = {value!r}: {problem}"):
            load_config(None, {"bundle": "b", f"view.{key}": value})
    assert load_config(None, {"bundle": "b", "view.enabled": False, "view.fps": 2.0}).output("view") == ViewSettings(
        enabled=False, fps=2.0)


def test_the_view_flag_takes_on_or_off(capsys):
    from binbot.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["run", "--bundle", "b", "--view", "no"])

    assert exited.value.code == 2
    assert "--view: should be on or off, not 'no'" in capsys.readouterr().err


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER and importlib.util.find_spec("selenium")),
                    reason="needs chromium and chromium-driver (apt) and selenium (pip)")
def test_the_page_in_a_browser_shows_the_live_picture_the_latest_label_and_the_events_as_they_come(start, tmp_path):
    from selenium.webdriver.common.by import By

    daemon = start("--fps", "4")  # slow enough that the page and /latest show the same frame for a while
    profile = Path(tempfile.mkdtemp(prefix="binbot-chromium-"))
    browser = chromium(profile, 412, 860)
    try:
        browser.get(daemon.url + "/")
        picture = browser.find_element(By.ID, "picture")
        wait_for("the picture", lambda: browser.execute_script("return arguments[0].naturalWidth", picture) > 0)
        first = picture.screenshot_as_png
        wait_for("the picture to change", lambda: picture.screenshot_as_png != first)

        def shown_and_latest():
            label, frame = browser.execute_script(
                "const l = document.getElementById('label'); return [l.textContent, l.dataset.frame]")
            latest = json.loads(daemon.get("/latest")[1])
            return frame == str(latest["frame"]) and (label, latest["label"])

        shown, latest = wait_for("the page to show the frame /latest shows", shown_and_latest)
        assert shown == latest

        def listed():
            return len(browser.find_elements(By.CSS_SELECTOR, "#events li:not(.none)"))

        seen = wait_for("an event listed", listed)
        wait_for("more events listed", lambda: listed() > seen)
        wait_for("the page to say it is live", lambda: browser.find_element(By.ID, "status").text == "live")

        def shows_a_photo_of_its_label():  # mid-way through a class's 6 photos, so the picture is of it too
            latest = shown_and_latest() and json.loads(daemon.get("/latest")[1])
            origin = Path(latest["origin"]) if latest else None
            return origin and origin.parent.name == latest["label"] and 1 <= int(origin.stem.split("_")[-1]) <= 4

        wait_for("a photo shown with its right label", shows_a_photo_of_its_label)
        screenshot = DOCS / "live-view.png" if os.environ.get("BINBOT_UPDATE_SCREENSHOT") == "1" else \
            tmp_path / "live-view.png"
        screenshot.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(screenshot))
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert daemon.stop() == 0
