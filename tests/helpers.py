"""What the tests share, in one module (fixtures are in conftest.py; test modules import nothing from each other):
where the shared models and data are, waiting on a condition, a stand-in for systemd's notify socket,
`binbot run` as a child process, a filesystem filled up, a Python without some packages, image and kept-frame
folders, `binbot convert`, an HTTP client for `binbot label` and a headless Chromium."""

import hashlib
import http.client
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
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from binbot.cli import main
from binbot.device.frames import load_model_input
from binbot.device.kept import KeptFrame, new_id, read_sidecar, sidecar

SHARED = Path(__file__).resolve().parents[2] / "shared"
IMAGENET_H5 = SHARED / "models" / "mobilenet_v2_1.0_224_no_top_imagenet_from_tfslim.h5"

# Small enough to train in seconds; MobileNetV2 accepts inputs down to 32x32.
TINY_SIZE = 32

needs_imagenet_weights = pytest.mark.skipif(not IMAGENET_H5.is_file(), reason=f"{IMAGENET_H5} not present")

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


def blocker(*packages: str) -> str:
    """Python to run first in a child interpreter: any import of packages (or a module inside one) then fails."""
    return f"""
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == package or name.startswith(package + '.') for package in {packages!r}):
            raise ImportError(f'{{name}} is blocked in this test')
sys.meta_path.insert(0, Blocked())
"""


# As on a Pi without them.
BLOCK_TENSORFLOW = blocker("tensorflow", "keras", "tf_keras")
# The convert side must never need the trainer.
BLOCK_TRAIN = blocker("binbot.train")


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


def names(folder):
    """The names in folder, sorted; none if it does not exist."""
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def write_files_only_pillow_reads(folder):
    """A PNG cut short inside its last chunk, and a TGA named .png: Pillow decodes both, OpenCV neither."""
    Image.new("RGB", (20, 15), (200, 80, 40)).save(folder / "whole.png")
    whole = (folder / "whole.png").read_bytes()
    (folder / "whole.png").unlink()
    (folder / "cut_short.png").write_bytes(whole[:-20])
    Image.new("RGB", (20, 15), (200, 80, 40)).save(folder / "targa.png", format="TGA")
    for name in ("cut_short.png", "targa.png"):
        with Image.open(folder / name) as image:
            image.load()  # what the trainer checked files with before: it let these through
    return ["cut_short.png", "targa.png"]


def as_kept_frame(picture, label: str = "can") -> str:
    """Rename a picture <id>.jpg and write its sidecar <id>.json beside it, as `binbot label` leaves a frame."""
    frame_id = new_id()
    jpeg = picture.rename(picture.with_name(f"{frame_id}.jpg"))
    data = jpeg.read_bytes()
    width, height = Image.open(jpeg).size
    frame = KeptFrame(id=frame_id, time="2026-11-30T14:42:23.123Z", model="tiny", label=label, confidence=0.4,
                      scores={"can": 0.4, "paper": 0.35, "bottle": 0.25}, item=None, reasons=["low-confidence"],
                      width=width, height=height, jpeg_sha256=hashlib.sha256(data).hexdigest(), jpeg_size=len(data))
    (jpeg.parent / f"{frame_id}.json").write_text(json.dumps(sidecar(frame)))
    read_sidecar(jpeg.parent / f"{frame_id}.json")  # checked as the real ones are
    return frame_id


def keep_frames(folder, n: int) -> list[str]:
    """n kept field frames in folder: <id>.jpg and <id>.json."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        Image.new("RGB", (20, 15), (i * 30 % 255, 40, 200)).save(folder / "new.jpg")
        ids.append(as_kept_frame(folder / "new.jpg"))
    return ids


def convert(*args) -> int:
    return main(["convert", *map(str, args)])


def leftovers(parent):
    """What an interrupted or refused write left in parent: its .partial- and .old- folders."""
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def split_images(run, part):
    """The images of part ("train" or "validation") of run's split.json as the device loads them, and their labels."""
    split = json.loads((run / "split.json").read_text())
    frames = np.stack([load_model_input(e["path"], TINY_SIZE, TINY_SIZE) for e in split[part]])
    return frames, np.array([e["label"] for e in split[part]])


class Client:
    """Real HTTP requests to a label server; answers as (status, JSON or bytes)."""

    def __init__(self, url):
        found = re.fullmatch(r"http://([\d.]+):(\d+)/", url)
        self.host, self.port = found.group(1), int(found.group(2))

    def request(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            if body is not None and not isinstance(body, bytes):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            if response.getheader("Content-Type") == "application/json":
                data = json.loads(data)
            return response.status, data
        finally:
            connection.close()

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body, headers=None):
        return self.request("POST", path, body, headers)


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def chromium(profile: Path, width: int, height: int):
    """Debian's headless Chromium under selenium, as root on a machine without internet, its page width x height
    CSS pixels as on a phone. conftest.py marks a test that calls this `browser`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={profile}", "--hide-scrollbars"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
    return browser
