"""Scanning a <class>/<image> folder: what is used, what is skipped and why, and the split."""

from collections import Counter

import pytest
from PIL import Image

from binbot.errors import BinbotError
from binbot.device.imagefolder import scan
from binbot.train.folder import scan_all, stratified_split
from helpers import keep_frames, write_files_only_pillow_reads


def make_folder(root, per_class: dict[str, int]):
    for name, n in per_class.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (20, 15), (i * 10 % 255, 80, 120)).save(root / name / f"{i}.jpg")
    return root


def test_classes_are_the_sorted_folder_names(tmp_path):
    images = scan(make_folder(tmp_path, {"metal": 2, "cardboard": 3, "glass": 1}))
    assert images.class_names == ["cardboard", "glass", "metal"]
    assert images.counts() == {"cardboard": 3, "glass": 1, "metal": 2}


def test_unreadable_files_are_skipped_with_one_warning_each(tmp_path, capsys):
    root = make_folder(tmp_path, {"can": 3, "paper": 3})
    (root / "can" / "empty.jpg").write_bytes(b"")
    (root / "can" / "text.png").write_text("this is not a picture")
    good = (root / "paper" / "0.jpg").read_bytes()
    (root / "paper" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "paper" / "readme.txt").write_text("notes")
    Image.new("RGB", (9, 9)).save(root / "paper" / "png_named_jpg.jpg", format="PNG")  # readable: kept

    images = scan(root)

    skipped = {path.name: why for path, why in images.skipped}
    assert set(skipped) == {"empty.jpg", "text.png", "truncated.jpg", "readme.txt"}
    assert "empty" in skipped["empty.jpg"]
    assert "extension" in skipped["readme.txt"]
    assert "truncated" in skipped["truncated.jpg"]
    assert "not an image" in skipped["text.png"]
    assert images.counts() == {"can": 3, "paper": 4}
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: skipping")]
    assert len(warnings) == 4


def test_files_are_checked_with_the_decoder_training_uses(tmp_path, capsys):
    root = make_folder(tmp_path, {"can": 2, "paper": 2})
    names = write_files_only_pillow_reads(root / "can")

    images = scan(root)

    skipped = {path.name: why for path, why in images.skipped}
    assert skipped == {"cut_short.png": "truncated or corrupt image (OpenCV cannot decode it)",
                       "targa.png": "not an image in a format OpenCV reads"}
    assert images.counts() == {"can": 2, "paper": 2}
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: skipping")]
    assert sorted(warnings) == [f"warning: skipping {root / 'can' / name}: {skipped[name]}" for name in names]


def test_fewer_than_two_classes_is_an_error(tmp_path):
    with pytest.raises(BinbotError, match="at least 2"):
        scan(make_folder(tmp_path, {"only": 4}))


def test_class_without_a_readable_image_is_an_error(tmp_path):
    root = make_folder(tmp_path, {"can": 2, "paper": 0})
    (root / "paper" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(BinbotError, match="paper have no readable image"):
        scan(root)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(BinbotError, match="not a folder"):
        scan(tmp_path / "nowhere")


def test_given_labels_fix_the_order_and_reject_unknown_classes(tmp_path):
    root = make_folder(tmp_path, {"paper": 1, "can": 1})
    images = scan(root, ["paper", "glass", "can"])
    assert sorted((e.path.parent.name, e.label) for e in images.examples) == [("can", 2), ("paper", 0)]
    with pytest.raises(BinbotError, match="can are not among the model's labels"):
        scan(root, ["paper", "glass"])


def test_split_keeps_class_proportions_and_is_reproducible(tmp_path):
    images = scan(make_folder(tmp_path, {"a": 50, "b": 20, "c": 10}))
    train, val = stratified_split(images.examples, 0.2, seed=7)

    assert Counter(e.label for e in val) == {0: 10, 1: 4, 2: 2}
    assert Counter(e.label for e in train) == {0: 40, 1: 16, 2: 8}
    assert not {e.path for e in train} & {e.path for e in val}
    assert stratified_split(images.examples, 0.2, seed=7) == (train, val)
    assert stratified_split(images.examples, 0.2, seed=8)[1] != val


def test_every_class_with_two_images_appears_in_both_halves(tmp_path):
    images = scan(make_folder(tmp_path, {"a": 2, "b": 30}))
    train, val = stratified_split(images.examples, 0.1, seed=0)
    assert {e.label for e in val} == {0, 1} and {e.label for e in train} == {0, 1}


def test_split_fraction_out_of_range_is_an_error(tmp_path):
    images = scan(make_folder(tmp_path, {"a": 2, "b": 2}))
    with pytest.raises(BinbotError, match="--val-split"):
        stratified_split(images.examples, 1.0, seed=0)


def test_a_field_folder_is_read_as_its_labelled_frames_only(tmp_path, capsys):
    field = tmp_path / "field"
    can_ids = keep_frames(field / "can", 3)
    keep_frames(field / "paper", 2)
    keep_frames(field / "unlabelled", 4)
    keep_frames(field / "discarded", 1)
    (field / "paper" / "notes.json").write_text("{}")  # beside no image: still a stray file

    images = scan(field)

    assert images.class_names == ["can", "paper"]
    assert images.counts() == {"can": 3, "paper": 2}
    assert sorted(e.path.stem for e in images.examples if e.label == 0) == sorted(can_ids)
    assert [(path.name, "extension" in why) for path, why in images.skipped] == [("notes.json", True)]
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("warning:")] == [
        f"warning: skipping {field / 'paper' / 'notes.json'}: {images.skipped[0][1]}"]
    assert [line for line in err if line.startswith("note:")] == [
        f"note: {field / 'unlabelled'} has 4 frame(s) not yet labelled (binbot label {field})"]


def test_a_field_folder_with_nothing_waiting_says_nothing(tmp_path, capsys):
    field = tmp_path / "field"
    keep_frames(field / "can", 1)
    keep_frames(field / "paper", 1)
    (field / "unlabelled").mkdir()

    scan(field, ["bottle", "can", "paper"])

    assert capsys.readouterr().err == ""


def test_not_classes_stay_out_even_under_a_models_labels(tmp_path):
    field = tmp_path / "field"
    keep_frames(field / "can", 2)
    keep_frames(field / "discarded", 2)
    images = scan(field, ["paper", "can"])  # discarded/ is not refused as an unknown class
    assert images.counts() == {"paper": 0, "can": 2}


def test_several_folders_share_the_sorted_union_of_their_classes(tmp_path):
    photos = make_folder(tmp_path / "photos", {"metal": 2, "glass": 2})
    field = tmp_path / "field"
    keep_frames(field / "paper", 2)
    keep_frames(field / "metal", 1)

    scanned = scan_all([photos, field])

    assert [images.class_names for images in scanned] == [["glass", "metal", "paper"]] * 2
    assert scanned[0].counts() == {"glass": 2, "metal": 2, "paper": 0}
    assert scanned[1].counts() == {"glass": 0, "metal": 1, "paper": 2}
    assert {(e.path.parent.name, e.label) for images in scanned for e in images.examples} == {
        ("glass", 0), ("metal", 1), ("paper", 2)}


def test_several_folders_under_a_models_labels_refuse_the_one_with_an_unknown_class(tmp_path):
    photos = make_folder(tmp_path / "photos", {"can": 1, "paper": 1})
    field = make_folder(tmp_path / "field", {"can": 1, "glass": 1})
    with pytest.raises(BinbotError, match=f"^{field}: class folder\\(s\\) glass are not among the model's labels"):
        scan_all([photos, field], ["can", "paper"])


def test_several_folders_need_two_classes_between_them_and_each_once(tmp_path):
    one = make_folder(tmp_path / "one", {"can": 1})
    other = make_folder(tmp_path / "other", {"can": 2})
    with pytest.raises(BinbotError, match="found 1 class folder\\(s\\) between them"):
        scan_all([one, other])
    with pytest.raises(BinbotError, match="given twice"):
        scan_all([one, tmp_path / "." / "one"])
