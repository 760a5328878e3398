"""The keep output: which field frames are kept and why, how they are written, the limits and quota that
bound them, a disk that fills up; on its own writing to a real folder, and inside a real `binbot run`."""

import errno
import json
import os
import random
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from binbot.device import kept_store as kept_store_module
from binbot.device.keep import DEFAULT_DIR, KeepOutput, KeepSettings, read_settings
from binbot.device.kept import id_time, jpeg_matches, kept_ids, new_id, read_sidecar
from binbot.device.kept_store import KeptStore
from binbot.device.metrics import Metrics
from binbot.device.outputs import FrameRecord
from binbot.errors import BinbotError
from helpers import TIMEOUT, close, fill, log_lines, wait_for

CLASSES = ["bottle", "can", "paper"]
START = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
HEIGHT, WIDTH = 120, 160  # the camera's frame; the model's input is smaller
# Only what a test names is kept: the defaults would also sample 1% of frames and keep events.
QUIET = {"sample": 0.0, "events": False, "disagreement": False, "band_high": 0.0}


class Camera:
    """Feeds a KeepOutput classified frames, a second apart by default, as the daemon's loop would."""

    def __init__(self, output: KeepOutput):
        self.output, self.n, self.when = output, 0, START
        self.rng = np.random.default_rng(0)

    def show(self, label, confidence, item=None, seconds=1.0, rgb=None):
        """One frame whose own label is label (at confidence) with item in view; its origin is "frame N"."""
        others = [name for name in CLASSES if name != label]
        scores = {label: confidence, **{name: (1 - confidence) / len(others) for name in others}}
        if rgb is None:
            rgb = self.rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        record = FrameRecord(time=self.when.isoformat(timespec="milliseconds"), frame=self.n, origin=f"frame {self.n}",
                             model="model-1", label=label, confidence=confidence,
                             top=[{"label": name, "p": p} for name, p in sorted(scores.items(), key=lambda s: -s[1])],
                             item=item, scores=scores, rgb=rgb)
        # The loop never waits on an output; the test waits for room, so that no frame is dropped.
        wait_for("room in the keeper's handoff", lambda: not self.output._handoff._items, interval=0.001)
        self.output.frame(record)
        self.n += 1
        self.when += timedelta(seconds=seconds)
        return record.result

    def event(self, label):
        """The item event the smoother made on the last frame shown."""
        self.output.event({"time": self.when.isoformat(), "label": label, "confidence": 0.9, "top": [],
                           "frame": self.n - 1, "origin": f"frame {self.n - 1}", "model": "model-1"})


def keeper(folder, metrics=None, rng=None, threshold=0.6, store=None, **table):
    """A keep output for folder; store: the KeptStore options (now, clock, retry) to build its store with."""
    settings = read_settings({"dir": str(folder), **table}, "binbot.toml", threshold)
    metrics = metrics or Metrics()
    return KeepOutput(settings, metrics, rng=rng, store=KeptStore(settings, metrics, **(store or {})))


def kept(folder):
    """{origin: reasons} of the complete kept frames in folder."""
    return {read_sidecar(folder / f"{frame_id}.json").origin: read_sidecar(folder / f"{frame_id}.json").reasons
            for frame_id in kept_ids(folder)}


def metric(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_in_a_window_only_the_least_confident_frame_in_the_band_is_kept(tmp_path):
    output = keeper(tmp_path, **{**QUIET, "band_low": 0.2, "band_high": 0.6})
    camera = Camera(output)

    for confidence in (0.9, 0.5, 0.3, 0.15, 0.55, 0.95):  # 0.15 is below the band
        camera.show("can", confidence)
    for confidence in (0.6, 0.7):  # a new window (the item changed), with nothing in the band: 0.6 is its open end
        camera.show("can", confidence, item="can")
    close(output)

    assert kept(tmp_path) == {"frame 2": ["low-confidence"]}


def test_a_window_ends_when_the_item_in_view_changes_or_the_interval_passes(tmp_path):
    output = keeper(tmp_path, **{**QUIET, "band_high": 0.6, "interval": 10.0})
    camera = Camera(output)

    camera.show("can", 0.5)
    camera.show("can", 0.4)  # frame 1: the least sure while nothing is in view
    camera.show("can", 0.45, item="can")  # the item changed: a new window
    camera.show("can", 0.3, item="can", seconds=10)  # frame 3, and ten seconds pass
    camera.show("can", 0.35, item="can")
    camera.show("can", 0.5, item="can")  # frame 5: the only low one of the third window, kept at close
    close(output)

    assert kept(tmp_path) == {"frame 1": ["low-confidence"], "frame 3": ["low-confidence"],
                              "frame 4": ["low-confidence"]}


def test_disagreement_keeps_the_least_confident_frame_whose_label_is_not_the_item_and_one_frame_for_two_reasons(
        tmp_path):
    output = keeper(tmp_path, **{**QUIET, "disagreement": True, "band_high": 0.5})
    camera = Camera(output)

    camera.show("can", 0.9, item="can")
    camera.show("bottle", 0.7, item="can")
    camera.show("paper", 0.65, item="can")  # frame 2: disagrees, least sure
    camera.show("bottle", 0.8, item="can")
    camera.show("bottle", 0.45)  # nothing in view: no disagreement, a new window
    camera.show("bottle", 0.4, item="bottle")  # a new window: least sure, but agrees
    camera.show("paper", 0.35, item="bottle")  # frame 6: disagrees and is the least sure: one frame, two reasons
    close(output)

    assert kept(tmp_path) == {"frame 2": ["disagreement"], "frame 4": ["low-confidence"],
                              "frame 6": ["low-confidence", "disagreement"]}


def test_each_item_event_keeps_the_items_best_frame_once_when_it_leaves_and_at_shutdown(tmp_path):
    output = keeper(tmp_path, **{**QUIET, "events": True})
    camera = Camera(output)

    camera.show("can", 0.7, item="can")
    camera.event("can")
    camera.show("can", 0.95, item="can")  # frame 1: the can at its clearest
    camera.show("bottle", 0.5, item="can")  # the item's score is what counts, not the frame's own label
    camera.show("can", 0.8, item="can")
    camera.show("paper", 0.9)  # the can has left
    camera.show("paper", 0.9)
    camera.show("paper", 0.92, item="paper")
    camera.event("paper")
    camera.show("paper", 0.91, item="paper")
    close(output)  # the paper is still in view: its best frame so far is kept on the way out

    assert kept(tmp_path) == {"frame 1": ["event"], "frame 6": ["event"]}


def test_a_random_sample_of_all_frames_is_kept_at_once(tmp_path):
    metrics = Metrics()
    output = keeper(tmp_path, metrics, rng=random.Random(42), **{**QUIET, "sample": 0.25})
    camera = Camera(output)

    for _ in range(40):
        camera.show("can", 0.99, item="can")
    close(output)

    same = random.Random(42)
    expected = {f"frame {n}": ["sample"] for n in range(40) if same.random() < 0.25}
    assert 3 <= len(expected) <= 20  # a sample: some frames, not all
    assert kept(tmp_path) == expected
    assert metric(metrics, "binbot_kept_frames_total", reason="sample") == len(expected)


def test_a_kept_frame_is_the_cameras_frame_as_a_jpeg_with_a_sidecar_binbot_collect_can_check(tmp_path):
    output = keeper(tmp_path / "kept", **{**QUIET, "band_high": 0.6})
    camera = Camera(output)
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[:, : WIDTH // 2] = (230, 30, 20)  # red on the left, blue on the right: the colour order shows

    rgb[:, WIDTH // 2:] = (20, 40, 220)
    result = camera.show("bottle", 0.42, item="can", rgb=rgb)
    close(output)

    (frame_id,) = kept_ids(tmp_path / "kept")
    frame = read_sidecar(tmp_path / "kept" / f"{frame_id}.json")
    jpeg = tmp_path / "kept" / f"{frame_id}.jpg"
    assert jpeg_matches(frame, jpeg)
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    decoded = cv2.cvtColor(cv2.imread(str(jpeg)), cv2.COLOR_BGR2RGB)
    assert decoded.shape == (HEIGHT, WIDTH, 3) and np.abs(decoded.astype(int) - rgb).mean() < 3
    assert (frame.time, frame.model, frame.label, frame.confidence, frame.item, frame.origin) == (
        result["time"], "model-1", "bottle", 0.42, "can", "frame 0")
    assert frame.scores == {"bottle": 0.42, "can": 0.29, "paper": 0.29} and frame.classes == CLASSES
    assert frame.reasons == ["low-confidence"]
    assert abs(id_time(frame_id) - datetime.now(timezone.utc)) < timedelta(minutes=1)  # the time it was kept
    assert sorted(path.name for path in (tmp_path / "kept").iterdir()) == [f"{frame_id}.jpg", f"{frame_id}.json"]
    assert (tmp_path / "kept").stat().st_mode & 0o777 == 0o700
    assert {path.stat().st_mode & 0o777 for path in (tmp_path / "kept").iterdir()} == {0o600}  # private, as the folder


class Clock:
    def __init__(self, when):
        self.when = when

    def __call__(self):
        return self.when


def sampled(folder, metrics, now, **table):
    """An output that keeps every frame it is shown, at the time now() says."""
    return keeper(folder, metrics, store={"now": now}, **{**QUIET, "sample": 1.0, **table})


@pytest.mark.parametrize("table, kept_now, limit", [({"per_hour": 3, "per_day": 10}, 1, "hour"),
                                                    ({"per_hour": 100, "per_day": 4}, 1, "day"),
                                                    ({"per_hour": 100, "per_day": 100}, 5, None)])
def test_the_limits_count_frames_already_kept_so_a_restart_cannot_bypass_them(tmp_path, caplog, table, kept_now, limit):
    now = datetime.now(timezone.utc)
    for age in (timedelta(hours=25), timedelta(hours=2), timedelta(minutes=30), timedelta(minutes=20)):
        earlier = sampled(tmp_path, Metrics(), Clock(now - age), per_hour=100, per_day=100)
        Camera(earlier).show("can", 0.9)
        close(earlier)
    metrics, logged = Metrics(), log_lines(caplog)

    output = sampled(tmp_path, metrics, Clock(now), **table)  # restarted
    camera = Camera(output)
    for _ in range(5):
        camera.show("can", 0.9)
    close(output)

    assert len(kept_ids(tmp_path)) == 4 + kept_now
    skipped = {name: metric(metrics, "binbot_kept_skipped_total", limit=name) for name in ("hour", "day", "failing")}
    assert skipped == {name: (5 - kept_now if name == limit else 0) for name in skipped}
    assert metric(metrics, "binbot_kept_frames_total", reason="sample") == kept_now
    assert len([line for line in logged() if "skipped and counted" in line]) == (1 if limit else 0)


def test_the_hourly_limit_rolls_on(tmp_path):
    clock, metrics = Clock(datetime.now(timezone.utc)), Metrics()
    output = sampled(tmp_path, metrics, clock, per_hour=2)

    for _ in range(3):
        output.store.keep(a_record(), ["sample"])
    clock.when += timedelta(minutes=61)
    kept_later = output.store.keep(a_record(), ["sample"])
    close(output)

    assert kept_later and len(kept_ids(tmp_path)) == 3
    assert metric(metrics, "binbot_kept_skipped_total", limit="hour") == 1


def a_record(rgb=None):
    """A frame's record, with its frame (plain grey unless rgb is given)."""
    rgb = np.full((HEIGHT, WIDTH, 3), 128, np.uint8) if rgb is None else rgb
    return FrameRecord(time=START.isoformat(), frame=0, origin="", model="model-1", label="can", confidence=0.5,
                       top=[], item=None, scores={"bottle": 0.25, "can": 0.5, "paper": 0.25}, rgb=rgb)


def test_beyond_the_quota_the_oldest_frames_are_evicted_sidecar_first(tmp_path):
    metrics, clock = Metrics(), Clock(datetime.now(timezone.utc))
    first = sampled(tmp_path, Metrics(), clock)
    first.store.keep(a_record(), ["sample"])
    close(first)
    one = sum(path.stat().st_size for path in tmp_path.iterdir())  # every frame here is as big as this one

    output = sampled(tmp_path, metrics, clock, quota_mb=3.5 * one / 1e6)
    ids = kept_ids(tmp_path)
    for _ in range(5):
        clock.when += timedelta(seconds=1)  # ids a second apart: their order is their age
        output.store.keep(a_record(), ["sample"])
        ids = sorted(set(ids) | set(kept_ids(tmp_path)))
    close(output)

    assert len(ids) == 6
    assert kept_ids(tmp_path) == ids[-3:]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{frame_id}{suffix}" for frame_id in ids[-3:] for suffix in (".jpg", ".json"))
    assert metric(metrics, "binbot_kept_evicted_total") == 3
    assert metric(metrics, "binbot_kept_bytes") == output.health()["bytes"] == 3 * one <= 3.5 * one


def test_what_a_crash_left_is_removed_at_start_and_complete_frames_stay(tmp_path):
    first = sampled(tmp_path, Metrics(), Clock(datetime.now(timezone.utc)))
    first.store.keep(a_record(), ["sample"])
    close(first)
    (complete,) = kept_ids(tmp_path)
    orphan = tmp_path / f"{new_id()}.jpg"  # its sidecar was never written
    orphan.write_bytes(b"\xff\xd8 half a JPEG")
    partial = tmp_path / f".{new_id()}.jpg.k3j4h5.partial"
    partial.write_bytes(b"\xff\xd8 a JPEG being written")
    (tmp_path / "notes.txt").write_text("not ours")

    output = sampled(tmp_path, Metrics(), Clock(datetime.now(timezone.utc)))
    close(output)

    assert not orphan.exists() and not partial.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{complete}.jpg", f"{complete}.json", "notes.txt"]
    assert output.health() == {"dir": str(tmp_path), "kept": 1, "bytes": output.store.size, "failing": False,
                               "error": ""}


class Monotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_full_disk_stops_keeping_counts_it_and_keeping_resumes_when_there_is_room(small_disk, caplog):
    metrics, logged = Metrics(), log_lines(caplog)
    output = keeper(small_disk / "kept", metrics, **{**QUIET, "sample": 1.0, "min_free_percent": 0.0})
    noise = np.random.default_rng(1).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # a big JPEG
    assert output.store.keep(a_record(), ["sample"])
    before = {path.name: path.read_bytes() for path in (small_disk / "kept").iterdir()}

    fill(small_disk)  # by something else: evicting the small frame kept would not make room for a big one
    skipped = [output.store.keep(a_record(noise), ["sample"]) for _ in range(2)]

    assert skipped == [False, False]
    assert {path.name: path.read_bytes() for path in (small_disk / "kept").iterdir()} == before  # no part, no temp
    assert metric(metrics, "binbot_kept_skipped_total", limit="disk") == 2
    assert metric(metrics, "binbot_kept_write_failures_total") == 0
    assert len([line for line in logged() if "skipped and counted until there is room" in line]) == 1

    os.remove(small_disk / "filler")
    assert output.store.keep(a_record(noise), ["sample"])
    assert len(kept_ids(small_disk / "kept")) == 2
    assert "keeping frames again" in logged()[-1]
    close(output)


def test_a_write_that_fails_pauses_keeping_counts_it_and_keeping_resumes(tmp_path, monkeypatch, caplog):
    metrics, logged, clock = Metrics(), log_lines(caplog), Monotonic()
    folder = tmp_path / "kept"
    output = keeper(folder, metrics, store={"clock": clock, "retry": 5.0}, **{**QUIET, "sample": 1.0})
    assert output.store.keep(a_record(), ["sample"])
    before = {path.name: path.read_bytes() for path in folder.iterdir()}

    def failing_write(*args, **kwargs):  # an SD card that has begun to fail
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(kept_store_module, "write_atomic", failing_write)
        failed = output.store.keep(a_record(), ["sample"])
        paused = output.store.keep(a_record(), ["sample"])  # within the pause: not even tried
        clock.now += 5.0
        failed_again = output.store.keep(a_record(), ["sample"])

    assert not failed and not paused and not failed_again
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert metric(metrics, "binbot_kept_write_failures_total") == 2
    assert metric(metrics, "binbot_kept_skipped_total", limit="failing") == 1
    assert metric(metrics, "binbot_kept_failing") == 1
    health = output.health()
    assert health["failing"] and health["error"] == f"cannot write to {folder} (Input/output error)"
    assert len([line for line in logged() if "cannot write" in line]) == 1  # once a minute, not once a frame
    assert "classifying goes on" in logged()[-1]

    clock.now += 5.0
    assert output.store.keep(a_record(), ["sample"])
    assert metric(metrics, "binbot_kept_failing") == 0 and not output.health()["failing"]
    assert "keeping frames again" in logged()[-1]
    close(output)


def test_a_quota_beyond_the_free_disk_leaves_min_free_percent_for_the_events_beside_it(small_disk):
    """The quota allows 500 MB on a 64 KiB disk: keeping evicts its own oldest frames to leave the margin."""
    metrics = Metrics()
    output = keeper(small_disk / "kept", metrics, **{**QUIET, "sample": 1.0, "min_free_percent": 37.5})
    noise = np.random.default_rng(1).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # JPEGs of ~15 KB
    free = lambda: os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize

    for n in range(8):
        assert output.store.keep(a_record(noise), ["sample"])
        assert free() >= 24 * 1024, f"frame {n} took the margin"
    with open(small_disk / "events.jsonl", "wb") as events:  # the events file beside it still has room
        events.write(b"x" * 20_000)

    assert metric(metrics, "binbot_kept_evicted_total") >= 4 and len(kept_ids(small_disk / "kept")) >= 1
    assert metric(metrics, "binbot_kept_write_failures_total") == 0
    close(output)


def test_a_disk_filled_by_others_below_the_margin_skips_frames_and_says_so(small_disk, caplog):
    metrics, logged = Metrics(), log_lines(caplog)
    output = keeper(small_disk / "kept", metrics, **{**QUIET, "sample": 1.0, "min_free_percent": 37.5})
    with open(small_disk / "other", "wb") as other:
        other.write(b"x" * 48_000)

    assert not output.store.keep(a_record(), ["sample"])
    assert not output.store.keep(a_record(), ["sample"])

    assert metric(metrics, "binbot_kept_skipped_total", limit="disk") == 2
    assert metric(metrics, "binbot_kept_write_failures_total") == 0 and kept_ids(small_disk / "kept") == []
    assert len([line for line in logged() if "(37.5%, min_free_percent) for the journal and the events" in line]) == 1
    close(output)


@pytest.mark.parametrize("table, named", [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"sample": "often"}, "sample should be a number, not 'often'"),
    ({"per_hour": 2.5}, "per_hour should be a whole number, not 2.5"),
    ({"events": 1}, "events should be true or false, not 1"),
    ({"sample": 1.5}, "sample = 1.5: must be between 0 and 1"),
    ({"per_day": 0}, "per_day = 0: must be between 1"),
    ({"jpeg_quality": 101}, "jpeg_quality = 101: must be between 1 and 100"),
    ({"quota_mb": float("nan")}, "quota_mb = nan: must be a finite number"),
    ({"band_low": 0.7}, "band_low = 0.7 is above band_high = 0.6 (band_high defaults to the threshold"),
    ({"dir": ""}, "dir = '': should be a folder's path"),
])
def test_a_bad_keep_table_is_one_line_naming_the_file_the_table_and_the_key(table, named):
    with pytest.raises(BinbotError) as error:
        read_settings(table, "/etc/binbot/binbot.toml", 0.6)

    message = str(error.value)
    assert "\n" not in message and message.startswith("/etc/binbot/binbot.toml: [keep] ") and named in message


def test_the_defaults_keep_in_the_services_state_folder_below_the_threshold():
    settings = read_settings({}, "binbot.toml", 0.75)

    assert settings == KeepSettings(band_high=0.75) and settings.dir == DEFAULT_DIR
    assert Path(DEFAULT_DIR).is_relative_to("/var/lib/binbot")


# ---- inside `binbot run` ----

def run_config(tmp_path, bundle, images, keep: str) -> Path:
    config = tmp_path / "binbot.toml"
    config.write_text(f'bundle = "{bundle}"\nsource = "replay:{images}"\nfps = 20.0\nwindow = 1\nthreshold = 0.0\n'
                      f'threads = 1\n\n[keep]\n{keep}\n')
    return config


def test_binbot_run_keeps_frames_as_they_are_classified_and_counts_them_in_metrics(
        start_daemon, other_bundle, image_folder, tmp_path):
    folder = tmp_path / "kept"
    config = run_config(tmp_path, other_bundle, image_folder,
                        "band_high = 1.0\ninterval = 0.5\nsample = 0.0\nper_hour = 10000\nper_day = 10000")
    bundle_id = json.loads((other_bundle / "bundle.json").read_text())["id"]

    daemon = start_daemon("--config", str(config), "--keep-dir", str(folder))  # the flag sets the [keep] dir
    wait_for("low-confidence and event frames kept", lambda: (
        daemon.metric("binbot_kept_frames_total", '{reason="low-confidence"}') >= 3
        and daemon.metric("binbot_kept_frames_total", '{reason="event"}') >= 1))
    counted = sum(daemon.metric("binbot_kept_frames_total", f'{{reason="{reason}"}}')
                  for reason in ("low-confidence", "disagreement", "sample", "event"))
    frames = [read_sidecar(folder / f"{frame_id}.json") for frame_id in kept_ids(folder)]
    status, health = daemon.health()
    _, latest = daemon.get("/latest")

    assert sum(len(frame.reasons) for frame in frames) >= counted  # counted once written
    assert all(jpeg_matches(frame, folder / f"{frame.id}.jpg") for frame in frames)
    assert {(frame.width, frame.height) for frame in frames} == {(160, 120)}  # the camera's, not the model's 40x40
    assert {frame.model for frame in frames} == {bundle_id}
    assert all(frame.classes == ["bottle", "can"] for frame in frames)
    assert {"low-confidence", "event"} <= {reason for frame in frames for reason in frame.reasons}
    assert all(Path(frame.origin).parent.parent == image_folder for frame in frames)
    keep = health["outputs"]["keep"]
    assert status == 200 and keep["dir"] == str(folder) and not keep["failing"] and keep["kept"] >= 3
    assert daemon.metric("binbot_kept_bytes") > 0
    assert "scores" not in json.loads(latest)  # every class's score goes to the sidecar only
    assert daemon.stop() == 0
    log = daemon.log.read_text()
    assert "Traceback" not in log and f"keep: keeping unsure frames in {folder}" in log
    assert not [path for path in folder.iterdir() if not re.fullmatch(r"[0-9TZ]+-[0-9a-f]{8}\.(jpg|json)", path.name)]


def test_a_full_keep_disk_skips_keeping_not_classifying_and_keeping_resumes(
        start_daemon, other_bundle, image_folder, tmp_path, small_disk):
    config = run_config(tmp_path, other_bundle, image_folder,
                        f'dir = "{small_disk}"\nsample = 1.0\nevents = false\nband_high = 0.0\ndisagreement = false\n'
                        "per_hour = 100000\nper_day = 100000\nquota_mb = 0.02\njpeg_quality = 50\nmin_free_percent = 0.0")
    daemon = start_daemon("--config", str(config))
    wait_for("frames kept", lambda: daemon.metric("binbot_kept_frames_total", '{reason="sample"}') >= 3)

    fill(small_disk)
    fill(small_disk, "filler2")  # and the room a write that was under way may have made by evicting
    wait_for("frames skipped for want of room",
             lambda: daemon.metric("binbot_kept_skipped_total", '{limit="disk"}') > 0)
    kept_while_full = daemon.metric("binbot_kept_frames_total", '{reason="sample"}')

    assert daemon.classifying()
    status, health = daemon.health()
    assert status == 200 and health["ok"]
    assert not [path for path in small_disk.iterdir() if path.name.endswith(".partial")]

    os.remove(small_disk / "filler")
    os.remove(small_disk / "filler2")
    wait_for("keeping to resume", lambda: daemon.metric("binbot_kept_frames_total", '{reason="sample"}') > kept_while_full)
    assert daemon.stop() == 0
    log = daemon.log.read_text()
    assert "Traceback" not in log and "skipped and counted until there is room" in log
    assert "keep: keeping frames again" in log
    for frame_id in kept_ids(small_disk):
        assert jpeg_matches(read_sidecar(small_disk / f"{frame_id}.json"), small_disk / f"{frame_id}.jpg")


def test_a_bad_keep_table_stops_binbot_run_with_one_line(other_bundle, image_folder, tmp_path):
    config = run_config(tmp_path, other_bundle, image_folder, "per_hour = -1")

    run = subprocess.run([sys.executable, "-m", "binbot", "run", "--http", "off", "--config", str(config)],
                         capture_output=True, text=True, timeout=TIMEOUT)

    assert run.returncode == 1
    error = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(error) == 1 and f"{config}: [keep] per_hour = -1: must be between 1" in error[0], run.stderr


def test_a_keep_dir_that_cannot_be_a_folder_is_reported_and_counted_and_the_output_goes_on(tmp_path, caplog):
    (tmp_path / "kept").write_text("a file where the folder should be")
    metrics, logged = Metrics(), log_lines(caplog)

    output = keeper(tmp_path / "kept", metrics, store={"retry": 0.0}, **{**QUIET, "sample": 1.0})
    kept_one = output.store.keep(a_record(), ["sample"])
    close(output)

    assert not kept_one
    assert metric(metrics, "binbot_kept_write_failures_total") == 2  # at start, and when it tried to keep
    assert output.health()["failing"] and output.health()["error"].endswith("(it exists and is not a folder)")
    assert any(f"keep: cannot write to {tmp_path / 'kept'}" in line for line in logged())
