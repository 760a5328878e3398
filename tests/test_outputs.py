"""The outputs seam: the loop hands records over and never waits; a slow or broken output costs only itself;
the registry names every output; on shutdown they close side by side within one budget."""

import dataclasses
import json
import os
import select
import threading
import time

import numpy as np

from binbot.device import registry
from binbot.device.jsonlines import QUEUE, JsonLinesOutput
from binbot.device.metrics import Metrics
from binbot.device.outputs import FrameRecord, Handoff, Output, OutputKind, Outputs
from helpers import TIMEOUT, log_lines, wait_for


def sample(metrics, name, output):
    return metrics.registry.get_sample_value(name, {"output": output})


def record(n, rgb=None):
    return FrameRecord(time="2026-12-03T12:00:00.000+00:00", frame=n, origin="", model="m", label="can",
                       confidence=0.7, top=[{"label": "can", "p": 0.7}], item=None,
                       scores={"bottle": 0.2, "can": 0.7, "paper": 0.1}, rgb=rgb)


def test_a_handoff_never_blocks_keeps_the_newest_and_counts_what_it_drops():
    metrics, done, release = Metrics(), [], threading.Event()

    def slow(item):
        release.wait()
        done.append(item)

    handoff = Handoff("slow", slow, 3, metrics)
    handoff.put(0)
    wait_for("the worker to take the first item", lambda: not handoff._items)
    for item in range(1, 10):  # the worker is stuck on item 0
        handoff.put(item)

    assert sample(metrics, "binbot_output_dropped_total", "slow") == 6
    release.set()
    handoff.close(time.monotonic() + TIMEOUT)
    assert done == [0, 7, 8, 9]


class Broken(Output):
    name = "broken"

    def frame(self, record):
        raise RuntimeError("servo unplugged")


class Recorder(Output):
    name = "recorder"
    wants_frames = True

    def __init__(self):
        self.frames = []

    def frame(self, record):
        self.frames.append(record)


def test_an_output_that_raises_is_counted_and_the_others_still_get_every_frame(caplog):
    lines = log_lines(caplog)
    metrics, recorder = Metrics(), Recorder()
    outputs = Outputs([Broken(), recorder], metrics)
    rgb = np.zeros((2, 2, 3), np.uint8)

    for n in range(3):
        outputs.frame(record(n, rgb))

    assert [r.frame for r in recorder.frames] == [0, 1, 2] and recorder.frames[0].rgb is rgb
    assert sample(metrics, "binbot_output_errors_total", "broken") == 3
    assert lines().count("broken: frame failed (RuntimeError: servo unplugged); going on") == 1  # once a minute


def test_a_pipe_nobody_reads_never_holds_up_the_loop(tmp_path):
    """Events to a FIFO whose reader stopped reading: the writer thread blocks, the loop does not."""
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read: the pipe fills up
    metrics = Metrics()
    output = JsonLinesOutput("events", str(fifo), metrics)
    event = {"label": "can", "pad": "x" * 200}

    sent = threading.Thread(target=lambda: [output.event(event) for _ in range(QUEUE * 3)])
    sent.start()
    sent.join(TIMEOUT)

    assert not sent.is_alive()
    assert sample(metrics, "binbot_output_dropped_total", "events") > 0
    assert select.select([reader], [], [], TIMEOUT)[0], "the writer thread wrote nothing"
    first = os.read(reader, 1 << 20).split(b"\n")[0]
    assert json.loads(first) == event
    closing = threading.Thread(target=output.close, args=(time.monotonic() + 1.0,))  # gives up on the blocked write
    closing.start()
    closing.join(TIMEOUT)
    assert not closing.is_alive()
    os.close(reader)


class Plain(Recorder):
    name = "plain"
    wants_frames = False


def test_every_output_gets_one_record_with_every_classs_score_and_the_frame_only_if_it_asked():
    metrics, plain, recorder = Metrics(), Plain(), Recorder()
    rgb = np.zeros((2, 2, 3), np.uint8)

    Outputs([plain, recorder], metrics).frame(record(0, rgb))

    assert recorder.frames[0].rgb is rgb and plain.frames[0].rgb is None
    assert plain.frames[0].scores == recorder.frames[0].scores == {"bottle": 0.2, "can": 0.7, "paper": 0.1}
    assert plain.frames[0].result == {"time": "2026-12-03T12:00:00.000+00:00", "frame": 0, "origin": "", "model": "m",
                                      "label": "can", "confidence": 0.7, "top": [{"label": "can", "p": 0.7}],
                                      "item": None}


class Slow(Output):
    """An output whose close takes its time: until the deadline it is given, or for ever if it ignores it."""

    def __init__(self, name, seconds):
        self.name, self.seconds, self.closed_at = name, seconds, None

    def close(self, until):
        time.sleep(self.seconds)
        self.closed_at = time.monotonic()


def test_outputs_close_side_by_side_within_one_budget_and_the_late_are_named(caplog):
    lines = log_lines(caplog)
    outputs = [Slow("servo", 0.6), Slow("broker", 0.6), Slow("stuck", 60.0)]
    started = time.monotonic()

    late = Outputs(outputs, Metrics()).close(budget=1.5)

    assert late == ["stuck"]
    assert all(output.closed_at is not None for output in outputs[:2])
    assert max(output.closed_at for output in outputs[:2]) - started < 1.2  # side by side, not 0.6 + 0.6 in turn
    assert "shutdown: stuck did not finish closing within 1.5 s" in lines()


def test_the_registry_names_every_output_module_with_its_settings_and_builder():
    assert registry.names() == ["events", "results", "view", "gpio", "mqtt", "keep"]
    for name in registry.names():
        kind = registry.kind(name)
        assert isinstance(kind, OutputKind) and dataclasses.is_dataclass(kind.settings), name
    assert [name for name in registry.names() if registry.always_on(name)] == ["events", "view"]
