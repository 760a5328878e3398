"""The daemon's JSON-lines writer on a really full filesystem (a small tmpfs the test mounts)."""

import json
import os

from binbot.device.jsonlines import REOPEN_EVERY, JsonLinesWriter
from binbot.device.metrics import Metrics
from helpers import fill, log_lines

LOG_EVERY = 60.0  # binbot.logs.Every's interval


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def value(metrics, name, output):
    return metrics.registry.get_sample_value(name, {"output": output})


def test_a_full_disk_drops_and_counts_lines_keeps_every_line_before_and_resumes_when_there_is_room(small_disk, caplog):
    logged, metrics, clock = log_lines(caplog), Metrics(), Clock()
    path = small_disk / "events.jsonl"
    writer = JsonLinesWriter("events", str(path), metrics, clock)
    before = [{"n": n, "pad": "x" * 200} for n in range(20)]
    assert all(writer.write(record) for record in before)
    written_before = path.read_bytes()

    fill(small_disk)
    during = [writer.write({"n": n, "pad": "y" * 5000}) for n in range(50)]  # more than a page: part would fit

    assert not any(during)
    assert path.read_bytes() == written_before  # nothing lost, and no half line from the writes that did not fit
    assert value(metrics, "binbot_output_write_failures_total", "events") == 50
    assert value(metrics, "binbot_output_failing", "events") == 1
    assert writer.health() == {"to": str(path), "ok": False, "error": f"cannot write to {path} (No space left on device)",
                               "dropped": 50}
    assert len(logged()) == 1 and "events: cannot write to" in logged()[0] and "classifying goes on" in logged()[0]
    clock.now += LOG_EVERY
    assert not writer.write({"n": "still full", "pad": "z" * 5000})
    assert len(logged()) == 2 and "50 line(s) dropped so far" in logged()[1]

    os.remove(small_disk / "filler")
    assert writer.write({"n": "after"})

    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [*before, {"n": "after"}]
    assert writer.health()["ok"] and value(metrics, "binbot_output_failing", "events") == 0
    assert logged()[-1] == f"events: writing to {path} again, after 51 dropped line(s)"
    assert value(metrics, "binbot_output_lines_total", "events") == 21
    writer.close()


def test_a_file_that_cannot_be_opened_is_tried_again_and_written_once_it_can(tmp_path, caplog):
    logged, metrics, clock = log_lines(caplog), Metrics(), Clock()
    folder = tmp_path / "not-yet"
    writer = JsonLinesWriter("results", str(folder / "results.jsonl"), metrics, clock)

    assert not writer.write({"n": 1})
    assert "results: cannot write to" in logged()[0] and "No such file or directory" in logged()[0]
    folder.mkdir()
    assert not writer.write({"n": 2})  # not tried again before REOPEN_EVERY
    clock.now += REOPEN_EVERY

    assert writer.write({"n": 3})
    assert (folder / "results.jsonl").read_text() == '{"n": 3}\n'
    assert writer.health() == {"to": str(folder / "results.jsonl"), "ok": True, "error": "", "dropped": 2}
    writer.close()
