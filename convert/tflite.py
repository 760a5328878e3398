"""SavedModel to .tflite in one of four modes, and the checks an int8 model must pass."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from binbot.device.runtime import Classifier
from binbot.quiet import native_stderr_hidden
from binbot.errors import BinbotError

FLOAT_TYPES = (np.float16, np.float32, np.float64)


def convert(saved_model: Path, mode: str, calibration: np.ndarray | None = None) -> bytes:
    """The .tflite bytes of a SavedModel; int8 needs calibration images (n, h, w, 3) uint8."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if mode == "float32":
        pass
    elif mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if calibration is None or not len(calibration):
            raise BinbotError("int8 conversion needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    else:
        raise BinbotError(f"unknown mode {mode!r}; choose int8, float16, dynamic or float32")
    try:
        with native_stderr_hidden():  # the MLIR quantizer prints its settings to stderr
            return converter.convert()
    except Exception as error:  # the converter raises ConverterError and plain Exceptions alike
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BinbotError(f"{saved_model}: the TFLite converter failed in {mode} mode ({reason})") from error


def with_full_pixel_range(images: np.ndarray) -> np.ndarray:
    """A copy of the calibration images in which one pixel is 0 and one is 255.

    The uint8 input tensor's scale and zero point come from the range calibration saw;
    only a range of exactly 0..255 makes them 1 and 0, so the device feeds pixels as they are.
    """
    images = images.copy()
    images[0, 0, 0] = 0
    images[0, 0, 1] = 255
    return images


def float_ops(model: bytes) -> list[str]:
    """Names of the operators that take or give a floating-point tensor, each once."""
    # Without delegates the interpreter lists the model's own operators, not a delegate's fused node.
    interpreter = Interpreter(
        model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    found = []
    for op in interpreter._get_ops_details():  # the only per-operator listing the interpreters offer
        types = list(op.get("operand_types", [])) + list(op.get("result_types", []))
        if any(np.dtype(t) in FLOAT_TYPES for t in types) and op["op_name"] not in found:
            found.append(op["op_name"])
    return found


def check_int8(model: bytes, name: str) -> None:
    """Refuse an int8 model that is not integer throughout, or whose input is not raw uint8 pixels."""
    floats = float_ops(model)
    if floats:
        raise BinbotError(
            f"{name}: the int8 model still has floating-point operators ({', '.join(floats)}); "
            "the checkpoint uses a layer TFLite cannot quantize; try --mode dynamic or float16"
        )
    classifier = Classifier(model, threads=1, name=name)
    if not classifier.input.is_identity:
        raise BinbotError(
            f"{name}: the int8 model's input is {classifier.input.as_json()}, not uint8 pixels as they are "
            "(scale 1, zero point 0); the calibration images did not span 0..255"
        )
    if classifier.output.dtype != np.uint8:
        raise BinbotError(f"{name}: the int8 model's output is {classifier.output.dtype}, expected uint8")


def _representative(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    for image in images:
        yield [image[np.newaxis].astype(np.float32)]

