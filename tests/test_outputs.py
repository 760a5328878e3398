"""The outputs seam: the loop hands results over and never waits; a slow or broken output costs only itself."""

import json
import os
import select
import threading

import numpy as np

from binbot.device.jsonlines import QUEUE, JsonLinesOutput
from binbot.device.metrics import Metrics
from binbot.device.outputs import Handoff, Output, Outputs
from helpers import TIMEOUT, wait_for


def sample(metrics, name, output):
    return metrics.registry.get_sample_value(name, {"output": output})


def test_a_handoff_never_blocks_keeps_the_newest_and_counts_what_it_drops():
    metrics, done, release = Metrics(), [], threading.Event()

    def slow(item):
        release.wait()
        done.append(item)

    handoff = Handoff("slow", slow, 3, metrics, print)
    handoff.put(0)
    wait_for("the worker to take the first item", lambda: not handoff._items)
    for item in range(1, 10):  # the worker is stuck on item 0
        handoff.put(item)

    assert sample(metrics, "binbot_output_dropped_total", "slow") == 6
    release.set()
    handoff.close(TIMEOUT)
    assert done == [0, 7, 8, 9]


class Broken(Output):
    name = "broken"

    def frame(self, result, rgb):
        raise RuntimeError("servo unplugged")


class Recorder(Output):
    name = "recorder"
    wants_frames = True

    def __init__(self):
        self.frames = []

    def frame(self, result, rgb):
        self.frames.append((result, rgb))


def test_an_output_that_raises_is_counted_and_the_others_still_get_every_frame(capsys):
    metrics, recorder = Metrics(), Recorder()
    outputs = Outputs([Broken(), recorder], metrics, lambda line: print(line))
    rgb = np.zeros((2, 2, 3), np.uint8)

    for n in range(3):
        outputs.frame({"frame": n}, rgb)

    assert [result["frame"] for result, _ in recorder.frames] == [0, 1, 2] and recorder.frames[0][1] is rgb
    assert sample(metrics, "binbot_output_errors_total", "broken") == 3
    assert capsys.readouterr().out.count("broken: frame failed (RuntimeError: servo unplugged)") == 1  # once a minute


def test_a_pipe_nobody_reads_never_holds_up_the_loop(tmp_path):
    """Events to a FIFO whose reader stopped reading: the writer thread blocks, the loop does not."""
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read: the pipe fills up
    metrics = Metrics()
    output = JsonLinesOutput("events", str(fifo), metrics, print)
    event = {"label": "can", "pad": "x" * 200}

    sent = threading.Thread(target=lambda: [output.event(event) for _ in range(QUEUE * 3)])
    sent.start()
    sent.join(TIMEOUT)

    assert not sent.is_alive()
    assert sample(metrics, "binbot_output_dropped_total", "events") > 0
    assert select.select([reader], [], [], TIMEOUT)[0], "the writer thread wrote nothing"
    first = os.read(reader, 1 << 20).split(b"\n")[0]
    assert json.loads(first) == event
    closing = threading.Thread(target=output.close)  # gives up on the blocked write after its deadline
    closing.start()
    closing.join(TIMEOUT)
    assert not closing.is_alive()
    os.close(reader)


class ScoreKeeper(Recorder):
    name = "scores"
    wants_scores = True

    def frame(self, result, rgb, scores=None):
        self.frames.append((result, rgb, scores))


def test_every_classs_score_goes_only_to_an_output_that_asks_for_them():
    metrics, plain, keeper = Metrics(), Recorder(), ScoreKeeper()
    rgb, scores = np.zeros((2, 2, 3), np.uint8), {"bottle": 0.2, "can": 0.7, "paper": 0.1}

    without = Outputs([plain], metrics, print)
    with_keeper = Outputs([plain, keeper], metrics, print)
    with_keeper.frame({"frame": 0}, rgb, scores)

    assert not without.wants_scores and with_keeper.wants_scores  # the daemon builds the scores only then
    assert plain.frames == [({"frame": 0}, rgb)]  # called as before, without scores
    assert keeper.frames == [({"frame": 0}, rgb, scores)]
    assert sample(metrics, "binbot_output_errors_total", "recorder") is None
