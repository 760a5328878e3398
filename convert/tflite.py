"""SavedModel to .tflite in one of four modes, and the checks an int8 model must pass.

int8 is made in two steps, as TFLite's quantization debugger makes it: calibrate once (the float
model with the value ranges seen on calibration images), then quantize, possibly several times
with different layers left in float ("mixed int8", see mixed.py).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from binbot.device.runtime import Classifier
from binbot.quiet import native_stderr_hidden
from binbot.errors import BinbotError

FLOAT_TYPES = (np.float16, np.float32, np.float64)
# Operators that only move a tensor between float and integer: a mixed model has them around its float layers.
CONVERSION_OPS = ("QUANTIZE", "DEQUANTIZE")


def convert(saved_model: Path, mode: str, calibration: np.ndarray | None = None) -> bytes:
    """The .tflite bytes of a SavedModel; int8 needs calibration images (n, h, w, 3) uint8."""
    if mode == "int8":
        return quantize(calibrate(saved_model, calibration))
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if mode == "float32":
        pass
    elif mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    else:
        raise BinbotError(f"unknown mode {mode!r}; choose int8, float16, dynamic or float32")
    return _run(converter.convert, f"{saved_model}: the TFLite converter failed in {mode} mode")


def calibrate(saved_model: Path, calibration: np.ndarray | None) -> bytes:
    """The float .tflite model carrying the value ranges calibration images (n, h, w, 3) uint8 gave, to quantize."""
    if calibration is None or not len(calibration):
        raise BinbotError("int8 conversion needs calibration images")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: _representative(calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    # What QuantizationDebugger sets: stop after calibration, so the quantization can be repeated.
    converter._experimental_calibrate_only = True
    return _run(converter.convert, f"{saved_model}: the TFLite converter failed in int8 mode")


def quantize(calibrated: bytes, float_layers: Sequence[str] = ()) -> bytes:
    """The int8 model, uint8 pixels in and uint8 probabilities out, with the operators whose output
    tensors are named in float_layers left in float."""
    # The converter's own last step (TFLiteConverter._quantize), with QuantizationDebugger's denylist.
    from tensorflow.lite.python.convert import mlir_quantize

    return _run(lambda: mlir_quantize(calibrated, input_data_type=tf.uint8, output_data_type=tf.uint8,
                                      denylisted_nodes=list(float_layers) or None),
                "the TFLite quantizer failed in int8 mode")


def rounding_errors(calibrated: bytes, images: np.ndarray) -> dict[str, float]:
    """Each quantized operator's error on images, by output tensor name, in steps of its output's scale.

    QuantizationDebugger runs each operator in float beside its int8 version, on the int8 model's
    own input to it, and measures the difference: the scale-normalised RMSE of TensorFlow's
    quantization-debugger guide. Rounding alone gives about 0.29 (a uniform error over one step).
    """
    from tensorflow.lite.python.convert import mlir_quantize

    debug_model = _run(lambda: mlir_quantize(calibrated, enable_numeric_verify=True),
                       "the TFLite quantizer failed to build the debug model")
    with warnings.catch_warnings(), native_stderr_hidden():
        warnings.simplefilter("ignore")  # the debugger runs tf.lite.Interpreter, which warns it is deprecated
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model,
            debug_dataset=lambda: ([image[np.newaxis].astype(np.float32)] for image in images))
        debugger.run()
    table = io.StringIO()
    debugger.layer_statistics_dump(table)
    table.seek(0)
    return {row["tensor_name"]: math.sqrt(float(row["mean_squared_error"])) / float(row["scale"])
            for row in csv.DictReader(table) if float(row["scale"]) > 0}


def with_full_pixel_range(images: np.ndarray) -> np.ndarray:
    """A copy of the calibration images in which one pixel is 0 and one is 255.

    The uint8 input tensor's scale and zero point come from the range calibration saw;
    only a range of exactly 0..255 makes them 1 and 0, so the device feeds pixels as they are.
    """
    images = images.copy()
    images[0, 0, 0] = 0
    images[0, 0, 1] = 255
    return images


def operators(model: bytes) -> list[tuple[str, str, bool]]:
    """(operator, output tensor name, takes or gives a floating-point tensor) for each operator in order."""
    # Without delegates the interpreter lists the model's own operators, not a delegate's fused node.
    interpreter = Interpreter(
        model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    names = {tensor["index"]: tensor["name"] for tensor in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():  # the only per-operator listing the interpreters offer
        types = list(op.get("operand_types", [])) + list(op.get("result_types", []))
        found.append((op["op_name"], names.get(op["outputs"][0], ""), any(np.dtype(t) in FLOAT_TYPES for t in types)))
    return found


def float_ops(model: bytes) -> list[str]:
    """Names of the operators that take or give a floating-point tensor, each once."""
    found = []
    for op, _, floating in operators(model):
        if floating and op not in found:
            found.append(op)
    return found


def check_int8(model: bytes, name: str, float_layers: Sequence[str] = ()) -> None:
    """Refuse an int8 model that is not integer throughout but for exactly the float_layers it was
    given (output tensor names), or whose input is not raw uint8 pixels, or output not uint8."""
    floats = float_ops(model)
    if floats and not float_layers:
        raise BinbotError(
            f"{name}: the int8 model still has floating-point operators ({', '.join(floats)}); "
            "the checkpoint uses a layer TFLite cannot quantize; try --mode dynamic or float16"
        )
    computing_in_float = [(op, tensor) for op, tensor, floating in operators(model)
                          if floating and op not in CONVERSION_OPS]
    unexpected = [f"{op} {tensor}" for op, tensor in computing_in_float if tensor not in float_layers]
    if unexpected:
        raise BinbotError(
            f"{name}: the int8 model computes in float where it should not ({'; '.join(unexpected)}); "
            "the checkpoint uses a layer TFLite cannot quantize; try --mode dynamic or float16"
        )
    missing = sorted(set(float_layers) - {tensor for _, tensor in computing_in_float})
    if missing:
        raise BinbotError(f"{name}: the layers meant to stay in float were quantized all the same ({'; '.join(missing)}); "
                          "this TensorFlow's quantizer ignores the request: convert with --no-mixed, or another --mode")
    classifier = Classifier(model, threads=1, name=name)
    if not classifier.input.is_identity:
        raise BinbotError(
            f"{name}: the int8 model's input is {classifier.input.as_json()}, not uint8 pixels as they are "
            "(scale 1, zero point 0); the calibration images did not span 0..255"
        )
    if classifier.output.dtype != np.uint8:
        raise BinbotError(f"{name}: the int8 model's output is {classifier.output.dtype}, expected uint8")


def _run(step: Callable[[], bytes], failure: str) -> bytes:
    try:
        with native_stderr_hidden():  # the MLIR quantizer prints its settings to stderr
            return step()
    except Exception as error:  # the converter raises ConverterError and plain Exceptions alike
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BinbotError(f"{failure} ({reason})") from error


def _representative(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    for image in images:
        yield [image[np.newaxis].astype(np.float32)]
