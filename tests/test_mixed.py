"""Mixed int8: when full int8 loses too much, `binbot convert` keeps the layers whose rounding costs most in
float, says which and why, and the device serves the result like any int8 bundle."""

import json
import shutil

import numpy as np
import pytest

from binbot.cli import main
from binbot.convert import mixed, tflite
from binbot.convert.checkpoint import load_checkpoint, load_for_conversion
from binbot.device.bundle import MANIFEST, MODEL, load_bundle, manifest_checksum, read_bundle
from binbot.errors import BinbotError
from helpers import convert, leftovers, split_images

DEAD = 0  # the depthwise channel that never passes its ReLU6


@pytest.fixture(scope="module")
def sensitive_run(small_cnn_run, tmp_path_factory):
    """The small CNN with one layer made sensitive to int8 on purpose: its 1x1 convolution.

    Each of its output channels gets one huge weight on an input channel that is always 0. In
    float that weight multiplies 0 and changes nothing; in int8 it sets the channel's rounding step,
    so every other weight of the channel rounds to 0 and the layer outputs its bias whatever the image.
    """
    from keras import layers

    run = tmp_path_factory.mktemp("runs") / "sensitive"
    run.mkdir()
    for name in ("labels.txt", "split.json"):
        shutil.copy(small_cnn_run / name, run / name)
    model = load_checkpoint(small_cnn_run / "model.keras")
    depthwise = next(layer for layer in model.layers if isinstance(layer, layers.DepthwiseConv2D))
    pointwise = next(layer for layer in model.layers[model.layers.index(depthwise):]
                     if isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.DepthwiseConv2D))
    kernel, bias = depthwise.get_weights()
    bias[DEAD] = -100.0
    depthwise.set_weights([kernel, bias])
    kernel, bias = pointwise.get_weights()
    kernel[0, 0, DEAD, :] = 1000 * np.abs(kernel).max()
    pointwise.set_weights([kernel, bias])
    model.save(run / "model.keras")
    return run


@pytest.fixture(scope="module")
def graph_layers(sensitive_run):
    """The layers with weights of the sensitive model's converted graph, in graph order."""
    checkpoint = load_for_conversion(sensitive_run / "model.keras")
    frames, _ = split_images(sensitive_run, "train")
    with checkpoint.saved_model() as saved_model:
        calibrated = tflite.calibrate(saved_model, tflite.with_full_pixel_range(frames))
    return mixed.weighted_layers(calibrated)


@pytest.fixture(scope="module")
def sensitive_layer(graph_layers):
    """The 1x1 convolution made sensitive: stem convolution, depthwise, this one, dense."""
    assert [layer.op for layer in graph_layers] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    return graph_layers[2]


@pytest.fixture(scope="module")
def mixed_bundle(sensitive_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "mixed"
    assert convert(sensitive_run / "model.keras", "--out", out) == 0
    return out


def test_full_int8_of_the_sensitive_model_loses_far_more_than_the_gate(sensitive_run, tmp_path, capsys):
    """The positive control: without mixed int8 this model is refused, as every model was before it."""
    out = tmp_path / "bundle"

    assert convert(sensitive_run / "model.keras", "--out", out, "--no-mixed") == 1

    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no bundle written" in error[0]
    drop = float(error[0].split("accuracy is ")[1].split(" points below")[0])
    assert drop > 10  # the 1x1 convolution outputs its bias whatever the image: the classes collapse
    assert not out.exists() and leftovers(tmp_path) == []


def test_default_convert_keeps_the_sensitive_layer_in_float_and_stays_within_the_gate(mixed_bundle, sensitive_layer,
                                                                                       sensitive_run):
    manifest = read_bundle(mixed_bundle).manifest
    quantization, validation = manifest["quantization"], manifest["validation"]

    assert [layer["name"] for layer in quantization["float_layers"]] == [sensitive_layer.name]
    assert quantization["float_layers"][0]["tensor"] == sensitive_layer.tensor
    assert quantization["float_layers"][0]["op"] == "CONV_2D"
    assert quantization["float_layers_chosen"] == "automatic"
    assert quantization["full_int8_drop_points"] > 10
    assert validation["accuracy_drop_points"] <= 1.0 and not validation["drop_allowed"]
    # Its largest rounding error by far: the reason it was chosen.
    assert quantization["float_layers"][0]["rounding_error"] > 10
    # The model really computes that layer in float, and only that one.
    operators = tflite.operators((mixed_bundle / MODEL).read_bytes())
    assert [(op, tensor) for op, tensor, floating in operators if floating and op not in tflite.CONVERSION_OPS] \
        == [("CONV_2D", sensitive_layer.tensor)]
    # It reproduces the checkpoint: the figures recorded can be recomputed.
    frames, labels = split_images(sensitive_run, "validation")
    keras_top1 = load_checkpoint(sensitive_run / "model.keras").predict(frames.astype(np.float32), verbose=0).argmax(1)
    classifier = load_bundle(mixed_bundle, threads=1).classifier
    tflite_top1 = np.array([classifier.classify(frame).argmax() for frame in frames])
    assert validation["tflite_accuracy"] == pytest.approx((tflite_top1 == labels).mean())
    assert validation["agreement"] == pytest.approx((keras_top1 == tflite_top1).mean())


def test_convert_prints_the_search(sensitive_run, sensitive_layer, tmp_path, capsys):
    assert convert(sensitive_run / "model.keras", "--out", tmp_path / "bundle") == 0

    printed = capsys.readouterr().out
    assert "more than --max-drop 1.0; measuring the rounding error of its 4 layers with weights" in printed
    assert f"with 1 layer in float (+ {sensitive_layer.name}): accuracy drop 0.00 points" in printed
    assert "tflite int8, 1 layer in float" in printed


def test_the_device_serves_a_mixed_bundle_as_any_int8_bundle(mixed_bundle, sensitive_layer):
    loaded = load_bundle(mixed_bundle, threads=1)

    assert loaded.bundle.mode == "int8"
    assert loaded.bundle.float_layers == (sensitive_layer.name,)
    assert loaded.classifier.input.dtype == np.uint8 and loaded.classifier.input.is_identity
    assert loaded.classifier.output.dtype == np.uint8
    assert loaded.selftest_difference <= loaded.bundle.selftest_tolerance
    frame = np.random.default_rng(0).integers(0, 256, (loaded.classifier.height, loaded.classifier.width, 3), np.uint8)
    assert loaded.classifier.classify(frame).sum() == pytest.approx(1.0, abs=0.02)


def test_inspect_says_which_layers_run_in_float_and_why(mixed_bundle, sensitive_layer, capsys):
    assert main(["bundle", "inspect", str(mixed_bundle)]) == 0

    printed = capsys.readouterr().out
    full_drop = read_bundle(mixed_bundle).manifest["quantization"]["full_int8_drop_points"]
    assert (f"mode         int8, 1 layer in float (chosen automatically: full int8 lost {full_drop:.2f} points, "
            "more than --max-drop 1.0") in printed
    assert f"float layers {sensitive_layer.name} (CONV_2D, rounding error " in printed
    assert "(int8 but for 1 layer in float)" in printed and "verifies; ready to serve" in printed


def test_float_layers_by_hand_give_the_same_model(sensitive_run, mixed_bundle, sensitive_layer, tmp_path):
    out = tmp_path / "bundle"

    assert convert(sensitive_run / "model.keras", "--out", out, "--float-layers", sensitive_layer.name) == 0

    quantization = read_bundle(out).manifest["quantization"]
    assert [layer["name"] for layer in quantization["float_layers"]] == [sensitive_layer.name]
    assert quantization["float_layers_chosen"] == "by hand"
    assert quantization["full_int8_drop_points"] is None  # not measured: no search
    assert read_bundle(out).id == read_bundle(mixed_bundle).id  # the same model bytes, the same labels


def test_float_layers_by_hand_can_name_any_layer_and_the_gate_still_applies(sensitive_run, graph_layers, tmp_path,
                                                                             capsys):
    others = [graph_layers[0].name, graph_layers[1].name]  # the stem and depthwise convolutions, not the sensitive one
    out = tmp_path / "bundle"

    assert convert(sensitive_run / "model.keras", "--out", out, "--float-layers", ",".join(others)) == 1

    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no bundle written" in error[0]  # the sensitive layer is still int8

    assert convert(sensitive_run / "model.keras", "--out", out, "--float-layers", ",".join(others), "--allow-drop") == 0
    manifest = read_bundle(out).manifest
    assert [layer["name"] for layer in manifest["quantization"]["float_layers"]] == others
    assert manifest["validation"]["drop_allowed"] is True
    floating = [tensor for op, tensor, floating in tflite.operators((out / MODEL).read_bytes())
                if floating and op not in tflite.CONVERSION_OPS]
    assert floating == [layer.tensor for layer in graph_layers if layer.name in others]


def test_a_model_that_cannot_meet_the_gate_even_mixed_is_refused_with_the_figures(sensitive_run, tmp_path, capsys):
    out = tmp_path / "bundle"

    # No conversion can gain 100 points: every layer is tried in float, and none is enough.
    assert convert(sensitive_run / "model.keras", "--out", out, "--max-drop", "-100") == 1

    captured = capsys.readouterr()
    error = captured.err.strip().splitlines()
    assert len(error) == 1
    assert "more than --max-drop -100.0; keeping up to 4 layers in float" in error[0]
    assert "did not bring it within (at best " in error[0] and "no bundle written" in error[0]
    assert "with 4 layers in float" in captured.out
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("arguments, message", [
    (["--float-layers", "no_such_layer"], "--float-layers: this model has no layer with weights named 'no_such_layer'; "
                                          "its 4 are named like "),
    (["--float-layers", "a,,b"], "--float-layers: expected layer names separated by commas, got 'a,,b'"),
    (["--float-layers", "x", "--no-mixed"], "--float-layers and --no-mixed contradict each other"),
    (["--float-layers", "x", "--mode", "float16"], "--float-layers and --no-mixed apply to --mode int8 only, not float16"),
])
def test_float_layer_options_that_cannot_work_are_one_line_errors(sensitive_run, graph_layers, tmp_path, capsys,
                                                                  arguments, message):
    out = tmp_path / "bundle"

    assert convert(sensitive_run / "model.keras", "--out", out, *arguments) == 1

    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("binbot convert: error: ")
    assert message in error[0], error[0]
    if "no_such_layer" in arguments:
        assert all(layer.name in error[0] for layer in graph_layers)  # the names it does have
    assert not out.exists()


def test_the_int8_check_accepts_exactly_the_declared_float_layers(mixed_bundle, sensitive_layer, graph_layers):
    model = (mixed_bundle / MODEL).read_bytes()

    tflite.check_int8(model, "mixed", [sensitive_layer.tensor])
    with pytest.raises(BinbotError, match="still has floating-point operators"):
        tflite.check_int8(model, "mixed")  # as if it claimed to be int8 throughout
    with pytest.raises(BinbotError, match="computes in float where it should not.*CONV_2D"):
        tflite.check_int8(model, "mixed", [graph_layers[0].tensor])
    with pytest.raises(BinbotError, match="the layers meant to stay in float were quantized all the same"):
        tflite.check_int8(model, "mixed", [sensitive_layer.tensor, graph_layers[0].tensor])


def test_layer_names_come_from_the_kernel_part_of_a_fused_name():
    assert mixed.layer_name("m_1/base_1/Conv1_relu_1/Relu6;m_1/base_1/Conv1_1/convolution") == "Conv1_1"
    assert mixed.layer_name("m_1/base_1/block_1_depthwise_relu_1/Relu6;m_1/base_1/block_1_depthwise_BN_1/batchnorm/mul_1;"
                            "m_1/base_1/block_1_depthwise_1/depthwise;;m_1/base_1/block_1_pad_1/Pad1") == "block_1_depthwise_1"
    assert mixed.layer_name("m_1/base_1/expanded_conv_project_1/convolution1") == "expanded_conv_project_1"
    assert mixed.layer_name("m_1/scores_1/MatMul;m_1/scores_1/BiasAdd") == "scores_1"
    assert mixed.layer_name("StatefulPartitionedCall_1:0") == "StatefulPartitionedCall_1:0"  # no kernel part: as it is


def test_a_bundle_made_before_mixed_int8_has_no_float_layers(small_cnn_bundles, tmp_path):
    bundle = shutil.copytree(small_cnn_bundles["int8"], tmp_path / "old")
    manifest = json.loads((bundle / MANIFEST).read_text())
    for key in ("float_layers", "float_layers_chosen", "full_int8_drop_points"):
        manifest["quantization"].pop(key, None)
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))

    assert load_bundle(bundle, threads=1).bundle.float_layers == ()
    assert main(["bundle", "inspect", str(bundle)]) == 0


def test_a_full_int8_bundle_records_that_no_layer_runs_in_float(small_cnn_bundles):
    quantization = read_bundle(small_cnn_bundles["int8"]).manifest["quantization"]

    assert quantization["float_layers"] == [] and quantization["float_layers_chosen"] is None
    assert quantization["full_int8_drop_points"] <= 1.0
    assert tflite.float_ops((small_cnn_bundles["int8"] / MODEL).read_bytes()) == []


def test_malformed_float_layers_are_refused(small_cnn_bundles, tmp_path):
    bundle = shutil.copytree(small_cnn_bundles["int8"], tmp_path / "forged")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["quantization"]["float_layers"] = ["Conv1_1"]
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))

    with pytest.raises(BinbotError, match=r"bundle.json: quantization.float_layers should be a list of"):
        read_bundle(bundle)
