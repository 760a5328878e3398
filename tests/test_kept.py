"""A kept frame's on-disk contract (device/kept.py): ids that sort by age and never collide, and the one
reader of sidecars that the daemon, `binbot collect` and `binbot label` share, refusing what is not one."""

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from binbot.device.kept import (KeptFrame, id_time, is_id, jpeg_matches, kept_ids, new_id, read_sidecar,
                                sidecar)
from binbot.errors import BinbotError

WHEN = datetime(2026, 11, 30, 14, 42, 23, 123456, tzinfo=timezone.utc)


def test_an_id_is_the_utc_millisecond_it_was_made_and_eight_random_hex_digits():
    local = WHEN.astimezone(timezone(timedelta(hours=2)))  # the same moment, told in another zone

    frame_id = new_id(local)

    assert frame_id.startswith("20261130T144223123Z-") and is_id(frame_id)
    assert id_time(frame_id) == WHEN.replace(microsecond=123000)
    assert new_id(WHEN) != new_id(WHEN)  # two Pis keeping a frame in the same millisecond
    assert abs(id_time(new_id()) - datetime.now(timezone.utc)) < timedelta(seconds=5)


def test_ids_sort_by_age():
    start = WHEN.replace(microsecond=123000)  # an id holds milliseconds
    times = [start + timedelta(milliseconds=ms) for ms in (0, 1, 999, 1000, 86_400_000, 86_400_000 * 400)]

    ids = [new_id(when) for when in reversed(times)]

    assert [id_time(frame_id) for frame_id in sorted(ids)] == times


@pytest.mark.parametrize("text", ["20261130T144223123Z-3fa2b1c", "20261130T144223123Z-3FA2B1C9", "../etc/passwd",
                                  "20261130T144223123Z-3fa2b1c9.json", "20261130T14422312Z-3fa2b1c9", ""])
def test_anything_but_exactly_an_id_is_refused_as_one(text):
    assert not is_id(text)


def write_frame(folder, frame_id=None, image=b"\xff\xd8 a JPEG \xff\xd9", **changes):
    """A complete kept frame in folder: its JPEG, then its sidecar (with changes to the sidecar's JSON)."""
    frame_id = frame_id or new_id(WHEN)
    (folder / f"{frame_id}.jpg").write_bytes(image)
    frame = KeptFrame(id=frame_id, time=WHEN.isoformat(), model="f1ad458049f4", label="can", confidence=0.55,
                      scores={"bottle": 0.3, "can": 0.55, "paper": 0.15}, item="bottle", reasons=["disagreement"],
                      width=640, height=480, jpeg_sha256=hashlib.sha256(image).hexdigest(), jpeg_size=len(image),
                      origin="")
    data = {**sidecar(frame), **changes}
    (folder / f"{frame_id}.json").write_text(json.dumps(data))
    return folder / f"{frame_id}.json"


def test_a_sidecar_reads_back_as_written_and_its_jpeg_is_checked(tmp_path):
    path = write_frame(tmp_path)

    frame = read_sidecar(path)

    assert (frame.id, frame.label, frame.item, frame.reasons, frame.width, frame.height) == (
        path.stem, "can", "bottle", ["disagreement"], 640, 480)
    assert frame.classes == ["bottle", "can", "paper"] and frame.top(2) == [("can", 0.55), ("bottle", 0.3)]
    assert jpeg_matches(frame, path.with_suffix(".jpg"))
    path.with_suffix(".jpg").write_bytes(b"\xff\xd8 another JPEG\xff\xd9")  # same name, other bytes
    assert not jpeg_matches(frame, path.with_suffix(".jpg"))
    path.with_suffix(".jpg").unlink()
    assert not jpeg_matches(frame, path.with_suffix(".jpg"))


@pytest.mark.parametrize("changes, problem", [
    ({"id": "20261130T144223123Z-00000000"}, "does not match the file name"),
    ({"scores": {"bottle": 0.3, "can": 1.5}}, "scores should map each class name to a probability"),
    ({"scores": {}}, "scores should map each class name to a probability"),
    ({"scores": {"bottle": 0.3, "can": "0.55"}}, "scores should map each class name to a probability"),
    ({"label": "glass"}, "label 'glass' is not one of the scored classes"),
    ({"item": "glass"}, "item 'glass' is not one of the scored classes"),
    ({"jpeg": {"size": 12}}, "jpeg should give the image's sha256"),
    ({"jpeg": {"sha256": "abc", "size": 12}}, "jpeg should give the image's sha256"),
    ({"reasons": ["curious"]}, "reasons should be a non-empty list"),
    ({"reasons": []}, "reasons should be a non-empty list"),
    ({"format": 2}, "format 2 is not one this binbot reads"),
    ({"width": True}, "width should be a int"),
    ({"confidence": float("nan")}, "holds NaN, which is not JSON"),
    ({"confidence": -0.5}, "confidence should be a probability"),
])
def test_a_bad_sidecar_is_refused_with_one_line_naming_the_file_and_the_problem(tmp_path, changes, problem):
    path = write_frame(tmp_path, **changes)

    with pytest.raises(BinbotError) as error:
        read_sidecar(path)

    message = str(error.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"), ("[1, 2]", "should be a JSON object"), (b"\xff\xfe", "not UTF-8"),
    ("[" * 400_000, "nested more than"), ('{"format": ' + "1" * 5000 + "}", "a number of 5,000 characters"),
    (" " * (2 << 20), "too big")])
def test_a_sidecar_that_is_not_a_json_object_is_refused(tmp_path, content, problem):
    path = tmp_path / f"{new_id()}.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())

    with pytest.raises(BinbotError, match=problem) as error:
        read_sidecar(path)

    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["notes.json", "20261130T144223123Z-3fa2b1c9.jpg"])
def test_a_file_not_named_as_a_sidecar_is_refused_before_it_is_read(tmp_path, name):
    with pytest.raises(BinbotError, match="not a kept frame's sidecar"):
        read_sidecar(tmp_path / name)  # it does not even exist: the name alone is refused


def test_a_fifo_named_as_a_sidecar_is_refused_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / f"{new_id()}.json"
    os.mkfifo(path)

    with pytest.raises(BinbotError, match="not a regular file"):
        read_sidecar(path)


def test_a_missing_sidecar_is_one_line_naming_it(tmp_path):
    path = tmp_path / f"{new_id()}.json"
    with pytest.raises(BinbotError, match="cannot read"):
        read_sidecar(path)


def test_kept_ids_lists_only_complete_frames_oldest_first(tmp_path):
    newer = write_frame(tmp_path, new_id(WHEN + timedelta(seconds=1))).stem
    older = write_frame(tmp_path, new_id(WHEN)).stem
    (tmp_path / f"{new_id(WHEN)}.jpg").write_bytes(b"\xff\xd8")  # no sidecar yet: not complete
    (tmp_path / f".{new_id(WHEN)}.json.x1.partial").write_text("{}")
    (tmp_path / "README.json").write_text("{}")

    assert kept_ids(tmp_path) == [older, newer]
    assert kept_ids(tmp_path / "missing") == []
