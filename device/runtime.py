"""A TFLite model in an interpreter, classifying RGB frames into probabilities.

One interpreter per model for its whole life: its tensors are allocated once and
reused frame after frame, so classifying allocates nothing that need not be.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from binbot import quiet
from binbot.errors import BinbotError


def interpreter_class() -> type:
    """The best TFLite interpreter installed: LiteRT's, then tflite-runtime's, then TensorFlow's."""
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(module).Interpreter
        except ImportError:
            continue
    try:
        import tensorflow as tf  # a last resort: the device side is meant to run without TensorFlow
    except ImportError:
        raise BinbotError("no TFLite runtime is installed: pip install ai-edge-litert (or binbot[device])") from None
    print(
        "warning: neither ai-edge-litert nor tflite-runtime is installed, so TensorFlow's own interpreter runs "
        "the model; install ai-edge-litert for the runtime the device uses",
        file=sys.stderr,
    )
    return tf.lite.Interpreter


def runtime_name(interpreter: object) -> str:
    """The package whose interpreter this is, with its version, for logs and reports."""
    package = type(interpreter).__module__.split(".")[0]
    distribution = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(package, package)
    try:
        return f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


def load_interpreter(model: str | Path | bytes, threads: int = 2, name: str | None = None,
                     reference_kernels: bool = False):
    """An interpreter with its tensors allocated; model is a .tflite path or its bytes.

    reference_kernels runs TFLite's plain reference kernels instead of the optimised ones
    (XNNPACK): far slower, but they round differently, which shows how much results depend on it.
    """
    if threads < 1:
        raise BinbotError(f"threads must be at least 1, got {threads}")
    interpreter_type = interpreter_class()
    name = name or (str(model) if not isinstance(model, bytes) else "model")
    options = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    if reference_kernels:
        resolver = sys.modules[interpreter_type.__module__].OpResolverType
        options["experimental_op_resolver_type"] = resolver.BUILTIN_REF
    try:
        with quiet.tflite_info_hidden():  # the first allocation announces the XNNPACK delegate on fd 2
            interpreter = interpreter_type(**options, num_threads=threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if interpreter_type.__module__.startswith("tflite_runtime"):
            # tflite-runtime stopped at TensorFlow 2.14 and has no newer op versions or kernels.
            reason += "; tflite-runtime lacks the newer op versions bundles may need: pip install ai-edge-litert"
        raise BinbotError(f"{name}: not a TFLite model this runtime can run ({reason})") from error
    return interpreter


@dataclass(frozen=True)
class TensorQuantization:
    """real = scale * (q - zero_point); scale 0 means the tensor is float and not quantized."""

    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    @property
    def is_identity(self) -> bool:
        """True when a pixel's quantized value is the pixel itself, as in BinBot's int8 bundles."""
        return self.dtype == np.uint8 and self.scale == 1.0 and self.zero_point == 0

    def as_json(self) -> dict:
        return {"dtype": self.dtype.name, "scale": self.scale, "zero_point": self.zero_point}


def _quantization(details: dict) -> TensorQuantization:
    scale, zero_point = details["quantization"]
    return TensorQuantization(np.dtype(details["dtype"]), float(scale), int(zero_point))


class Classifier:
    """Classifies RGB uint8 frames already at the model's input size into class probabilities."""

    def __init__(self, model: str | Path | bytes, threads: int = 2, name: str | None = None,
                 reference_kernels: bool = False):
        self.name = name or (str(model) if not isinstance(model, bytes) else "model")
        self.threads = threads
        self.interpreter = load_interpreter(model, threads, self.name, reference_kernels)
        self.runtime = runtime_name(self.interpreter)
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise BinbotError(f"{self.name}: has {len(inputs)} inputs and {len(outputs)} outputs; a classifier has one each")
        shape, out_shape = tuple(int(n) for n in inputs[0]["shape"]), tuple(int(n) for n in outputs[0]["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise BinbotError(f"{self.name}: takes input of shape {shape}, not one RGB image (1, height, width, 3)")
        if len(out_shape) != 2 or out_shape[0] != 1:
            raise BinbotError(f"{self.name}: gives output of shape {out_shape}, not one row of class scores")
        self.height, self.width = shape[1], shape[2]
        self.n_classes = out_shape[1]
        self.input = _quantization(inputs[0])
        self.output = _quantization(outputs[0])
        self._input_tensor = self.interpreter.tensor(inputs[0]["index"])  # a view of the interpreter's own buffer
        self._output_index = outputs[0]["index"]

    def classify(self, frame: np.ndarray) -> np.ndarray:
        """Probabilities (float32, one per class) for one RGB uint8 frame of shape (height, width, 3)."""
        self.set_input(frame)
        self.invoke()
        return self.probabilities()

    def invoke(self) -> None:
        """Run the model on the input set last (RuntimeError if the runtime fails)."""
        self.interpreter.invoke()

    def delegated_ops(self) -> tuple[int, int] | None:
        """(operators a delegate runs, operators in the model), or None if the runtime cannot tell.

        The interpreter's log line about creating the XNNPACK delegate is printed once per process,
        so it cannot say which of several models was delegated. The graph can: each DELEGATE node
        stands for the operators it replaced, which are those lying on a path from its inputs to its
        outputs. With LiteRT's default op resolver the only delegate applied is XNNPACK.
        """
        try:
            ops = self.interpreter._get_ops_details()  # not public API, but in LiteRT, tflite-runtime and tf.lite alike
        except AttributeError:
            return None
        plain = [op for op in ops if op["op_name"] != "DELEGATE"]
        covered: set[int] = set()
        for node in (op for op in ops if op["op_name"] == "DELEGATE"):
            covered |= _between(plain, set(node["inputs"]), set(node["outputs"]))
        return len(covered), len(plain)

    def set_input(self, frame: np.ndarray) -> None:
        self.check_frame(frame)
        tensor = self._input_tensor()[0]
        q = self.input
        if not q.quantized or q.is_identity:
            tensor[...] = frame  # the model does its own normalisation; a float input only widens the type
        else:  # a model from elsewhere, whose input is quantized differently
            info = np.iinfo(q.dtype)
            tensor[...] = np.clip(np.rint(frame / q.scale) + q.zero_point, info.min, info.max)

    def check_frame(self, frame: np.ndarray) -> None:
        """ValueError unless frame is an RGB uint8 array of the model's input size."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"{self.name} takes RGB uint8 frames of shape {(self.height, self.width, 3)}, "
                f"got {frame.dtype} {frame.shape}"
            )

    def input_values(self) -> np.ndarray:
        """A copy of what the input tensor holds now, as set_input left it."""
        return self._input_tensor()[0].copy()

    def probabilities(self) -> np.ndarray:
        scores = self.interpreter.get_tensor(self._output_index)[0]
        if not self.output.quantized:
            return scores.astype(np.float32)
        return (scores.astype(np.float32) - self.output.zero_point) * np.float32(self.output.scale)


def _between(ops: list[dict], inputs: set[int], outputs: set[int]) -> set[int]:
    """Indices of ops computable from inputs alone that also feed, directly or not, one of outputs."""
    known, forward = set(inputs), set()
    for op in ops:  # TFLite stores operators in execution order
        if all(t < 0 or t in known for t in op["inputs"]):
            forward.add(op["index"])
            known.update(op["outputs"])
    wanted, backward = set(outputs), set()
    for op in reversed(ops):
        if wanted.intersection(op["outputs"]):
            backward.add(op["index"])
            wanted.update(t for t in op["inputs"] if t >= 0 and t not in inputs)
    return forward & backward
