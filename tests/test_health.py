"""/healthz's verdict, from the daemon's own state: a camera that hangs in its read is reported."""

import threading

import numpy as np

from binbot.device.config import RunConfig
from binbot.device.daemon import Daemon
from binbot.device.source import Frame, Source
from helpers import run_daemon, wait_for


class HangingCamera(Source):
    """Delivers one frame, then blocks in read as a wedged camera driver does."""

    def __init__(self, frame):
        self.frame, self.reads, self.release = frame, 0, threading.Event()

    def open(self):
        pass

    def read(self):
        self.reads += 1
        if self.reads > 1:
            self.release.wait()
        return Frame(self.frame)

    def close(self):
        pass


def test_a_camera_stuck_in_its_read_makes_health_fail_and_say_stalled(small_cnn_bundles):
    camera = HangingCamera(np.zeros((48, 64, 3), np.uint8))
    daemon = Daemon(RunConfig(bundle=str(small_cnn_bundles["int8"]), stale_after=0.3, http="off"), camera)

    def check(daemon):
        ok, health = wait_for("the one frame", lambda: (h := daemon.health()) and h[1].get("frames") == 1 and h)
        assert ok and health["source"]["state"] == "open"

        ok, health = wait_for("health to fail", lambda: (h := daemon.health()) and not h[0] and h)
        assert health["source"]["state"] == "stalled" and health["last_frame_age"] >= 0.3

    try:
        assert run_daemon(daemon, check) == 0
    finally:
        camera.release.set()
