"""int8 with, when rounding costs too much accuracy, the fewest layers that matter kept in float.

Full int8 first. If it loses more than --max-drop, TFLite's quantization debugger measures each
layer's rounding error on calibration images, and the layers are kept in float one more at a time,
largest error first, each model validated, until one is within --max-drop. Only layers with
weights are candidates: rounding weights is what costs accuracy, while rounding activations costs
next to nothing (benchmarks/INT8_SENSITIVITY.md). Input and output stay uint8, so the device
feeds the same pixels and reads the same probabilities as from a full int8 model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from binbot.convert import tflite
from binbot.convert.validation import Validation, within
from binbot.errors import BinbotError

MAX_FLOAT_LAYERS = 8  # past a few layers, float16 or dynamic mode is the better trade
RANKING_IMAGES = 100  # the debugger runs each layer twice per image: about 15 s for a MobileNetV2 at 224x224
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")
# The last part of a kernel's name in an exported graph: the part of a fused operator's name that names its layer.
KERNEL_OPS = ("convolution", "depthwise", "Conv2D", "DepthwiseConv2dNative", "MatMul", "BiasAdd", "conv2d_transpose")

# A model's accuracy figures and its probabilities on the validation images.
Validate = Callable[[bytes], tuple[Validation, np.ndarray]]


@dataclass(frozen=True)
class FloatLayer:
    """A layer with weights of the converted graph, by the name its operator's output tensor gives it."""

    name: str
    op: str
    tensor: str  # the operator's output tensor: what the quantizer is told to leave in float
    rounding_error: float | None = None  # RMSE in steps of its output's scale, when measured

    def as_json(self) -> dict:
        error = None if self.rounding_error is None else round(self.rounding_error, 4)
        return {"name": self.name, "op": self.op, "tensor": self.tensor, "rounding_error": error}


@dataclass
class Int8Model:
    """The int8 model chosen, its validation, and which of its layers run in float and why."""

    model: bytes
    validation: Validation
    probabilities: np.ndarray
    float_layers: list[FloatLayer] = field(default_factory=list)
    chosen: str | None = None  # "automatic" or "by hand"; None when integer throughout
    full_int8_drop: float | None = None  # the full int8 model's drop, when it was measured
    note: str = ""  # what keeping layers in float achieved, when it was not enough

    @property
    def kind(self) -> str:
        """The mode as the converter prints it: int8, or int8 with how many layers in float."""
        return f"int8, {_count(self.float_layers)} in float" if self.float_layers else "int8"

    def as_json(self) -> dict:
        """bundle.json's record of the float layers, beside quantization.mode."""
        return {
            "float_layers": [layer.as_json() for layer in self.float_layers],
            "float_layers_chosen": self.chosen,
            "full_int8_drop_points": None if self.full_int8_drop is None else round(self.full_int8_drop, 4),
        }


def convert_int8(saved_model: Path, calibration: np.ndarray, validate: Validate, max_drop: float, name: str,
                 float_layer_names: list[str] | None = None, mixed: bool = True) -> Int8Model:
    """The int8 model: with float_layer_names, exactly those layers in float; else full int8, or, if it
    drops more than max_drop and mixed allows, the fewest layers in float that bring it within."""
    calibrated = tflite.calibrate(saved_model, calibration)
    layers = weighted_layers(calibrated)
    if float_layer_names is not None:
        chosen = by_name(layers, float_layer_names)
        print(f"keeping {_count(chosen)} in float, chosen by hand: {', '.join(layer.name for layer in chosen)}")
        return _attempt(calibrated, chosen, validate, name, "by hand")
    full = _attempt(calibrated, [], validate, name)
    full.full_int8_drop = full.validation.drop_points
    if within(full.validation, max_drop) or not mixed:
        return full
    return _fewest_float_layers(calibrated, layers, calibration[:RANKING_IMAGES], full, validate, max_drop, name)


def _fewest_float_layers(calibrated: bytes, layers: list[FloatLayer], images: np.ndarray, full: Int8Model,
                         validate: Validate, max_drop: float, name: str) -> Int8Model:
    """The first model within max_drop with 1, 2, ... layers in float, largest rounding error first;
    else the full int8 model, with a note of how close the mixed ones came."""
    print(f"full int8: accuracy drop {full.full_int8_drop:.2f} points, more than --max-drop {max_drop}; measuring "
          f"the rounding error of its {len(layers)} layers with weights on {len(images)} calibration images")
    candidates = rank(calibrated, layers, images)[:MAX_FLOAT_LAYERS]
    print("  largest rounding errors (RMSE in output steps; rounding alone gives 0.29): "
          + ", ".join(f"{layer.name} {layer.rounding_error:.2f}" for layer in candidates))
    drops = []
    for count in range(1, len(candidates) + 1):
        attempt = _attempt(calibrated, candidates[:count], validate, name, "automatic")
        attempt.full_int8_drop = full.full_int8_drop
        drops.append(attempt.validation.drop_points)
        print(f"  with {_count(candidates[:count])} in float (+ {candidates[count - 1].name}): "
              f"accuracy drop {drops[-1]:.2f} points")
        if within(attempt.validation, max_drop):
            print(f"  within --max-drop {max_drop}: keeping {_count(attempt.float_layers)} in float")
            return attempt
    full.note = (f"; keeping up to {_count(candidates)} in float (those with the largest rounding error) "
                 f"did not bring it within (at best {min(drops):.2f} points)" if drops else "")
    return full


def weighted_layers(calibrated: bytes) -> list[FloatLayer]:
    """The layers with weights a model could keep in float, in graph order, each with a unique name."""
    ops = [(op, tensor) for op, tensor, _ in tflite.operators(calibrated) if op in WEIGHTED_OPS]
    names = [layer_name(tensor) for _, tensor in ops]
    return [FloatLayer(name if names.count(name) == 1 else tensor, op, tensor) for (op, tensor), name in zip(ops, names)]


def layer_name(tensor: str) -> str:
    """The layer a fused operator's output tensor comes from: the scope of its kernel's part, as
    "Conv1_1" in "model_1/Conv1_relu_1/Relu6;model_1/Conv1_1/convolution" (the export adds "_1")."""
    for part in tensor.split(";"):
        scopes = part.split("/")
        if len(scopes) > 1 and scopes[-1].rstrip("0123456789").rstrip("_") in KERNEL_OPS:
            return scopes[-2]
    return tensor


def rank(calibrated: bytes, layers: list[FloatLayer], images: np.ndarray) -> list[FloatLayer]:
    """The layers with their rounding error on images, largest first."""
    errors = tflite.rounding_errors(calibrated, images)
    measured = [FloatLayer(layer.name, layer.op, layer.tensor, errors[layer.tensor])
                for layer in layers if layer.tensor in errors]
    return sorted(measured, key=lambda layer: -layer.rounding_error)


def by_name(layers: list[FloatLayer], names: list[str]) -> list[FloatLayer]:
    """The layers named (by name or output tensor), in graph order; refuses a name the model lacks."""
    known = {layer.name: layer for layer in layers} | {layer.tensor: layer for layer in layers}
    unknown = [name for name in names if name not in known]
    if unknown:
        examples = ", ".join(layer.name for layer in layers[:6])
        raise BinbotError(
            f"--float-layers: this model has no layer with weights named {unknown[0]!r}; its {len(layers)} are named "
            f"like {examples}{', ...' if len(layers) > 6 else ''} (a full int8 conversion that drops too much lists "
            "those with the largest rounding error)"
        )
    picked = {known[name] for name in names}
    return [layer for layer in layers if layer in picked]


def _attempt(calibrated: bytes, float_layers: list[FloatLayer], validate: Validate, name: str,
             chosen: str | None = None) -> Int8Model:
    model = tflite.quantize(calibrated, [layer.tensor for layer in float_layers])
    tflite.check_int8(model, name, [layer.tensor for layer in float_layers])
    validation, probabilities = validate(model)
    return Int8Model(model, validation, probabilities, float_layers, chosen if float_layers else None)


def _count(layers: list) -> str:
    return f"{len(layers)} layer{'' if len(layers) == 1 else 's'}"
