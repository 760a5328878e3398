"""The daemon's loop in this process, fed by fake cameras: dropped frames, inference errors, and a
SIGTERM that arrives while the bundle is still loading."""

import os
import signal
import threading

import numpy as np

from binbot.device import daemon as daemon_module
from binbot.device.capture import Captured, LatestFrame
from binbot.device.config import RunConfig
from binbot.device.daemon import Daemon
from binbot.device.metrics import Metrics
from binbot.device.source import Frame, Source
from helpers import log_lines, run_daemon, wait_for


def test_a_stale_frame_is_dropped_and_counted_never_queued():
    metrics = Metrics()
    slot = LatestFrame(metrics)
    stop = threading.Event()
    for n in range(3):  # a live camera delivers three frames while the classifier is busy
        slot.put(Captured(n, Frame(np.zeros((2, 2, 3), np.uint8))), live=True, stop=stop)

    newest = slot.take(timeout=0)

    assert newest.id == 2 and slot.take(timeout=0) is None
    assert slot.dropped == 2 and metrics.registry.get_sample_value("binbot_frames_dropped_total") == 2


class OddCamera(Source):
    """Every third frame arrives as float64, as a misconfigured camera library may deliver it."""

    live = False  # every frame is classified, none dropped

    def __init__(self):
        self.reads = 0

    def open(self):
        pass

    def read(self):
        self.reads += 1
        pixels = np.full((32, 32, 3), self.reads % 256, np.uint8)
        return Frame(pixels.astype(np.float64) if self.reads % 3 == 0 else pixels, f"frame {self.reads}")

    def close(self):
        pass


def test_a_frame_the_model_cannot_take_is_counted_and_the_next_ones_are_classified(small_cnn_bundles, caplog):
    logged = log_lines(caplog)
    daemon = Daemon(RunConfig(bundle=str(small_cnn_bundles["int8"]), http="off"), OddCamera())  # outputs: /latest

    def check(daemon):
        wait_for("frames after several bad ones", lambda: daemon.metrics.registry.get_sample_value(
            "binbot_errors_total", {"kind": "inference"}) >= 3 and daemon.status.frames >= 6)
        assert daemon.health()[0]
        latest = daemon.latest.result
        assert int(latest["origin"].split()[1]) > 3 and latest["label"] in ("bottle", "can", "paper")  # after bad ones

    assert run_daemon(daemon, check) == 0
    assert any("not classified: " in line for line in logged())


def test_sigterm_while_the_bundle_loads_is_honoured(small_cnn_bundles, monkeypatch, caplog):
    logged = log_lines(caplog)
    real_load = daemon_module.load_bundle

    def slow_load(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # systemd stops the service while it starts
        return real_load(*args, **kwargs)

    monkeypatch.setattr(daemon_module, "load_bundle", slow_load)
    camera = OddCamera()
    daemon = Daemon(RunConfig(bundle=str(small_cnn_bundles["int8"]), http="off"), camera)
    handler_before = signal.getsignal(signal.SIGTERM)

    assert daemon.run() == 0

    assert camera.reads == 0 and daemon.status.frames == 0
    assert "SIGTERM: finishing and exiting" in logged()
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the daemon's handlers are put back
