"""`binbot convert` end to end: checkpoint in, verified bundle out, or an error and nothing written."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from binbot import __version__
from binbot.convert import data, mixed, runfolder, tflite
from binbot.convert.checkpoint import Checkpoint, checkpoint_sha256, load_for_conversion
from binbot.convert.validation import Validation, check_drop, classify_all, compare, table
from binbot.device import bundle as bundle_format
from binbot.device.frames import COLOR_ORDER, RESIZE_POLICY
from binbot.device.labels import read_labels, write_labels
from binbot.device.runtime import Classifier
from binbot.errors import BinbotError
from binbot.files import build_directory, check_can_write, check_out_apart

SELFTEST_INPUTS = 4
# How far the device's probabilities may be from the converter's for the same input, at least.
# The same .tflite on another CPU or kernel set (ARM vs x86, XNNPACK vs reference kernels) rounds
# differently; a wrong runtime, colour order or input scaling misses by far more. The converter
# widens it to twice the spread it measures between two kernel sets, so a good device never refuses.
SELFTEST_TOLERANCE_FLOOR = {"float32": 1e-3, "float16": 2e-2, "dynamic": 2e-2, "int8": 2e-2}


@dataclass
class ConvertConfig:
    checkpoint: Path
    out: Path
    mode: str = "int8"
    labels: Path | None = None
    calibration_data: Path | None = None
    calibration_samples: int = 300
    eval_data: Path | None = None
    max_drop: float = 1.0
    allow_drop: bool = False
    threads: int = 2
    force: bool = False
    trust_savedmodel: bool = False
    float_layers: list[str] | None = None  # int8 only: exactly these layers in float, no search
    mixed: bool = True  # int8 only: keep the fewest layers in float that bring the drop within max_drop


def convert_checkpoint(config: ConvertConfig) -> dict:
    """Convert, validate and write the bundle; returns its bundle.json content."""
    started = time.monotonic()
    # A bundle may sit inside the run or the photo folder, but must not replace either.
    check_out_apart(config.out, {"the checkpoint": config.checkpoint, "--labels": config.labels,
                                 "--calibration-data": config.calibration_data, "--eval-data": config.eval_data},
                    inside_is_read=False)
    check_can_write(config.out, config.force)
    if config.mode not in bundle_format.MODES:
        raise BinbotError(f"mode {config.mode!r} is not one of {', '.join(bundle_format.MODES)}")
    if config.calibration_samples < 1:
        raise BinbotError(f"--calibration-samples must be at least 1, got {config.calibration_samples}")
    int8 = config.mode == "int8"
    _check_float_layer_options(config)

    checkpoint = load_for_conversion(config.checkpoint, config.trust_savedmodel)
    labels_path = config.labels or default_labels(config.checkpoint)
    class_names = read_labels(labels_path)
    if checkpoint.n_outputs != len(class_names):
        raise BinbotError(
            f"{config.checkpoint}: outputs {checkpoint.n_outputs} classes but {labels_path} lists {len(class_names)}"
        )
    calibration, evaluation = data.choose(
        config.checkpoint, class_names, config.calibration_data, config.eval_data, need_calibration=int8
    )
    size = (checkpoint.height, checkpoint.width)
    eval_images = evaluation.load(*size)
    calibration_images = None
    if int8:
        calibration = calibration.sample(config.calibration_samples)
        calibration_images = tflite.with_full_pixel_range(calibration.load(*size))
        print(f"calibrating on {len(calibration_images)} images from {calibration.origin}")
    keras_probabilities = checkpoint.predict(eval_images)
    _check_probabilities(keras_probabilities, config.checkpoint)

    print(f"converting {config.checkpoint} ({checkpoint.height}x{checkpoint.width}, {len(class_names)} classes) to {config.mode}")
    name = str(config.out / bundle_format.MODEL)

    def validate(model: bytes) -> tuple[Validation, np.ndarray]:
        probabilities = classify_all(Classifier(model, config.threads, name), eval_images)
        return compare(evaluation.origin, evaluation.labels, keras_probabilities, probabilities), probabilities

    int8_model = None
    with checkpoint.saved_model() as saved_model:
        if int8:
            int8_model = mixed.convert_int8(saved_model, calibration_images, validate, config.max_drop, name,
                                            config.float_layers, config.mixed)
            model, validation, tflite_probabilities = int8_model.model, int8_model.validation, int8_model.probabilities
        else:
            model = tflite.convert(saved_model, config.mode)
            validation, tflite_probabilities = validate(model)

    classifier = Classifier(model, config.threads, name)
    kind = int8_model.kind if int8_model else config.mode
    print(table(validation, kind))
    warning = check_drop(validation, config.max_drop, config.allow_drop, int8_model.note if int8_model else "")
    if warning:
        print(warning)

    chosen = _confident_examples(evaluation.labels, keras_probabilities, tflite_probabilities, SELFTEST_INPUTS)
    content = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "class_names": class_names,
        "input": {
            "height": checkpoint.height, "width": checkpoint.width, "channels": 3,
            "dtype": classifier.input.dtype.name, "color_order": COLOR_ORDER, "resize_policy": RESIZE_POLICY,
        },
        "quantization": {"mode": config.mode, "input": classifier.input.as_json(), "output": classifier.output.as_json(),
                         **(int8_model.as_json() if int8_model else {})},
        "source": _describe_checkpoint(checkpoint, labels_path),
        "calibration": {"data": calibration.origin, "images": len(calibration.paths)} if int8 else None,
        "validation": {**validation.as_json(), "max_drop_points": config.max_drop, "drop_allowed": warning is not None},
        "selftest": _selftest(model, name, config.mode, eval_images[chosen], tflite_probabilities[chosen],
                              [class_names[evaluation.labels[i]] for i in chosen]),
        "tools": _tool_versions(),
    }
    manifest = _write_bundle(config, model, class_names, eval_images[chosen], content)
    print(
        f"wrote {config.out}/ (bundle {manifest['id']}, {kind}, model.tflite {_size(len(model))}) "
        f"in {time.monotonic() - started:.0f} s; check it with: binbot bundle inspect {config.out}"
    )
    return manifest


def _check_float_layer_options(config: ConvertConfig) -> None:
    if config.mode != "int8" and (config.float_layers is not None or not config.mixed):
        raise BinbotError(f"--float-layers and --no-mixed apply to --mode int8 only, not {config.mode}")
    if config.float_layers is not None and not config.mixed:
        raise BinbotError("--float-layers and --no-mixed contradict each other: pass one of them")
    if config.float_layers is not None and (not config.float_layers or not all(config.float_layers)):
        raise BinbotError(f"--float-layers: expected layer names separated by commas, got {','.join(config.float_layers)!r}")


def _selftest(model: bytes, name: str, mode: str, inputs: np.ndarray, expected: np.ndarray, classes: list[str]) -> dict:
    """bundle.json's self-test, its tolerance widened to twice what another kernel set differs by."""
    reference = classify_all(Classifier(model, 1, name, reference_kernels=True), inputs)
    spread = float(np.abs(reference - expected).max())
    return {
        "file": bundle_format.SELFTEST,
        "classes": classes,
        "expected": expected.tolist(),
        "tolerance": max(SELFTEST_TOLERANCE_FLOOR[mode], 2 * spread),
        "reference_kernels_difference": spread,
    }


def _write_bundle(config: ConvertConfig, model: bytes, class_names: list[str], selftest_inputs: np.ndarray,
                  content: dict) -> dict:
    try:
        with build_directory(config.out, config.force) as folder:
            (folder / bundle_format.MODEL).write_bytes(model)
            write_labels(folder / bundle_format.LABELS, class_names)
            bundle_format.write_selftest(folder, selftest_inputs)
            manifest = bundle_format.write_manifest(folder, content)
            bundle_format.load_bundle(folder, threads=1)  # the device's own checks, before the bundle appears at --out
    except OSError as error:  # a full disk, say: the scratch folder is gone and --out is as it was
        raise BinbotError(f"{config.out}: cannot write the bundle ({error.strerror or error}); nothing was replaced") from None
    return manifest


def default_labels(checkpoint: Path) -> Path:
    """The run folder's labels.txt beside the checkpoint (in a SavedModel folder, or beside it)."""
    path = runfolder.labels_beside(checkpoint)
    if not path.is_file():
        raise BinbotError(f"{path}: labels file not found beside {checkpoint.name}; pass --labels FILE")
    return path


def _check_probabilities(probabilities: np.ndarray, checkpoint: Path) -> None:
    """The bundle promises probabilities; a model ending in logits would break that silently."""
    sums = probabilities.sum(axis=1)
    if probabilities.min() < -1e-6 or np.abs(sums - 1).max() > 1e-3:
        raise BinbotError(
            f"{checkpoint}: its outputs are not probabilities (rows sum to {sums.min():.3f}..{sums.max():.3f}); "
            "end the model in a softmax"
        )


def _confident_examples(labels: list[int], keras_probabilities: np.ndarray, tflite_probabilities: np.ndarray,
                        n: int) -> list[int]:
    """Up to n images, one class after another, each the one both models call right most confidently.

    A confident answer is far from any decision boundary, so the rounding differences between
    runtimes barely move its probabilities: a self-test on it fails only when something is wrong.
    """
    truth = np.asarray(labels)
    rows = np.arange(len(truth))
    confidence = np.minimum(keras_probabilities[rows, truth], tflite_probabilities[rows, truth])
    by_class: dict[int, list[int]] = {}
    for index in np.argsort(-confidence, kind="stable"):
        by_class.setdefault(int(truth[index]), []).append(int(index))
    queues = [by_class[label] for label in sorted(by_class)]
    chosen: list[int] = []
    while len(chosen) < min(n, len(truth)):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return chosen


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.0f} kB"


def _describe_checkpoint(checkpoint: Checkpoint, labels_path: Path) -> dict:
    return {
        "checkpoint": str(checkpoint.path.resolve()),
        "kind": checkpoint.kind,
        "sha256": checkpoint_sha256(checkpoint.path),
        "labels": str(labels_path.resolve()),
    }


def _tool_versions() -> dict:
    import keras
    import tensorflow as tf

    return {
        "binbot": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": metadata.version("ai-edge-litert"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
