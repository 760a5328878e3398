"""`binbot label`: the field folder's classes, the JSON API over real HTTP (filing, discarding, undo, and
what it refuses), the command without TensorFlow, and the page driven in a real headless Chromium."""

import hashlib
import importlib.util
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from binbot.device import kept
from binbot.device.fieldfolder import UNLABELLED
from binbot.errors import BinbotError
from binbot.train.label import open_field
from binbot.train.label_server import LabelServer, serve
from helpers import BLOCK_TENSORFLOW, CHROMEDRIVER, CHROMIUM, TIMEOUT, Client, chromium, wait_for

CLASSES = ["bottle", "can", "paper"]
# Each frame's scores, in the model's order; the frames are kept a minute apart, in this order.
SCORES = [
    {"bottle": 0.48, "can": 0.40, "paper": 0.12},
    {"bottle": 0.05, "can": 0.55, "paper": 0.40},
    {"bottle": 0.30, "can": 0.30, "paper": 0.40},
    {"bottle": 0.33, "can": 0.33, "paper": 0.34},
    {"bottle": 0.10, "can": 0.20, "paper": 0.70},
]
START = datetime(2026, 11, 30, 14, 42, 23, 123000, tzinfo=timezone.utc)


def write_frame(folder, when, scores, reasons=("low-confidence",), model="small-cnn-int8"):
    """A kept frame as the Pi writes it, <id>.jpg then <id>.json, a colour of its own; its id."""
    folder.mkdir(parents=True, exist_ok=True)
    frame_id = kept.new_id(when)
    shade = int(hashlib.sha256(frame_id.encode()).hexdigest()[:6], 16)
    image = np.full((48, 64, 3), [shade & 255, shade >> 8 & 255, shade >> 16 & 255], np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    (folder / f"{frame_id}.jpg").write_bytes(jpeg)
    label = max(scores, key=scores.get)
    frame = kept.KeptFrame(
        id=frame_id, time=when.isoformat(), model=model, label=label, confidence=scores[label], scores=scores,
        item=None, reasons=list(reasons), width=64, height=48, jpeg_sha256=hashlib.sha256(jpeg).hexdigest(),
        jpeg_size=len(jpeg), origin=f"camera-{frame_id[-4:]}")
    (folder / f"{frame_id}.json").write_text(json.dumps(kept.sidecar(frame)))
    return frame_id


@pytest.fixture
def field(tmp_path):
    """field/unlabelled/ with the five frames of SCORES (written newest first: the listing must sort them)."""
    root = tmp_path / "field"
    for n in reversed(range(len(SCORES))):
        write_frame(root / UNLABELLED, START + timedelta(minutes=n), SCORES[n])
    return root


def ids(root, folder=UNLABELLED):
    return kept.kept_ids(root / folder)


def tree(root):
    """Every file under root with its bytes' hash: what a refused request must leave as it was."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def start():
    """Starts a label server in this process on a free loopback port; returns (client, log lines, server)."""
    servers = []

    def started(root, classes=None):
        lines = []
        server = LabelServer(("127.0.0.1", 0), open_field(root, classes, log=lines.append))
        threading.Thread(target=server.serve_forever, name="label", daemon=True).start()
        servers.append(server)
        return Client(server.url), lines, server

    yield started
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_classes_are_the_sidecars_in_the_models_order_then_other_class_folders(field):
    write_frame(field / UNLABELLED, START + timedelta(hours=1), {"can": 0.2, "glass": 0.7, "bottle": 0.1})
    write_frame(field / UNLABELLED, START + timedelta(hours=2), {"can": 0.5, "../etc": 0.5})
    for folder in ("metal", "bottle", "discarded", ".thumbnails"):
        (field / folder).mkdir()
    warnings = []

    assert open_field(field, log=warnings.append).classes == ["bottle", "can", "paper", "glass", "metal"]
    assert len(warnings) == 1 and re.fullmatch(r"label: warning: .*\.json: class skipped: '\.\./etc' cannot be "
                                               r"a folder name .* \(use --classes\)", warnings[0])
    assert open_field(field, ["glass", "can"]).classes == ["glass", "can", "bottle", "metal"]
    for given, problem in ((["can", ".."], "cannot be a folder name"), (["a/b"], "cannot be a folder name"),
                           (["unlabelled"], "frames not yet labelled"), (["can", "can"], "named twice")):
        with pytest.raises(BinbotError, match=f"--classes: .*{problem}"):
            open_field(field, given)
    with pytest.raises(BinbotError, match=r"has no unlabelled/ folder .*binbot collect"):
        open_field(field / "metal")


def test_the_api_lists_the_frames_oldest_first_with_the_models_guess_and_serves_each_jpeg(field, start):
    client, _, _ = start(field)

    status, state = client.get("/api/frames")

    assert status == 200 and state["classes"] == CLASSES and state["problems"] == []
    assert [frame["id"] for frame in state["frames"]] == ids(field) and len(ids(field)) == len(SCORES)
    first = state["frames"][0]
    assert first["label"] == "bottle" and first["confidence"] == 0.48
    assert first["top"] == [{"label": "bottle", "p": 0.48}, {"label": "can", "p": 0.40}, {"label": "paper", "p": 0.12}]
    assert first["reasons"] == ["low-confidence"] and first["model"] == "small-cnn-int8"
    assert first["time"] == START.isoformat() and first["origin"] == f"camera-{first['id'][-4:]}"
    assert state["filed"] == {"bottle": 0, "can": 0, "paper": 0, "discarded": 0} and state["undo"] is None
    assert state["next"] == f"binbot train --data PHOTOS --data {field} --init RUN/model.keras --out NEWRUN"
    status, jpeg = client.get(f"/frame/{first['id']}.jpg")
    assert status == 200 and jpeg == (field / "unlabelled" / f"{first['id']}.jpg").read_bytes()
    status, page = client.get("/")
    assert status == 200 and b"<title>BinBot labelling</title>" in page
    # Nothing is fetched from elsewhere: no links, imports or URLs but its own relative paths.
    assert not re.search(rb"""(src|href)\s*=\s*["']?[a-z]*:?//|<link(?! rel="icon" href="data:)|@import|url\(|"""
                         rb"""<script[^>]+src""", page, re.I)  # its icon is a data: URI in the page itself


def test_filing_and_discarding_move_both_files_and_undo_moves_them_back_last_first(field, start):
    client, log, _ = start(field)
    first, second, third = ids(field)[:3]

    assert client.post("/api/file", {"id": first, "class": "can"}) == (
        200, {"id": first, "from": "unlabelled", "to": "can"})
    assert client.post("/api/file", {"id": second, "class": "can"})[0] == 200
    assert client.post("/api/discard", {"id": third}) == (200, {"id": third, "from": "unlabelled", "to": "discarded"})

    assert ids(field, "can") == [first, second] and ids(field, "discarded") == [third]
    assert sorted(p.name for p in (field / "can").iterdir()) == sorted(f"{i}.{s}" for i in (first, second)
                                                                       for s in ("jpg", "json"))
    assert third not in ids(field) and not (field / "unlabelled" / f"{third}.jpg").exists()
    _, state = client.get("/api/frames")
    assert len(state["frames"]) == 2 and state["filed"] == {"bottle": 0, "can": 2, "paper": 0, "discarded": 1}
    assert state["undo"] == {"id": third, "to": "discarded"}

    assert client.post("/api/undo", {}) == (200, {"id": third, "from": "discarded", "to": "unlabelled"})
    assert third in ids(field) and (field / "unlabelled" / f"{third}.jpg").is_file()
    assert list((field / "discarded").iterdir()) == []
    assert client.post("/api/undo", {})[1]["id"] == second
    assert client.post("/api/undo", {})[1]["id"] == first
    assert client.post("/api/undo", {}) == (409, {"error": "nothing to undo in this session"})
    assert ids(field) == sorted([first, second, third, *ids(field)[3:]]) and ids(field, "can") == []
    assert log == [f"label: {first} -> can/", f"label: {second} -> can/", f"label: {third} -> discarded/",
                   f"label: undone: {third} back from discarded/ to unlabelled/",
                   f"label: undone: {second} back from can/ to unlabelled/",
                   f"label: undone: {first} back from can/ to unlabelled/"]


FIRST = "FIRST"  # stands for the first frame's id in the cases below
REFUSED = [
    # (method, path, body, headers, status, part of the error)
    ("POST", "/api/file", {"id": "../../etc/passwd", "class": "can"}, {}, 400, "not a kept frame's id"),
    ("POST", "/api/file", {"id": FIRST + "/../x", "class": "can"}, {}, 400, "not a kept frame's id"),
    ("POST", "/api/file", {"id": "20261130T144223123Z-00000000", "class": "can"}, {}, 404, "not in unlabelled/"),
    ("POST", "/api/file", {"id": FIRST, "class": "glass"}, {}, 400, "'glass' is not one of the classes"),
    ("POST", "/api/file", {"id": FIRST, "class": "../can"}, {}, 400, "is not one of the classes"),
    ("POST", "/api/file", {"id": FIRST, "class": "unlabelled"}, {}, 400, "is not one of the classes"),
    ("POST", "/api/file", {"id": FIRST, "class": ["can"]}, {}, 400, "the body should be"),
    ("POST", "/api/file", {"id": FIRST}, {}, 400, 'should be {"class": "...", "id": "..."}'),
    ("POST", "/api/discard", {"id": FIRST, "class": "can"}, {}, 400, 'should be {"id": "..."}'),
    ("POST", "/api/discard", b'{"id": ', {"Content-Type": "application/json"}, 400, "not valid JSON"),
    ("POST", "/api/discard", b"[]", {"Content-Type": "application/json"}, 400, "the body should be"),
    ("POST", "/api/discard", b"[" * 1000, {"Content-Type": "application/json"}, 400, "nested more than 32 levels"),
    ("POST", "/api/discard", b"{}", {"Content-Type": "application/json", "Content-Length": "\N{SUPERSCRIPT TWO}"},
     411, "needs a Content-Length"),
    ("POST", "/api/discard", {"id": FIRST, "pad": "x" * 2000}, {}, 413, "over 1024 bytes"),
    # What a form on another site can send without a preflight: refused for its type.
    ("POST", "/api/discard", b"id=" + FIRST.encode(), {"Content-Type": "application/x-www-form-urlencoded"},
     415, "Content-Type: application/json"),
    ("POST", "/api/discard", b'{"id": "FIRST"}', {"Content-Type": "text/plain"}, 415, "application/json"),
    ("POST", "/api/discard", {"id": FIRST}, {"Origin": "http://evil.example"}, 403, "evil.example is not allowed"),
    ("POST", "/api/discard", {"id": FIRST}, {"Host": "evil.example:8090"}, 403, "is not this server"),  # DNS rebinding
    ("GET", "/api/frames", None, {"Host": "evil.example:8090"}, 403, "is not this server"),
    ("POST", "/api/rename", {"id": FIRST}, {}, 404, "try POST /api/file"),
    ("GET", "/frame/..%2f..%2fetc%2fpasswd", None, {}, 404, "try /"),
    ("GET", "/frame/../unlabelled/FIRST.json", None, {}, 404, "try /"),
    ("GET", "/frame/20261130T144223123Z-00000000.jpg", None, {}, 404, "not in unlabelled/"),
]


@pytest.mark.parametrize("method, path, body, headers, status, error", REFUSED,
                         ids=[f"{case[4]}-{case[5]}" for case in REFUSED])
def test_bad_requests_are_refused_with_a_json_message_and_nothing_moves(field, start, method, path, body, headers,
                                                                       status, error):
    client, log, _ = start(field)
    first = ids(field)[0]
    before = tree(field)
    path = path.replace(FIRST, first)
    if isinstance(body, dict):
        body = {key: value.replace(FIRST, first) if isinstance(value, str) else value for key, value in body.items()}
    elif isinstance(body, bytes):
        body = body.replace(FIRST.encode(), first.encode())

    answer = client.request(method, path, body, headers)

    assert answer[0] == status and error in answer[1]["error"], answer
    assert tree(field) == before and log == []
    assert client.post("/api/undo", {})[0] == 409  # nothing was recorded to undo either


def test_a_frame_whose_name_is_taken_in_the_class_folder_is_not_filed_over_it(field, start):
    client, _, _ = start(field)
    first = ids(field)[0]
    (field / "can").mkdir()
    (field / "can" / f"{first}.json").write_text("a sidecar filed by hand earlier")
    before = tree(field)

    status, answer = client.post("/api/file", {"id": first, "class": "can"})

    assert status == 409 and answer["error"] == f"can/{first}.json exists already; nothing moved " \
                                                "(compare the two and remove one by hand)"
    assert tree(field) == before


def test_undo_refuses_to_overwrite_a_frame_put_back_by_hand(field, start):
    client, _, _ = start(field)
    first = ids(field)[0]
    assert client.post("/api/discard", {"id": first})[0] == 200
    shutil.copy2(field / "discarded" / f"{first}.jpg", field / "unlabelled" / f"{first}.jpg")
    before = tree(field)

    status, answer = client.post("/api/undo", {})

    assert status == 409 and answer["error"].startswith(f"unlabelled/{first}.jpg exists already")
    assert tree(field) == before


def test_a_frame_with_a_broken_sidecar_is_listed_with_its_problem_and_can_be_filed(field, start):
    unlabelled = field / "unlabelled"
    broken = kept.new_id(START - timedelta(days=1))
    (unlabelled / f"{broken}.jpg").write_bytes((unlabelled / f"{ids(field)[0]}.jpg").read_bytes())
    (unlabelled / f"{broken}.json").write_text("{not json")
    lonely = kept.new_id(START - timedelta(days=2))
    (unlabelled / f"{lonely}.json").write_text("{}")  # its JPEG never arrived
    client, _, _ = start(field)

    _, state = client.get("/api/frames")

    assert state["classes"] == CLASSES
    assert state["frames"][0]["id"] == broken and "not valid JSON" in state["frames"][0]["problem"]
    assert state["problems"] == [f"unlabelled/{lonely}.json: its {lonely}.jpg is missing"]
    assert client.post("/api/file", {"id": broken, "class": "paper"})[0] == 200
    assert ids(field, "paper") == [broken]


def test_a_fifo_or_a_hostile_sidecar_in_unlabelled_costs_its_frame_not_the_server(field, start):
    unlabelled = field / "unlabelled"
    fifo_jpeg, fifo_sidecar, deep = (write_frame(unlabelled, START - timedelta(days=n), SCORES[0]) for n in (1, 2, 3))
    for path in (unlabelled / f"{fifo_jpeg}.jpg", unlabelled / f"{fifo_sidecar}.json"):
        path.unlink()
        os.mkfifo(path)  # reading it would wait for a writer for ever
    (unlabelled / f"{deep}.json").write_text("[" * 100_000)
    client, _, _ = start(field)

    status, answer = client.get(f"/frame/{fifo_jpeg}.jpg")
    _, state = client.get("/api/frames")

    assert status == 500 and answer["error"].endswith(f"{fifo_jpeg}.jpg: not a regular file, where a JPEG was expected")
    problems = {frame["id"]: frame.get("problem") for frame in state["frames"]}
    assert problems[fifo_sidecar].endswith("not a regular file, where a JSON file was expected")
    assert problems[deep].endswith("nested more than 32 levels deep, which no BinBot JSON is")
    assert f"unlabelled/{fifo_jpeg}.json: its {fifo_jpeg}.jpg is missing" in state["problems"]
    assert client.post("/api/discard", {"id": deep})[0] == 200


def test_a_failure_inside_a_request_is_a_500_answer_and_one_log_line(field, start, caplog, capsys):
    client, _, _ = start(field)
    (field / "unlabelled").rename(field / "away")
    (field / "unlabelled").write_text("a file where the folder was")

    status, answer = client.get("/api/frames")

    assert status == 500 and answer == {"error": "the server failed on this request (NotADirectoryError); "
                                                 "its log says more"}
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        ("WARNING", f"http: GET /api/frames failed (NotADirectoryError: [Errno 20] Not a directory: "
                    f"'{field / 'unlabelled'}'); answered 500", None)]
    assert "Traceback" not in capsys.readouterr().err
    (field / "unlabelled").unlink()
    (field / "away").rename(field / "unlabelled")
    assert client.get("/api/frames")[0] == 200  # the server goes on


def test_a_request_that_trickles_in_is_cut_at_the_deadline(field, start):
    client, _, server = start(field)
    server.request_timeout = 1.0
    body = json.dumps({"id": ids(field)[0]}).encode()
    before = tree(field)

    with socket.create_connection((client.host, client.port), timeout=15) as slow:
        slow.sendall(b"POST /api/discard HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (client.port, len(body)))
        for byte in body:  # a byte every 0.2 s, each well within a read's timeout, the whole in 3 s
            slow.sendall(bytes([byte]))
            if select.select([slow], [], [], 0.2)[0]:
                break
        answer = received(slow)

    assert answer.startswith(b"HTTP/1.0 408 ")
    assert answer.endswith(b'{"error": "the request took over 1 s to arrive; send it whole, at once"}')
    assert tree(field) == before


def received(sock):
    """All a socket receives until the server closes it (or resets it, having left part of the request unread)."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest.fixture
def label_command():
    """start(field, *args): `binbot label FIELD ARGS` in a child Python where TensorFlow cannot be imported,
    as (the process, its first two lines: what it found, where it listens); killed after the test if still running."""
    processes = []

    def start(root, *args):
        code = BLOCK_TENSORFLOW + (
            "import sys\nfrom binbot.cli import main\n"
            f"code = main(['label', {str(root)!r}, *{list(args)!r}])\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
            "sys.exit(code)\n")
        process = subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        processes.append(process)
        lines = [process.stdout.readline(), process.stdout.readline()]
        assert lines[1], f"binbot label ended: {process.communicate(timeout=TIMEOUT)[1]}"
        return process, lines

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


def this_machines_address():
    """An IPv4 address of this machine other than loopback (the one a route out would use), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # a UDP connect sends nothing; it only picks the route and address
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def test_a_host_other_than_loopback_is_refused_without_allow_remote_and_a_bad_address_always(field):
    with pytest.raises(BinbotError, match=r"--http 0.0.0.0:0: not a loopback address.*--allow-remote"):
        serve(field, "0.0.0.0:0")
    with pytest.raises(BinbotError, match=r"--http 8090: should be HOST:PORT"):
        serve(field, "8090")


def test_allow_remote_serves_beyond_loopback_but_still_refuses_a_host_that_names_another_server(field, label_command):
    address = this_machines_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    first = ids(field)[0]

    _, lines = label_command(field, "--http", "0.0.0.0:0", "--allow-remote")

    port = re.fullmatch(r"label: listening on http://0\.0\.0\.0:(\d+)/ \(.*\)\n", lines[1]).group(1)
    client = Client(f"http://{address}:{port}/")
    foreign = {"Host": f"evil.example:{port}"}  # what a page of another site sends through DNS rebinding
    status, answer = client.request("GET", "/api/frames", headers=foreign)
    assert status == 403 and answer["error"].startswith(f"Host 'evil.example:{port}' is not this server")
    assert client.post("/api/file", {"id": first, "class": "bottle"}, headers=foreign)[0] == 403
    assert ids(field, "bottle") == []
    status, state = client.get("/api/frames")  # by this machine's address, from beyond loopback
    assert status == 200 and [frame["id"] for frame in state["frames"]] == ids(field)
    assert client.post("/api/file", {"id": first, "class": "bottle"})[0] == 200
    assert ids(field, "bottle") == [first]


def test_the_command_serves_where_tensorflow_cannot_be_imported_and_stops_on_sigterm(field, label_command):
    process, lines = label_command(field, "--http", "127.0.0.1:0")

    assert lines[0] == f"label: 5 frame(s) to label in {field / 'unlabelled'}; classes: 1 bottle, 2 can, 3 paper\n"
    url = re.fullmatch(r"label: listening on (http://127\.0\.0\.1:\d+/) \(.*\)\n", lines[1]).group(1)
    first = ids(field)[0]
    assert Client(url).post("/api/file", {"id": first, "class": "bottle"})[0] == 200
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    assert out == f"label: {first} -> bottle/\nlabel: this session: bottle 1; 4 left in {field / 'unlabelled'}\n"
    assert ids(field, "bottle") == [first]


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER and importlib.util.find_spec("selenium")),
                    reason="needs chromium and chromium-driver (apt) and selenium (pip)")
def test_the_page_files_frames_with_keys_and_clicks_discards_and_undoes_in_a_browser(field, start, tmp_path):
    from selenium.webdriver.common.by import By

    client, _, _ = start(field)
    frames = ids(field)
    profile = Path(tempfile.mkdtemp(prefix="binbot-chromium-"))
    browser = chromium(profile, 1000, 800)

    def shown():
        return browser.execute_script("return document.body.dataset.frame")

    def text(element_id):
        return browser.find_element(By.ID, element_id).text

    def press(key, then_shown):
        browser.find_element(By.TAG_NAME, "body").send_keys(key)
        wait_for(f"the page to show {then_shown} after {key!r}", lambda: shown() == then_shown)

    def filed_in(folder, frame_id):
        return (field / folder / f"{frame_id}.json").is_file() and (field / folder / f"{frame_id}.jpg").is_file() \
            and not list((field / "unlabelled").glob(f"{frame_id}.*"))

    try:
        browser.get(client_url(client))
        wait_for("the first frame", lambda: shown() == frames[0])
        picture = browser.find_element(By.ID, "picture")
        wait_for("its picture", lambda: browser.execute_script("return arguments[0].naturalWidth", picture) == 64)
        assert text("guess") == "bottle" and text("confidence") == "48% confident"
        bars = [row.text.split("\n") for row in browser.find_elements(By.CSS_SELECTOR, "#bars li")]
        assert bars == [["bottle", "48%"], ["can", "40%"], ["paper", "12%"]]
        assert text("reasons") == "low-confidence" and text("model") == "small-cnn-int8"
        assert text("left") == "5 left"
        buttons = browser.find_elements(By.CSS_SELECTOR, "#classes button")
        assert [(b.find_element(By.TAG_NAME, "kbd").text, b.get_attribute("data-class")) for b in buttons] == [
            ("1", "bottle"), ("2", "can"), ("3", "paper")]

        press("1", frames[1])
        wait_for("the first frame in bottle/", lambda: filed_in("bottle", frames[0]))
        press("2", frames[2])
        wait_for("the second frame in can/", lambda: filed_in("can", frames[1]))
        press("1", frames[3])
        wait_for("the third frame in bottle/", lambda: filed_in("bottle", frames[2]))
        assert text("guess") == "paper" and text("left") == "2 left"
        press("x", frames[4])
        wait_for("the fourth frame in discarded/", lambda: filed_in("discarded", frames[3]))
        assert text("filed") == "this session: bottle 2 · can 1 · paper 0 · discarded 1"

        press("u", frames[3])
        wait_for("the fourth frame back in unlabelled/", lambda: frames[3] in ids(field))
        assert ids(field, "discarded") == [] and (field / "unlabelled" / f"{frames[3]}.jpg").is_file()
        assert ids(field, "bottle") == [frames[0], frames[2]] and ids(field, "can") == [frames[1]]
        assert text("left") == "2 left" and text("filed") == "this session: bottle 2 · can 1 · paper 0 · discarded 0"

        browser.find_element(By.CSS_SELECTOR, '#classes button[data-class="paper"]').click()
        wait_for("the fourth frame in paper/ by a click", lambda: filed_in("paper", frames[3]))
        press("3", "")
        wait_for("the last frame in paper/", lambda: filed_in("paper", frames[4]))
        wait_for("the page to say all is done", lambda: browser.find_element(By.ID, "done").is_displayed())
        assert text("next") == f"binbot train --data PHOTOS --data {field} --init RUN/model.keras --out NEWRUN"
        assert not browser.find_element(By.ID, "picture").is_displayed()
        assert browser.save_screenshot(str(tmp_path / "label-done.png"))
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert ids(field) == [] and ids(field, "paper") == frames[3:]


def client_url(client):
    return f"http://{client.host}:{client.port}/"
