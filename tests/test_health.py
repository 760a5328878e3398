"""/healthz's verdict, from the daemon's own state: a camera that hangs in its read is reported."""

import threading

import numpy as np

from binbot.device.bundle import load_bundle
from binbot.device.capture import Capture
from binbot.device.config import RunConfig
from binbot.device.daemon import Daemon, log
from binbot.device.source import Frame, Source
from test_daemon import wait_for


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
    daemon = Daemon(RunConfig(bundle=str(small_cnn_bundles["int8"]), stale_after=0.3, http="off"))
    daemon.model = load_bundle(daemon.config.bundle)
    camera = HangingCamera(np.zeros((48, 64, 3), np.uint8))
    daemon.capture = Capture(camera, daemon.slot, daemon.metrics, log, (32, 32))
    daemon.capture.start()
    try:
        daemon._classify(wait_for("the one frame", lambda: daemon.slot.take(0.1)))
        assert daemon.health()[0]

        ok, health = wait_for("health to fail", lambda: (h := daemon.health()) and not h[0] and h)
        assert health["source"]["state"] == "stalled" and health["last_frame_age"] >= 0.3
    finally:
        camera.release.set()
        daemon.capture.stop(1.0)
