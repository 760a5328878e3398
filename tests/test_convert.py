"""`binbot convert`: each mode turns a checkpoint into a bundle the device accepts; bad inputs leave nothing."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from binbot.convert import tflite
from binbot.convert.validation import Validation, check_drop
from binbot.device.bundle import MODEL, load_bundle, read_bundle, sha256_file
from binbot.device.runtime import Classifier
from binbot.errors import BinbotError
from binbot.convert.checkpoint import load_checkpoint
from helpers import BLOCK_TRAIN, TINY_SIZE, convert, leftovers, split_images

MODES = ("int8", "float16", "dynamic", "float32")
# How far each mode's probabilities may be from the checkpoint's on any image: float32 is the
# same arithmetic; float16 rounds weights; int8 rounds everything to 256 levels.
AGREEMENT_TOLERANCE = {"float32": 1e-5, "float16": 1e-2, "dynamic": 2e-2, "int8": 0.06}


def copy_run(run, to, files=("model.keras", "labels.txt", "split.json")):
    to.mkdir()
    for name in files:
        shutil.copy(run / name, to / name)
    return to


def test_int8_bundle_of_a_training_run_calibrates_and_validates_on_the_runs_own_split(tiny_run, tmp_path, capsys):
    out = tmp_path / "bundle"

    assert convert(tiny_run / "model.keras", "--out", out) == 0

    printed = capsys.readouterr().out
    assert "top-1 agreement" in printed and f"wrote {out}/" in printed
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "labels.txt", "model.tflite", "selftest.npz"]
    manifest = json.loads((out / "bundle.json").read_text())
    split = json.loads((tiny_run / "split.json").read_text())
    assert manifest["quantization"]["mode"] == "int8"
    assert manifest["quantization"]["input"] == {"dtype": "uint8", "scale": 1.0, "zero_point": 0}
    assert manifest["input"]["height"] == manifest["input"]["width"] == TINY_SIZE
    assert manifest["calibration"]["images"] == len(split["train"]) and "(train)" in manifest["calibration"]["data"]
    assert manifest["validation"]["images"] == len(split["validation"])
    assert manifest["source"]["sha256"] == sha256_file(tiny_run / "model.keras")
    assert manifest["class_names"] == split["class_names"]
    assert tflite.float_ops((out / MODEL).read_bytes()) == []
    assert load_bundle(out, threads=1).bundle.id == manifest["id"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_a_bundle_the_device_verifies(small_cnn_bundles, mode):
    loaded = load_bundle(small_cnn_bundles[mode], threads=1)

    assert loaded.bundle.mode == mode
    assert loaded.classifier.n_classes == len(loaded.bundle.class_names) == 3
    assert loaded.selftest_difference <= loaded.bundle.selftest_tolerance


@pytest.mark.parametrize("mode", MODES)
def test_converted_model_agrees_with_the_checkpoint(small_cnn_run, small_cnn_bundles, mode):
    keras_model = load_checkpoint(small_cnn_run / "model.keras")
    classifier = load_bundle(small_cnn_bundles[mode], threads=1).classifier
    frames = np.concatenate([split_images(small_cnn_run, part)[0] for part in ("train", "validation")])

    expected = keras_model.predict(frames.astype(np.float32), verbose=0)
    got = np.stack([classifier.classify(frame) for frame in frames])

    assert np.abs(got - expected).max() <= AGREEMENT_TOLERANCE[mode]
    assert expected.std(axis=0).max() > 0.05, "the checkpoint should score images differently, or this proves nothing"


@pytest.mark.parametrize("mode", MODES)
def test_bundle_records_validation_figures_that_can_be_recomputed(small_cnn_run, small_cnn_bundles, mode):
    frames, labels = split_images(small_cnn_run, "validation")
    keras_top1 = load_checkpoint(small_cnn_run / "model.keras").predict(frames.astype(np.float32), verbose=0).argmax(1)
    classifier = load_bundle(small_cnn_bundles[mode], threads=1).classifier
    tflite_top1 = np.array([classifier.classify(frame).argmax() for frame in frames])

    figures = read_bundle(small_cnn_bundles[mode]).manifest["validation"]

    assert figures["images"] == len(labels)
    assert figures["keras_accuracy"] == pytest.approx((keras_top1 == labels).mean())
    assert figures["tflite_accuracy"] == pytest.approx((tflite_top1 == labels).mean())
    assert figures["agreement"] == pytest.approx((keras_top1 == tflite_top1).mean())


def test_int8_takes_raw_uint8_pixels_and_has_only_integer_ops(small_cnn_bundles):
    int8 = small_cnn_bundles["int8"]
    classifier = Classifier(int8 / MODEL, threads=1)

    assert classifier.input.dtype == np.uint8 and classifier.input.is_identity
    assert classifier.output.dtype == np.uint8
    assert tflite.float_ops((int8 / MODEL).read_bytes()) == []
    tflite.check_int8((int8 / MODEL).read_bytes(), "int8")  # the converter's own check passes it


def test_int8_check_refuses_a_model_with_float_ops(small_cnn_bundles):
    float_model = (small_cnn_bundles["float32"] / MODEL).read_bytes()

    assert "CONV_2D" in tflite.float_ops(float_model)
    with pytest.raises(BinbotError, match="still has floating-point operators.*CONV_2D"):
        tflite.check_int8(float_model, "float model")


@pytest.fixture(scope="module")
def int8_with_narrow_calibration(small_cnn_run):
    """An int8 model calibrated on images without any 0 or 255 pixel: its input is not raw pixels."""
    from binbot.convert.checkpoint import load_for_conversion

    checkpoint = load_for_conversion(small_cnn_run / "model.keras")
    frames, _ = split_images(small_cnn_run, "train")
    with checkpoint.saved_model() as saved_model:
        return tflite.convert(saved_model, "int8", np.clip(frames, 40, 200))


def test_int8_check_refuses_an_input_that_is_not_raw_pixels(int8_with_narrow_calibration):
    with pytest.raises(BinbotError, match="not uint8 pixels as they are.*did not span 0..255"):
        tflite.check_int8(int8_with_narrow_calibration, "narrow")


def test_device_quantizes_frames_for_a_model_whose_input_is_not_raw_pixels(small_cnn_run, int8_with_narrow_calibration):
    classifier = Classifier(int8_with_narrow_calibration, threads=1)
    frames, _ = split_images(small_cnn_run, "validation")
    frames = np.clip(frames, 40, 200)  # inside the calibrated range, where the quantized input is exact enough

    expected = load_checkpoint(small_cnn_run / "model.keras").predict(frames.astype(np.float32), verbose=0)
    got = np.stack([classifier.classify(frame) for frame in frames])

    assert not classifier.input.is_identity
    assert np.abs(got - expected).max() <= AGREEMENT_TOLERANCE["int8"]


def test_a_savedmodel_folder_converts(small_cnn_run, small_cnn_bundles, tmp_path):
    run = copy_run(small_cnn_run, tmp_path / "run", files=("labels.txt", "split.json"))
    load_checkpoint(small_cnn_run / "model.keras").export(str(run / "saved_model"), verbose=False)

    assert convert(run / "saved_model", "--out", tmp_path / "bundle", "--mode", "float32", "--trust-savedmodel") == 0

    manifest = load_bundle(tmp_path / "bundle", threads=1).bundle.manifest
    from_keras = read_bundle(small_cnn_bundles["float32"]).manifest
    assert manifest["source"]["kind"] == "savedmodel"
    assert manifest["validation"]["keras_accuracy"] == from_keras["validation"]["keras_accuracy"]
    assert np.abs(np.array(manifest["selftest"]["expected"]) - from_keras["selftest"]["expected"]).max() <= 1e-5


def test_a_savedmodel_folder_is_not_loaded_unless_trusted(small_cnn_run, tmp_path, monkeypatch, capsys):
    import tensorflow as tf

    run = copy_run(small_cnn_run, tmp_path / "run", files=("labels.txt", "split.json"))
    load_checkpoint(small_cnn_run / "model.keras").export(str(run / "saved_model"), verbose=False)
    loads = []
    monkeypatch.setattr(tf.saved_model, "load", lambda *args, **kwargs: loads.append(args))

    code = convert(run / "saved_model", "--out", tmp_path / "bundle", "--mode", "float32")

    error = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and loads == []  # loading a SavedModel runs its graph, file reads and writes included
    assert len(error) == 1 and error[0].startswith(f"binbot convert: error: {run / 'saved_model'}: ")
    assert "runs its graph" in error[0] and "--trust-savedmodel" in error[0]
    assert not (tmp_path / "bundle").exists()


def test_a_keras_h5_model_converts(small_cnn_run, small_cnn_bundles, tmp_path):
    run = copy_run(small_cnn_run, tmp_path / "run", files=("labels.txt", "split.json"))
    load_checkpoint(small_cnn_run / "model.keras").save(run / "model.h5")

    assert convert(run / "model.h5", "--out", tmp_path / "bundle", "--mode", "dynamic") == 0

    manifest = load_bundle(tmp_path / "bundle", threads=1).bundle.manifest
    assert manifest["source"]["sha256"] == sha256_file(run / "model.h5")
    assert manifest["validation"]["keras_accuracy"] == read_bundle(small_cnn_bundles["dynamic"]).manifest["validation"]["keras_accuracy"]


# Each makes a bad input inside a copy of a good run and returns (checkpoint, extra arguments).
def missing_file(run):
    return run / "nothing.keras", []


def text_file_as_keras(run):
    (run / "notes.keras").write_text("not a model")
    return run / "notes.keras", []


def lambda_layer(run):
    import keras

    inputs = keras.Input((TINY_SIZE, TINY_SIZE, 3))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x / 255)(inputs)).save(run / "lambda.keras")
    return run / "lambda.keras", []


def not_a_model_suffix(run):
    (run / "model.txt").write_text("not a model")
    return run / "model.txt", []


def folder_not_a_savedmodel(run):
    (run / "export").mkdir()
    return run / "export", []


def truncated_keras(run):
    data = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(data[: len(data) // 2])
    return run / "model.keras", []


def more_labels_than_outputs(run):
    (run / "labels.txt").write_text("bottle\ncan\npaper\nglass\n")
    return run / "model.keras", []


def input_not_an_image(run):
    import keras

    inputs = keras.Input((10,))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs)).save(run / "dense.keras")
    return run / "dense.keras", []


def empty_calibration_folder(run):
    (run / "empty").mkdir()
    return run / "model.keras", ["--calibration-data", run / "empty"]


def no_labels(run):
    (run / "labels.txt").unlink()
    return run / "model.keras", []


def no_images_to_validate_on(run):
    (run / "split.json").unlink()
    return run / "model.keras", ["--mode", "float32"]


def split_lists_a_vanished_image(run):
    split = json.loads((run / "split.json").read_text())
    split["validation"][0]["path"] = str(run / "gone.jpg")
    (run / "split.json").write_text(json.dumps(split))
    return run / "model.keras", []


def split_labels_a_class_the_run_does_not_have(run):
    split = json.loads((run / "split.json").read_text())
    split["train"][0]["label"] = len(split["class_names"])
    (run / "split.json").write_text(json.dumps(split))
    return run / "model.keras", []


def split_nested_too_deep(run):
    (run / "split.json").write_text("[" * 100_000 + "]" * 100_000)
    return run / "model.keras", []


def split_is_a_fifo(run):
    (run / "split.json").unlink()
    os.mkfifo(run / "split.json")
    return run / "model.keras", []


BAD_INPUTS = [
    (missing_file, "nothing.keras: checkpoint not found"),
    (text_file_as_keras, r"notes.keras: not a Keras checkpoint \(a .keras file is a zip archive; this one is not\)"),
    (lambda_layer, "lambda.keras: refused by Keras' safe mode: the checkpoint contains Python code"),
    (not_a_model_suffix, "model.txt: not a Keras checkpoint"),
    (folder_not_a_savedmodel, "export: a folder but not a SavedModel"),
    (truncated_keras, "model.keras: not a readable Keras checkpoint, truncated or corrupt"),
    (more_labels_than_outputs, "model.keras: outputs 3 classes but .*labels.txt lists 4"),
    (input_not_an_image, r"dense.keras: its input has shape \(None, 10\), which is not an RGB image"),
    (empty_calibration_folder, "empty: no readable image found"),
    (no_labels, "labels.txt: labels file not found beside model.keras; pass --labels"),
    (no_images_to_validate_on, "model.keras: no images to validate the conversion on.*pass --eval-data DIR"),
    (split_lists_a_vanished_image, "split.json: 1 of its validation images are gone"),
    (split_labels_a_class_the_run_does_not_have, r"split.json: not a split.json written by binbot train \(ValueError: "
                                                 "label 3 is not the index of one of its 3 classes\\)"),
    (split_nested_too_deep, "split.json: nested more than 32 levels deep"),
    (split_is_a_fifo, "split.json: not a regular file, where a JSON file was expected"),
]


@pytest.mark.parametrize("make_bad_input, message", BAD_INPUTS, ids=[make.__name__ for make, _ in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_file_and_leaves_nothing(small_cnn_run, tmp_path, capsys, make_bad_input, message):
    run = copy_run(small_cnn_run, tmp_path / "run")
    checkpoint, extra = make_bad_input(run)
    out = tmp_path / "bundles" / "b"

    code = convert(checkpoint, "--out", out, *extra)

    error = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(error) == 1 and error[0].startswith("binbot convert: error: ")
    assert re.search(message, error[0]), error[0]
    assert not out.exists() and (not out.parent.exists() or leftovers(out.parent) == [])


def test_existing_bundle_is_kept_unless_forced_and_replaced_only_by_a_complete_one(small_cnn_run, small_cnn_bundles, tmp_path, capsys):
    out = tmp_path / "bundle"
    shutil.copytree(small_cnn_bundles["int8"], out)
    before = (out / "bundle.json").read_bytes()
    (tmp_path / "empty").mkdir()
    checkpoint = small_cnn_run / "model.keras"

    assert convert(checkpoint, "--out", out, "--mode", "float32") == 1
    assert "already exists" in capsys.readouterr().err
    assert convert(checkpoint, "--out", out, "--mode", "float32", "--force", "--eval-data", tmp_path / "empty") == 1
    assert (out / "bundle.json").read_bytes() == before

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:  # the disk fills up half-way through writing the new bundle
        patch.setattr("binbot.convert.converter.bundle_format.write_manifest", disk_full)
        assert convert(checkpoint, "--out", out, "--mode", "float32", "--force") == 1
    assert capsys.readouterr().err.strip().endswith(
        f"{out}: cannot write the bundle (No space left on device); nothing was replaced")
    assert (out / "bundle.json").read_bytes() == before and leftovers(tmp_path) == []

    assert convert(checkpoint, "--out", out, "--mode", "float32", "--force") == 0
    assert read_bundle(out).mode == "float32"
    assert leftovers(tmp_path) == []


def _validation(keras_accuracy, tflite_accuracy):
    return Validation("images", 200, keras_accuracy, tflite_accuracy, agreement=0.97, max_probability_difference=0.2)


def test_accuracy_drop_beyond_the_limit_is_refused_unless_allowed():
    assert check_drop(_validation(0.90, 0.895), max_drop=1.0, allow_drop=False) is None
    assert check_drop(_validation(0.90, 0.92), max_drop=0.0, allow_drop=False) is None  # a gain is no drop
    with pytest.raises(BinbotError, match="2.00 points below.*no bundle written"):
        check_drop(_validation(0.90, 0.88), max_drop=1.0, allow_drop=False)
    assert "--allow-drop" in check_drop(_validation(0.90, 0.88), max_drop=1.0, allow_drop=True)


def test_conversion_that_loses_accuracy_writes_no_bundle_unless_allowed(small_cnn_run, tmp_path, monkeypatch, capsys):
    from binbot.convert import converter

    real_compare = converter.compare

    def losing_compare(*args):  # as if the converted model got half of its answers wrong
        figures = real_compare(*args)
        return Validation(**{**figures.__dict__, "tflite_accuracy": figures.keras_accuracy - 0.5})

    monkeypatch.setattr(converter, "compare", losing_compare)
    out = tmp_path / "bundle"
    checkpoint = small_cnn_run / "model.keras"

    assert convert(checkpoint, "--out", out, "--mode", "float32") == 1
    assert "50.00 points below" in capsys.readouterr().err
    assert not out.exists() and leftovers(tmp_path) == []

    assert convert(checkpoint, "--out", out, "--mode", "float32", "--allow-drop") == 0
    assert read_bundle(out).manifest["validation"]["drop_allowed"] is True


def test_out_over_the_run_folder_is_refused_even_with_force_but_inside_it_is_fine(small_cnn_run, tmp_path, capsys):
    run = copy_run(small_cnn_run, tmp_path / "run")
    before = sorted(p.name for p in run.iterdir())

    for out in (run, tmp_path):
        assert convert(run / "model.keras", "--out", out, "--mode", "float32", "--force") == 1
        assert f"{out}: holds the checkpoint {run / 'model.keras'}; writing the output there would delete it" \
            in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before

    assert convert(run / "model.keras", "--out", run / "bundle", "--mode", "float32") == 0
    assert read_bundle(run / "bundle").mode == "float32"


CONVERT_WITHOUT_TRAIN = """
import importlib, pkgutil, sys
from pathlib import Path
import binbot.convert
for module in pkgutil.iter_modules(binbot.convert.__path__):
    importlib.import_module(f'binbot.convert.{module.name}')
from binbot.convert.converter import ConvertConfig, convert_checkpoint
convert_checkpoint(ConvertConfig(checkpoint=Path(sys.argv[1]), out=Path(sys.argv[2]), mode='float32'))
print(sorted(m for m in sys.modules if m.startswith('binbot.')))
"""


def test_every_convert_module_imports_and_a_run_folder_converts_with_binbot_train_blocked(small_cnn_run, tmp_path):
    out = tmp_path / "bundle"

    result = subprocess.run([sys.executable, "-c", BLOCK_TRAIN + CONVERT_WITHOUT_TRAIN, str(small_cnn_run / "model.keras"),
                             str(out)], capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    loaded = result.stdout.strip().splitlines()[-1]
    assert "binbot.convert.runfolder" in loaded and "binbot.train" not in loaded
    assert read_bundle(out).mode == "float32"
