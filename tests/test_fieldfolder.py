"""The field folder's layout and its moves: what collect, label and the folder scan share."""

import pytest

from binbot.device.fieldfolder import (DISCARDED, UNLABELLED, FrameMissing, FrameTaken, class_folders, frames_here,
                                       move_pair, waiting)
from helpers import keep_frames, names


def test_frames_here_are_the_whole_pairs_of_unlabelled_the_classes_and_discarded(tmp_path):
    waiting_ids = keep_frames(tmp_path / UNLABELLED, 2)
    can = keep_frames(tmp_path / "can", 1)
    thrown = keep_frames(tmp_path / DISCARDED, 1)
    copying = keep_frames(tmp_path / ".collect-x1y2", 1)  # a copy under way is not in the field folder yet
    half = keep_frames(tmp_path / "paper", 1)
    (tmp_path / "paper" / f"{half[0]}.json").unlink()  # a JPEG without its sidecar is not a whole frame

    here = frames_here(tmp_path)

    assert here == {**{i: tmp_path / UNLABELLED for i in waiting_ids}, can[0]: tmp_path / "can",
                    thrown[0]: tmp_path / DISCARDED}
    assert copying[0] not in here
    assert class_folders(tmp_path) == ["can", "paper"]
    assert waiting(tmp_path) == sorted(waiting_ids)


def test_a_pair_moves_whole_into_a_folder_made_for_it(tmp_path):
    [frame] = keep_frames(tmp_path / UNLABELLED, 1)

    move_pair(frame, tmp_path / UNLABELLED, tmp_path / "can")

    assert names(tmp_path / "can") == [f"{frame}.jpg", f"{frame}.json"] and names(tmp_path / UNLABELLED) == []


def test_a_pair_is_not_moved_over_a_file_of_the_same_name_nor_without_its_sidecar(tmp_path):
    [frame] = keep_frames(tmp_path / UNLABELLED, 1)
    (tmp_path / "can").mkdir()
    (tmp_path / "can" / f"{frame}.jpg").write_bytes(b"another picture")

    with pytest.raises(FrameTaken, match=rf"^can/{frame}.jpg exists already; nothing moved"):
        move_pair(frame, tmp_path / UNLABELLED, tmp_path / "can")
    (tmp_path / UNLABELLED / f"{frame}.json").unlink()
    with pytest.raises(FrameMissing, match=rf"^{UNLABELLED}/{frame}.json is not there"):
        move_pair(frame, tmp_path / UNLABELLED, tmp_path / "paper")

    assert names(tmp_path / UNLABELLED) == [f"{frame}.jpg"]
    assert (tmp_path / "can" / f"{frame}.jpg").read_bytes() == b"another picture"
    assert not (tmp_path / "paper").exists()
