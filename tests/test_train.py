"""`binbot train` and `binbot evaluate` from the command line, outputs and failures."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from binbot.cli import main
from binbot.convert import runfolder
from binbot.device.frames import load_model_input
from binbot.device.labels import read_labels
from binbot.train.model import base_of
from binbot.convert.checkpoint import load_checkpoint
from helpers import IMAGENET_H5, TINY_SIZE, as_kept_frame, keep_frames, leftovers, needs_imagenet_weights

TINY = ["--weights", "none", "--image-size", str(TINY_SIZE), "--batch-size", "8"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_a_run_writes_every_output(image_folder, tmp_path, capsys):
    messy = tmp_path / "data"
    shutil.copytree(image_folder, messy)
    (messy / "can" / "broken.jpg").write_bytes(b"")
    out = tmp_path / "run"

    assert main(["train", "--data", str(messy), "--out", str(out), *TINY, "--epochs", "2",
                 "--fine-tune-epochs", "1", "--fine-tune-at", "120", "--val-split", "0.25"]) == 0

    printed = capsys.readouterr().out
    assert "whole model is trained" in printed and f"wrote {out}/" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "model.keras", "labels.txt", "config.json", "history.json", "metrics.json",
        "split.json", "training.png", "confusion.png", "report.md"])
    assert read_labels(out / "labels.txt") == ["bottle", "can", "paper"]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == {"train": 27, "validation": 9, "skipped": 1}
    assert "by_data" not in metrics  # one --data: the figures above are its own
    assert metrics["skipped_files"][0]["path"].endswith("broken.jpg")
    assert sum(map(sum, metrics["confusion_matrix"])) == 9
    assert set(metrics["per_class"]) == {"bottle", "can", "paper"}
    assert all(set(m) == {"precision", "recall", "f1", "support"} for m in metrics["per_class"].values())

    split = runfolder.read_split(out)  # as convert reads it
    assert split.class_names == ["bottle", "can", "paper"]
    assert len(split.train) == 27 and len(split.validation) == 9
    assert not {e.path for e in split.train} & {e.path for e in split.validation}
    assert {e.path.name: e.label for e in split.train + split.validation} == {
        path.name: ["bottle", "can", "paper"].index(path.parent.name) for path in messy.glob("*/*.jpg")
        if path.name != "broken.jpg"}

    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == len(history["val_accuracy"]) == 3
    assert history["fine_tune_from_epoch"] == 2
    assert json.loads((out / "config.json").read_text())["fine_tune_at"] == 120
    for picture in ("training.png", "confusion.png"):
        assert (out / picture).read_bytes().startswith(PNG_MAGIC)
    report = (out / "report.md").read_text()
    assert "training.png" in report and "confusion.png" in report and "broken.jpg" in report
    assert f"{metrics['accuracy']:.2%}" in report
    assert leftovers(tmp_path) == []


def test_reported_accuracy_is_what_the_saved_checkpoint_scores_on_the_recorded_split(tiny_run):
    val = json.loads((tiny_run / "split.json").read_text())["validation"]
    model = load_checkpoint(tiny_run / "model.keras")
    pixels = np.stack([load_model_input(e["path"], TINY_SIZE, TINY_SIZE) for e in val]).astype("float32")
    predicted = model.predict(pixels, verbose=0).argmax(axis=1)
    accuracy = float(np.mean(predicted == [e["label"] for e in val]))

    # A model that called every image one class would match any figure; this one tells the three apart.
    assert sorted(set(predicted)) == [0, 1, 2]
    assert json.loads((tiny_run / "metrics.json").read_text())["accuracy"] == pytest.approx(accuracy)


def test_explicit_validation_folder(image_folder, tmp_path):
    val = tmp_path / "val"
    for name in ("bottle", "can"):
        (val / name).mkdir(parents=True)
        shutil.copy(next((image_folder / name).iterdir()), val / name / "x.jpg")
    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--val-data", str(val), "--out", str(out), *TINY, "--epochs", "1"]) == 0
    assert json.loads((out / "metrics.json").read_text())["images"] == {"train": 36, "validation": 2, "skipped": 0}


def test_init_continues_from_a_checkpoint(tiny_run, image_folder, tmp_path, capsys):
    out = tmp_path / "continued"
    assert main(["train", "--data", str(image_folder), "--out", str(out), "--init", str(tiny_run / "model.keras"),
                 "--image-size", str(TINY_SIZE), "--epochs", "1"]) == 0
    assert "starting from" in capsys.readouterr().out
    assert read_labels(out / "labels.txt") == read_labels(tiny_run / "labels.txt")

    before, after = load_checkpoint(tiny_run / "model.keras"), load_checkpoint(out / "model.keras")
    # Phase 1 trains the head on the checkpoint's base, frozen: the base's weights are the checkpoint's
    # to the bit, and the head's have moved on from the checkpoint's.
    assert [w.shape for w in after.get_weights()] == [w.shape for w in before.get_weights()]
    for old, new in zip(base_of(before).get_weights(), base_of(after).get_weights()):
        np.testing.assert_array_equal(new, old)
    head = [layer.name for layer in after.layers if layer.weights and layer is not base_of(after)]
    assert head and all(not np.array_equal(after.get_layer(name).get_weights()[0], before.get_layer(name).get_weights()[0])
                        for name in head)


def test_init_with_a_class_the_checkpoint_does_not_know_is_an_error(tiny_run, image_folder, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    shutil.copytree(data / "can", data / "glass")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--init",
                 str(tiny_run / "model.keras"), "--image-size", str(TINY_SIZE)]) == 1
    assert "glass are not among the model's labels" in capsys.readouterr().err


def test_existing_output_is_kept_unless_forced(tiny_run, image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main(["train", "--data", str(image_folder), "--out", str(out), *TINY, "--epochs", "1"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"

    assert main(["train", "--data", str(image_folder), "--out", str(out), *TINY, "--epochs", "1", "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.keras").is_file()
    assert leftovers(tmp_path) == []


def photo_files(folder):
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


# Each lays out photos (and a run to continue from) under a folder and returns (arguments, expected error).
def out_is_data(root):
    return ["--data", root / "data", "--out", root / "data"], "data: is also --data; writing the output there would delete it"


def out_holds_data(root):
    return ["--data", root / "data", "--out", root], f"{root}: holds --data .*data; writing the output there would delete it"


def out_inside_data(root):
    return ["--data", root / "data", "--out", root / "data" / "run"], "run: inside --data .*data, where the output would be read as input"


def out_is_val_data(root):
    shutil.copytree(root / "data", root / "val")
    return (["--data", root / "data", "--val-data", root / "val", "--out", root / "val"],
            "val: is also --val-data; writing the output there would delete it")


def out_holds_init(root):
    return (["--data", root / "data", "--init", root / "first" / "model.keras", "--out", root / "first"],
            "first: holds --init .*first/model.keras; writing the output there would delete it")


def out_is_second_data(root):
    shutil.copytree(root / "data", root / "field")
    return (["--data", root / "data", "--data", root / "field", "--out", root / "field"],
            "field: is also --data; writing the output there would delete it")


def out_inside_second_data(root):
    shutil.copytree(root / "data", root / "field")
    return (["--data", root / "data", "--data", root / "field", "--out", root / "field" / "run"],
            "run: inside --data .*field, where the output would be read as input")


OVERLAPS = [out_is_data, out_holds_data, out_inside_data, out_is_val_data, out_holds_init,
            out_is_second_data, out_inside_second_data]


@pytest.mark.parametrize("lay_out", OVERLAPS, ids=[lay_out.__name__ for lay_out in OVERLAPS])
def test_out_overlapping_an_input_is_refused_even_with_force(tiny_run, image_folder, tmp_path, capsys, lay_out):
    shutil.copytree(image_folder, tmp_path / "data")
    shutil.copytree(tiny_run, tmp_path / "first")
    args, expected = lay_out(tmp_path)
    before = photo_files(tmp_path)

    code = main(["train", *map(str, args), *TINY, "--epochs", "1", "--force"])

    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert code == 1 and "phase 1" not in captured.out
    assert errors[-1].startswith("binbot train: error: ") and re.search(expected, errors[-1]), errors[-1]
    assert photo_files(tmp_path) == before


@pytest.mark.parametrize("where, expected", [
    ("data", "data: is also --data; writing the output there would delete it"),
    ("data/evaluation", "evaluation: inside --data .*data, where the output would be read as input"),
    ("run", "run: holds the checkpoint .*run/model.keras; writing the output there would delete it"),
])
def test_evaluate_out_overlapping_its_inputs_is_refused_even_with_force(tiny_run, image_folder, tmp_path, capsys,
                                                                         where, expected):
    shutil.copytree(image_folder, tmp_path / "data")
    shutil.copytree(tiny_run, tmp_path / "run")
    before = photo_files(tmp_path)

    code = main(["evaluate", str(tmp_path / "run" / "model.keras"), "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / where), "--force"])

    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(errors) == 1 and errors[0].startswith("binbot evaluate: error: ") and re.search(expected, errors[0]), errors
    assert photo_files(tmp_path) == before


def test_out_that_cannot_be_created_fails_before_training(image_folder, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder")

    code = main(["train", "--data", str(image_folder), "--out", str(tmp_path / "notes.txt" / "run"), *TINY, "--epochs", "1"])

    captured = capsys.readouterr()
    assert code == 1 and "phase 1" not in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        f"binbot train: error: {tmp_path / 'notes.txt' / 'run'}: cannot be created: {tmp_path / 'notes.txt'} is not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_out_in_a_folder_without_write_permission_fails_before_training(image_folder, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code = main(["train", "--data", str(image_folder), "--out", str(locked / "runs" / "first"), *TINY, "--epochs", "1"])
    finally:
        locked.chmod(0o755)

    captured = capsys.readouterr()
    assert code == 1 and "phase 1" not in captured.out
    assert captured.err.strip().splitlines()[-1] == (
        f"binbot train: error: {locked / 'runs' / 'first'}: cannot be created: {locked} is not writable")


@pytest.mark.parametrize("problem, expected", [
    ("one class", "at least 2"),
    ("empty class", "have no readable image"),
    ("no epochs", "nothing to train"),
])
def test_bad_input_fails_before_training_and_leaves_nothing(problem, expected, tmp_path, capsys):
    data = tmp_path / "data"
    for name in ("can",) if problem == "one class" else ("can", "paper"):
        (data / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(data / name / "a.jpg")
    if problem == "empty class":
        (data / "paper" / "a.jpg").write_bytes(b"")
    epochs = "0" if problem == "no epochs" else "1"
    out = tmp_path / "run"

    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--epochs", epochs]) == 1

    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[-1].startswith("binbot train: error:") and expected in errors[-1]
    assert not out.exists() and leftovers(tmp_path) == []


def test_evaluate_prints_and_writes_the_same_metrics(tiny_run, image_folder, tmp_path, capsys):
    out = tmp_path / "evaluation"
    assert main(["evaluate", str(tiny_run / "model.keras"), "--data", str(image_folder), "--out", str(out)]) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluated"] == 36 and metrics["images"] == {"evaluated": 36, "skipped": 0}
    assert f"accuracy {metrics['accuracy']:.4f} on 36 images" in capsys.readouterr().out
    assert (out / "confusion.png").read_bytes().startswith(PNG_MAGIC)
    assert "Accuracy" in (out / "report.md").read_text()


def test_evaluate_defaults_its_output_beside_the_checkpoint(tiny_run, image_folder, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["evaluate", str(run / "model.keras"), "--data", str(image_folder)]) == 0
    assert (run / f"evaluation-{image_folder.name}" / "metrics.json").is_file()


def test_evaluate_refuses_a_file_that_is_not_a_checkpoint(image_folder, tmp_path, capsys):
    fake = tmp_path / "model.keras"
    fake.write_bytes(b"PK\x03\x04 truncated zip")
    assert main(["evaluate", str(fake), "--data", str(image_folder)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"binbot evaluate: error: {fake}: not a readable Keras checkpoint")


@needs_imagenet_weights
def test_pretrained_base_learns_the_synthetic_classes(tmp_path):
    from binbot.train.synthetic import write_dataset

    # 30 photos a class leave 6 a class for validation: one mistake costs 5.6 points, not 17.
    data = write_dataset(tmp_path / "data", per_class=30, seed=5)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--weights", str(IMAGENET_H5),
                 "--image-size", "96", "--batch-size", "8", "--epochs", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"]["validation"] == 18
    assert metrics["accuracy"] >= 0.9


def test_cosine_fine_tuning_decays_to_zero_over_the_fine_tuning_steps(tmp_path):
    from binbot.train.trainer import TrainConfig, _fine_tune_learning_rate

    config = TrainConfig(data=tmp_path, out=tmp_path / "run", batch_size=32, fine_tune_epochs=4,
                         fine_tune_learning_rate=1e-4, fine_tune_schedule="cosine")
    schedule = _fine_tune_learning_rate(config, n_train=100)  # 4 steps an epoch
    assert float(schedule(0)) == pytest.approx(1e-4)
    assert float(schedule(8)) == pytest.approx(0.5e-4)
    assert float(schedule(16)) == pytest.approx(0.0, abs=1e-12)
    constant = TrainConfig(data=tmp_path, out=tmp_path / "run", fine_tune_learning_rate=3e-5)
    assert _fine_tune_learning_rate(constant, n_train=100) == 3e-5


def field_folder(root, classes=("bottle", "can"), per_class=6, waiting=2):
    """A field folder as `binbot label` leaves it: <class>/<id>.jpg with sidecars, unlabelled/ and discarded/."""
    from binbot.train.synthetic import write_dataset

    write_dataset(root, per_class=per_class, classes=classes, seed=11)
    for picture in sorted(root.rglob("*.jpg")):
        as_kept_frame(picture, label=picture.parent.name)
    keep_frames(root / "unlabelled", waiting)
    keep_frames(root / "discarded", 1)
    return root


def test_photos_and_field_frames_train_together_and_are_scored_apart(tiny_run, image_folder, tmp_path, capsys):
    field = field_folder(tmp_path / "field")  # no paper in the field yet
    out = tmp_path / "run"

    assert main(["train", "--data", str(image_folder), "--data", str(field), "--init", str(tiny_run / "model.keras"),
                 "--out", str(out), "--image-size", str(TINY_SIZE), "--batch-size", "8", "--epochs", "1"]) == 0

    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert f"note: {field / 'unlabelled'} has 2 frame(s) not yet labelled" in captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    by_data = metrics["by_data"]
    assert list(by_data) == ["data", "field"]
    assert by_data["data"]["data"] == str(image_folder) and by_data["field"]["data"] == str(field)
    assert by_data["data"]["images"] == {"train": 30, "validation": 6, "skipped": 0}
    assert by_data["field"]["images"] == {"train": 10, "validation": 2, "skipped": 0}
    assert metrics["images"] == {"train": 40, "validation": 8, "skipped": 0}
    assert sum(part["evaluated"] for part in by_data.values()) == metrics["evaluated"] == 8
    assert by_data["field"]["per_class"]["paper"]["support"] == 0
    assert np.add(by_data["data"]["confusion_matrix"], by_data["field"]["confusion_matrix"]).tolist() == metrics["confusion_matrix"]

    split = json.loads((out / "split.json").read_text())
    assert not [e for e in split["train"] + split["validation"] if "unlabelled" in e["path"] or "discarded" in e["path"]]
    model = load_checkpoint(out / "model.keras")
    for name, root in (("data", image_folder), ("field", field)):
        val = [e for e in split["validation"] if e["path"].startswith(f"{root.resolve()}/")]
        pixels = np.stack([load_model_input(e["path"], TINY_SIZE, TINY_SIZE) for e in val]).astype("float32")
        predicted = model.predict(pixels, verbose=0).argmax(axis=1)
        assert by_data[name]["accuracy"] == pytest.approx(float(np.mean(predicted == [e["label"] for e in val])))

    assert json.loads((out / "config.json").read_text())["data"] == [str(image_folder), str(field)]
    report = (out / "report.md").read_text()
    assert f"| field (`{field}`) | 10 | 2 | {by_data['field']['accuracy']:.2%} |" in report
    assert f"| data (`{image_folder}`) | 30 | 6 | {by_data['data']['accuracy']:.2%} |" in report
    assert "## Per class, on the validation images of field" in report
    assert f"  field: accuracy {by_data['field']['accuracy']:.4f} on 2 images" in captured.out


@pytest.mark.parametrize("init", [False, True], ids=["own classes", "with --init"])
def test_a_folders_validation_images_do_not_depend_on_the_folders_beside_it(tiny_run, image_folder, tmp_path, init):
    from binbot.train.trainer import TrainConfig, split_data

    field = field_folder(tmp_path / "field", per_class=9)
    checkpoint = tiny_run / "model.keras" if init else None

    def split(*data):
        class_names, parts = split_data(TrainConfig(data=list(data), out=tmp_path / "run", init=checkpoint))
        return {part.name: ([class_names[e.label] for e in part.val], [e.path for e in part.val]) for part in parts}

    alone, together = split(field), split(image_folder, field)
    assert together["field"] == alone["field"]
    assert together["data"] == split(image_folder)["data"]
    assert sorted(alone["field"][0]) == ["bottle", "bottle", "can", "can"]


def test_a_second_folder_with_a_class_the_checkpoint_does_not_know_is_refused(tiny_run, image_folder, tmp_path, capsys):
    field = field_folder(tmp_path / "field", classes=("can",), per_class=2)
    shutil.copytree(field / "can", field / "glass")  # a class the field found that the model was never taught
    assert main(["train", "--data", str(image_folder), "--data", str(field), "--out", str(tmp_path / "run"),
                 "--init", str(tiny_run / "model.keras"), "--image-size", str(TINY_SIZE), "--epochs", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == (
        f"binbot train: error: {field}: class folder(s) glass are not among the model's labels ['bottle', 'can', 'paper']")
    assert "phase 1" not in captured.out and not (tmp_path / "run").exists()


def test_val_data_with_several_data_folders_is_refused(image_folder, tmp_path, capsys):
    field = field_folder(tmp_path / "field", per_class=2)
    assert main(["train", "--data", str(image_folder), "--data", str(field), "--val-data", str(image_folder),
                 "--out", str(tmp_path / "run"), *TINY, "--epochs", "1"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [f"binbot train: error: --val-data {image_folder}: works with one --data, not 2; "
                      "drop it and each --data folder is split by --val-split"]


def test_folders_of_the_same_name_are_told_apart_by_their_parents(tmp_path):
    from binbot.train.trainer import data_names

    assert data_names([tmp_path / "a" / "field", tmp_path / "b" / "field", tmp_path / "photos"]) == [
        "a/field", "b/field", "photos"]
    assert data_names([tmp_path / "photos"]) == ["photos"]


def train_args(*options):
    """`binbot train` options as the command line parses them."""
    from binbot.cli import build_parser

    return build_parser().parse_args(["train", "--data", "photos", "--out", "run", *options])


def resolved_config(*options):
    """The config.json a `binbot train` with these options would write, without training."""
    from binbot.train.cli import train_settings
    from binbot.train.trainer import TrainConfig

    return TrainConfig(**train_settings(train_args(*options))).as_json()


def test_the_seed_recipe_is_the_default_and_the_trainers_defaults():
    from binbot.train.recipes import RECIPES
    from binbot.train.trainer import TrainConfig

    config = resolved_config()
    assert config["recipe"] == "seed"
    assert {key: config[key] for key in RECIPES["seed"]} == RECIPES["seed"]
    assert config["fine_tune_epochs"] == 0 and config["class_weight"] == "none"
    assert TrainConfig(data="photos", out="run").as_json() == config


def test_the_finetune_recipe_sets_the_fine_tuning_values_and_a_flag_given_replaces_one():
    finetune = resolved_config("--recipe", "finetune")
    seed = resolved_config()
    assert finetune["recipe"] == "finetune"
    assert {key: finetune[key] for key in ("epochs", "fine_tune_epochs", "fine_tune_at", "fine_tune_learning_rate",
                                           "fine_tune_schedule", "class_weight")} == {
        "epochs": 10, "fine_tune_epochs": 10, "fine_tune_at": 0, "fine_tune_learning_rate": 1e-4,
        "fine_tune_schedule": "cosine", "class_weight": "balanced"}
    assert {key for key in seed if seed[key] != finetune[key]} == {
        "recipe", "fine_tune_epochs", "fine_tune_at", "fine_tune_learning_rate", "fine_tune_schedule", "class_weight"}

    # A flag given wins, even when its value is the seed recipe's (so "given" cannot mean "not the default").
    overridden = resolved_config("--recipe", "finetune", "--fine-tune-at", "100", "--epochs", "3",
                                 "--class-weight", "none")
    assert overridden == {**finetune, "fine_tune_at": 100, "epochs": 3, "class_weight": "none"}


def test_help_shows_each_recipes_values(capsys):
    from binbot.train.recipes import RECIPES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert f"(default: seed {RECIPES['seed']['fine_tune_at']}, finetune {RECIPES['finetune']['fine_tune_at']})" in text
    assert "--fine-tune-schedule {constant,cosine} keep" in text and "(default: seed constant, finetune cosine)" in text
    assert f"(default: {RECIPES['seed']['batch_size']} in every recipe)" in text
    assert "'finetune': the seed recipe with --fine-tune-epochs 10 --fine-tune-at 0" in text


def test_balanced_class_weights_are_n_over_k_times_each_count():
    from binbot.device.imagefolder import Example
    from binbot.train.trainer import balanced_class_weights

    # 6 of class 0, 2 of class 2, none of class 1 (a class the checkpoint knows but no folder has).
    examples = [Example(f"a{i}.jpg", 0) for i in range(6)] + [Example(f"c{i}.jpg", 2) for i in range(2)]
    weights = balanced_class_weights(examples)
    assert weights == {0: 8 / (2 * 6), 2: 8 / (2 * 2)}
    assert sum(weights[label] * n for label, n in ((0, 6), (2, 2))) == pytest.approx(len(examples))


def test_balanced_class_weights_make_each_class_count_the_same_in_the_training_loss():
    import keras
    import tensorflow as tf

    from binbot.train.trainer import _fit

    # Inputs one-hot by class; a fixed model gives class c's images the loss l_c. At learning rate 0
    # nothing changes, so the training loss is the weighted mean of the l_c over the images.
    counts = [6, 6, 2]
    labels = np.repeat(np.arange(3), counts)
    images = np.eye(3, dtype="float32")[labels]
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", use_bias=False)(inputs))
    model.layers[-1].set_weights([np.diag([0.0, 1.0, 2.0]).astype("float32")])
    loss_of_class = -np.log(np.exp([0.0, 1.0, 2.0]) / (np.exp([0.0, 1.0, 2.0]) + 2))
    n, k = len(labels), len(counts)
    weights = {c: n / (k * counts[c]) for c in range(k)}

    history = {}
    _fit(model, dataset, dataset, 0.0, 0, 1, history, weights)

    assert history["loss"][0] == pytest.approx(loss_of_class.mean(), rel=1e-5)  # every class weighs the same
    assert history["val_loss"][0] == pytest.approx(np.dot(counts, loss_of_class) / n, rel=1e-5)  # validation is not weighted


def test_balanced_class_weights_come_from_the_training_split_and_are_recorded(image_folder, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    for extra in sorted((data / "paper").iterdir())[5:]:  # 12, 12 and 5 photos
        extra.unlink()
    out = tmp_path / "run"

    assert main(["train", "--recipe", "finetune", "--data", str(data), "--out", str(out), *TINY, "--epochs", "1",
                 "--fine-tune-epochs", "1"]) == 0  # finetune weighs the classes for balance itself

    split = json.loads((out / "split.json").read_text())
    train_counts = np.bincount([e["label"] for e in split["train"]], minlength=3)
    n, k = train_counts.sum(), 3
    expected = {name: n / (k * count) for name, count in zip(split["class_names"], train_counts)}
    all_counts = train_counts + np.bincount([e["label"] for e in split["validation"]], minlength=3)
    assert expected["paper"] != pytest.approx(all_counts.sum() / (k * all_counts[2]), abs=0.01)  # the split matters here
    assert json.loads((out / "metrics.json").read_text())["class_weights"] == pytest.approx(expected)
    shown = ", ".join(f"{name} {weight:.2f}" for name, weight in expected.items())
    assert f"class weights (balanced): {shown}\n" in capsys.readouterr().out

    config = json.loads((out / "config.json").read_text())
    assert {key: config[key] for key in ("recipe", "class_weight", "epochs", "fine_tune_epochs", "fine_tune_at",
                                         "fine_tune_learning_rate", "fine_tune_schedule", "image_size")} == {
        "recipe": "finetune", "class_weight": "balanced", "epochs": 1, "fine_tune_epochs": 1, "fine_tune_at": 0,
        "fine_tune_learning_rate": 1e-4, "fine_tune_schedule": "cosine", "image_size": TINY_SIZE}
    report = (out / "report.md").read_text()
    assert "the `finetune` recipe (and, over it, `--image-size 32 --batch-size 8 --epochs 1 --fine-tune-epochs 1`)" \
        in report
    assert f"Classes weighted for balance (n / (classes x count), on the training images): {shown}." in report
