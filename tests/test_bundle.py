"""The device side of a bundle: loading, verifying, refusing, classifying, inspecting. No TensorFlow needed."""

import hashlib
import io
import json
import os
import re
import shutil
import sys
import zipfile

import numpy as np
import pytest

from binbot.cli import main
from binbot.device import runtime
from binbot.device.bundle import (FORMAT_VERSION, LABELS, MANIFEST, MODEL, SELFTEST, bundle_id, load_bundle,
                                  manifest_checksum, read_bundle)
from binbot.device.runtime import Classifier
from binbot.errors import BinbotError
from helpers import run_without_tensorflow

MODES = ("int8", "float16", "dynamic", "float32")


@pytest.fixture
def bundle(small_cnn_bundles, tmp_path):
    """A private copy of the int8 bundle, free to be damaged."""
    return shutil.copytree(small_cnn_bundles["int8"], tmp_path / "bundle")


def rewrite_manifest(bundle, change):
    """Edit bundle.json as a careful forger would: with its own checksum recomputed."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    change(manifest)
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def test_a_flipped_byte_in_the_model_is_refused_before_the_model_is_loaded(bundle):
    model = bytearray((bundle / MODEL).read_bytes())
    model[len(model) // 2] ^= 0x01
    (bundle / MODEL).write_bytes(bytes(model))

    with pytest.raises(BinbotError, match=r"model.tflite: corrupt or changed since conversion \(sha256"):
        load_bundle(bundle)


def test_a_missing_label_is_refused_naming_it(bundle):
    labels = (bundle / "labels.txt").read_text().splitlines()
    (bundle / "labels.txt").write_text("\n".join(labels[:-1]) + "\n")

    with pytest.raises(BinbotError, match=f"labels.txt: has 2 classes but the model outputs 3 \\(missing: {labels[-1]}\\)"):
        load_bundle(bundle)


def test_an_edited_bundle_json_is_refused(bundle):
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["selftest"]["tolerance"] = 1.0  # a plausible "fix" for a failing self-test
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2))

    with pytest.raises(BinbotError, match="bundle.json: edited since conversion"):
        load_bundle(bundle)


def test_an_unsupported_format_version_is_refused_with_what_to_do(bundle):
    rewrite_manifest(bundle, lambda m: m.update(format_version=FORMAT_VERSION + 1))

    with pytest.raises(BinbotError, match=f"format version {FORMAT_VERSION + 1} is not supported.*update binbot"):
        read_bundle(bundle)


def test_a_new_bundle_asks_for_the_bit_exact_resize(small_cnn_bundles):
    assert read_bundle(small_cnn_bundles["int8"]).resize_policy == "stretch-area-exact"


def test_a_bundle_of_the_older_resize_policy_is_still_served_with_it(bundle):
    """Bundles deployed before the bit-exact resize say "stretch-area"; the device keeps serving them."""
    rewrite_manifest(bundle, lambda m: m["input"].update(resize_policy="stretch-area"))

    assert load_bundle(bundle).bundle.resize_policy == "stretch-area"


def test_an_unknown_resize_policy_is_refused_naming_the_known_ones(bundle):
    rewrite_manifest(bundle, lambda m: m["input"].update(resize_policy="center-crop"))

    with pytest.raises(BinbotError, match=r"bundle.json: expects RGB frames resized by 'center-crop'; this binbot feeds "
                                          r"RGB frames resized by 'stretch-area-exact' or 'stretch-area'"):
        read_bundle(bundle)


@pytest.mark.parametrize("forged_id, problem", [
    ("/../../../etc", "is not a bundle id (12 hex digits)"),
    ("../current", "is not a bundle id (12 hex digits)"),
    ("0123456789ab", "is not the id of its model and labels"),
])
def test_an_id_that_is_not_the_bundles_own_is_refused(bundle, forged_id, problem):
    """The id becomes a folder name on the Pi: a forger who re-checksums bundle.json cannot choose it."""
    rewrite_manifest(bundle, lambda m: m.update(id=forged_id))

    with pytest.raises(BinbotError, match=re.escape(f"{bundle / MANIFEST}: id ") + ".?" + re.escape(forged_id) + ".*" + re.escape(problem)):
        load_bundle(bundle)


@pytest.mark.parametrize("entry", ["not a dict", {"sha256": "abc", "bytes": 1}, {"sha256": "0" * 64, "bytes": -1},
                                   {"sha256": "0" * 64}])
def test_a_malformed_file_entry_is_a_one_line_error_in_inspect(bundle, capsys, entry):
    rewrite_manifest(bundle, lambda m: m["files"].update({"labels.txt": entry}))

    assert main(["bundle", "inspect", str(bundle)]) == 1

    captured = capsys.readouterr()
    assert captured.err.startswith(f"binbot bundle: error: {bundle / MANIFEST}: files.labels.txt should be")
    assert len(captured.err.splitlines()) == 1


def test_an_extra_file_entry_is_refused(bundle):
    rewrite_manifest(bundle, lambda m: m["files"].update({"../../evil": {"sha256": "0" * 64, "bytes": 1}}))

    with pytest.raises(BinbotError, match="'files' lists .*'../../evil'.*, expected"):
        read_bundle(bundle)


def test_relabelled_classes_are_refused(bundle):
    (bundle / "labels.txt").write_text("can\nbottle\npaper\n")

    with pytest.raises(BinbotError, match=r"labels.txt: lists \['can', 'bottle', 'paper'\], but bundle.json says"):
        load_bundle(bundle)


def forge_file(bundle, name, data):
    """Replace one of the bundle's files as a forger would: its entry, the id and bundle.json's checksum recomputed."""
    (bundle / name).write_bytes(data)

    def change(manifest):
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        manifest["id"] = bundle_id(manifest["files"][MODEL]["sha256"], manifest["files"][LABELS]["sha256"])
    rewrite_manifest(bundle, change)


def npz_claiming(shape):
    """A selftest.npz whose inputs.npy header says shape, with a few bytes of frames after it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as npz:
        npz.writestr("inputs.npy", header.getvalue() + bytes(1000))
    return archive.getvalue()


@pytest.mark.parametrize("damage, problem", [
    (lambda b: forge_file(b, LABELS, "bottle\ncan\npaper\n".encode("utf-16")), "labels.txt: not UTF-8 text (byte 0)"),
    (lambda b: ((b / LABELS).unlink(), (b / LABELS).mkdir()), "labels.txt: a folder, where a labels file was expected"),
    (lambda b: ((b / LABELS).unlink(), os.mkfifo(b / LABELS)), "labels.txt: not a regular file"),
    (lambda b: ((b / MODEL).unlink(), os.mkfifo(b / MODEL)), "model.tflite: not a regular file"),
    (lambda b: (b / MANIFEST).write_text("[" * 200_000), "bundle.json: nested more than 32 levels deep"),
    (lambda b: (b / MANIFEST).write_text('{"format_version": ' + "1" * 5000 + "}"), "a number of 5,000 characters"),
    (lambda b: forge_file(b, SELFTEST, b"not a zip at all"), "selftest.npz: not a readable self-test file"),
    (lambda b: forge_file(b, SELFTEST, b"PK\x03\x04 and then no zip"), "selftest.npz: not a readable self-test file"),
    (lambda b: forge_file(b, SELFTEST, npz_claiming((4, 100_000, 100_000, 3))),
     "selftest.npz: holds uint8 inputs of shape (4, 100000, 100000, 3), expected uint8 (4, 32, 32, 3)"),
    (lambda b: forge_file(b, SELFTEST, npz_claiming((4, 32, 32, 3))), "selftest.npz: holds 1,000 bytes of frames"),
])
def test_a_damaged_or_hostile_bundle_is_a_one_line_error_in_inspect(bundle, capsys, damage, problem):
    damage(bundle)

    assert main(["bundle", "inspect", str(bundle)]) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"binbot bundle: error: {bundle}/") and problem in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("field, value", [
    ("validation", "very good"), ("validation", {"images": "many", "keras_accuracy": "high", "drop_allowed": 1}),
    ("source", [1, 2]), ("source", {"checkpoint": 7, "sha256": 12345}), ("tools", "all of them"),
    ("tools", {"tensorflow": ["2", "21"]}), ("calibration", 5), ("calibration", {"images": 1.5, "data": None}),
    ("created", {"when": "now"}),
])
def test_inspect_shows_a_wrongly_typed_optional_field_as_unknown(bundle, capsys, field, value):
    rewrite_manifest(bundle, lambda m: m.update({field: value}))

    assert main(["bundle", "inspect", str(bundle)]) == 0

    out = capsys.readouterr().out
    assert "?" in out and "verifies; ready to serve" in out


def test_a_missing_file_is_refused(bundle):
    (bundle / SELFTEST).unlink()

    with pytest.raises(BinbotError, match="selftest.npz: missing from the bundle"):
        load_bundle(bundle)


def test_a_folder_without_bundle_json_is_not_a_bundle(tmp_path):
    with pytest.raises(BinbotError, match="bundle.json: missing; .* is not a bundle"):
        read_bundle(tmp_path)


def test_a_self_test_the_runtime_does_not_reproduce_is_refused(bundle):
    # As if this runtime computed the model differently from the converter's.
    rewrite_manifest(bundle, lambda m: m["selftest"].update(expected=[row[::-1] for row in m["selftest"]["expected"]]))

    with pytest.raises(BinbotError, match="self-test failed: input 0 gives probabilities .* away from what the converter saw"):
        load_bundle(bundle)


@pytest.mark.parametrize("mode", MODES)
def test_selftest_reproduces_with_other_threads_and_with_reference_kernels(small_cnn_bundles, mode):
    loaded = load_bundle(small_cnn_bundles[mode], threads=1)
    with np.load(small_cnn_bundles[mode] / SELFTEST) as archive:
        inputs = archive["inputs"]
    expected, tolerance = loaded.bundle.selftest_expected, loaded.bundle.selftest_tolerance

    two_threads = Classifier(small_cnn_bundles[mode] / MODEL, threads=2)
    assert np.abs(np.stack([two_threads.classify(x) for x in inputs]) - expected).max() <= tolerance
    # TFLite's plain reference kernels round differently from XNNPACK, as another device's might.
    assert np.abs(reference_kernel_probabilities(small_cnn_bundles[mode] / MODEL, inputs) - expected).max() <= tolerance


def reference_kernel_probabilities(model_path, frames):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(model_path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    source, result = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for frame in frames:
        interpreter.set_tensor(source["index"], frame[np.newaxis].astype(source["dtype"]))
        interpreter.invoke()
        scores = interpreter.get_tensor(result["index"])[0].astype(np.float32)
        scale, zero_point = result["quantization"]
        rows.append((scores - zero_point) * scale if scale else scores)
    return np.stack(rows)


def test_classifier_refuses_a_frame_of_the_wrong_size_or_type(small_cnn_bundles):
    classifier = Classifier(small_cnn_bundles["int8"] / MODEL, threads=1)
    frame = np.zeros((classifier.height, classifier.width, 3), np.uint8)

    assert classifier.classify(frame).shape == (classifier.n_classes,)
    with pytest.raises(ValueError, match="takes RGB uint8 frames of shape"):
        classifier.classify(np.zeros((classifier.height + 1, classifier.width, 3), np.uint8))
    with pytest.raises(ValueError, match="got float32"):
        classifier.classify(frame.astype(np.float32))


def test_probabilities_are_dequantized(small_cnn_bundles):
    classifier = Classifier(small_cnn_bundles["int8"] / MODEL, threads=1)
    frame = np.random.default_rng(0).integers(0, 256, (classifier.height, classifier.width, 3), dtype=np.uint8)

    probabilities = classifier.classify(frame)

    assert probabilities.dtype == np.float32
    assert probabilities.sum() == pytest.approx(1.0, abs=classifier.n_classes * classifier.output.scale)


def test_a_file_that_is_not_a_tflite_model_is_a_clear_error(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"\x00" * 64)

    with pytest.raises(BinbotError, match="model.tflite: not a TFLite model this runtime can run"):
        Classifier(path)


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_runtime_falls_back_to_tensorflow_with_a_warning(small_cnn_bundles, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)

    loaded = load_bundle(small_cnn_bundles["int8"], threads=1)  # the self-test passes on TensorFlow's interpreter

    assert loaded.classifier.runtime.startswith("tensorflow")
    assert capsys.readouterr().err.count("install ai-edge-litert") == 1


def test_without_any_runtime_the_error_says_what_to_install(monkeypatch):
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow"):
        monkeypatch.setitem(sys.modules, module, None)

    with pytest.raises(BinbotError, match="no TFLite runtime is installed: pip install ai-edge-litert"):
        runtime.interpreter_class()


def test_inspect_describes_and_verifies_a_bundle(small_cnn_bundles, capsys):
    assert main(["bundle", "inspect", str(small_cnn_bundles["int8"])]) == 0

    printed = capsys.readouterr().out
    manifest = read_bundle(small_cnn_bundles["int8"]).manifest
    assert f"id {manifest['id']}" in printed
    assert "3: bottle, can, paper" in printed
    assert "tensor uint8 (scale 1, zero point 0)" in printed
    assert manifest["files"][MODEL]["sha256"] in printed
    assert f"tensorflow {manifest['tools']['tensorflow']}" in printed
    assert "self-test: 4 inputs reproduce" in printed and "verifies; ready to serve" in printed


def test_inspect_exits_non_zero_on_a_bundle_that_does_not_verify(bundle, capsys):
    (bundle / "labels.txt").write_text("bottle\ncan\n")

    assert main(["bundle", "inspect", str(bundle)]) == 1
    assert "binbot bundle: error: " in capsys.readouterr().err


def test_inspect_runs_where_tensorflow_is_not_installed(small_cnn_bundles):
    result = run_without_tensorflow(
        f"import sys\nfrom binbot.cli import main\nsys.exit(main(['bundle', 'inspect', {str(small_cnn_bundles['float16'])!r}]))"
    )

    assert result.returncode == 0, result.stderr
    assert "verifies; ready to serve" in result.stdout and "on ai-edge-litert" in result.stdout


def test_a_bundle_of_the_older_resize_policy_is_classified_with_its_own_resize(bundle, tmp_path):
    import cv2

    from binbot.device.frames import read_rgb, resize_to_input

    rewrite_manifest(bundle, lambda m: m["input"].update(resize_policy="stretch-area"))
    noise = np.random.default_rng(0)
    images = [tmp_path / f"noise{n}.png" for n in range(4)]
    for path in images:  # noise at a camera size: where the two resizes round differently
        cv2.imwrite(str(path), noise.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    loaded = load_bundle(bundle)
    height, width = loaded.classifier.height, loaded.classifier.width
    old = {str(p): resize_to_input(read_rgb(p), height, width, "stretch-area") for p in images}
    new = {str(p): resize_to_input(read_rgb(p), height, width) for p in images}
    assert any((old[p] != new[p]).any() for p in old)  # the two policies differ on these photos

    assert main(["classify", str(bundle), *map(str, images), "--json", str(tmp_path / "out.json"), "--top-k", "3"]) == 0

    for result in json.loads((tmp_path / "out.json").read_text())["results"]:
        expected = loaded.classifier.classify(old[result["image"]])
        assert [t["p"] for t in result["top"]] == sorted((round(float(p), 4) for p in expected), reverse=True)
