"""Where an int8 bundle's accuracy goes: rounding the weights, rounding the activations, or calibration.

    python benchmarks/int8_sensitivity.py RUN_DIR                  # RUN_DIR from binbot train
    python benchmarks/int8_sensitivity.py RUN_DIR --draws 6 --out int8_sensitivity.md

All figures are accuracies on the run's validation split (split.json), next to the Keras model's:
- weights rounded: the Keras model with each kernel rounded as the int8 converter rounds it
  (batch norm folded in, symmetric, per output channel, -127..127), activations left in float;
  then only the small kernels (under 1024 weights, the ones dynamic-range mode leaves in
  float), then all but those;
- weights moved at random: each weight moved by a uniform random fraction of the same step,
  up to half of it, once per draw: what any change of the rounding's size does to this model;
- activations rounded: (nearly) every tensor TFLite stores in 8 bits rounded to 8 bits over the range
  seen on calibration images (fake quantization), weights left in float;
- int8 .tflite: the real conversion (binbot's converter) on 100, 300 and 1000 calibration
  images from the training split, run by the LiteRT interpreter, with its top-1 agreement.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from binbot.convert import data, runfolder, tflite
from binbot.convert.checkpoint import load_checkpoint
from binbot.convert.validation import classify_all
from binbot.device.labels import read_labels
from binbot.device.runtime import Classifier
from binbot.errors import BinbotError
from binbot.files import write_text
from binbot.train.model import base_of

INT8_LEVELS = 127
CALIBRATION_SIZES = (100, 300, 1000)
SMALL_KERNEL = 1024  # weights; TFLite's dynamic-range mode leaves smaller kernels in float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a run directory from binbot train (model.keras, labels.txt, split.json)")
    parser.add_argument("--draws", type=int, default=4, help="random weight moves to measure")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    started = time.monotonic()

    checkpoint = args.run / runfolder.MODEL
    class_names = read_labels(args.run / runfolder.LABELS)
    model = load_checkpoint(checkpoint)
    size = model.input_shape[1:3]
    validation = data.from_split(args.run, "validation", class_names)
    training = data.from_split(args.run, "train", class_names)
    images, truth = validation.load(*size), np.array(validation.labels)
    print(f"{len(truth)} validation images; calibration images from the {len(training.paths)} training images", file=sys.stderr)

    keras_probabilities = probabilities(model, images)
    rows = [("Keras model (float)", keras_probabilities)]
    float_weights = model.get_weights()

    round_kernels(model, round_to_steps)
    rows.append(("weights rounded as int8, activations float", probabilities(model, images)))
    small = [kernel.path for kernel, _ in int8_kernels(model) if np.prod(kernel.shape) < SMALL_KERNEL]
    for name, chosen in ((f"only the {len(small)} small kernels rounded ({', '.join(small)})", lambda path: path in small),
                         (f"all but the {len(small)} small kernels rounded", lambda path: path not in small)):
        model.set_weights(float_weights)
        round_kernels(model, round_to_steps, chosen)
        rows.append((name, probabilities(model, images)))
    for draw in range(args.draws):
        model.set_weights(float_weights)
        rng = np.random.default_rng(draw)
        round_kernels(model, lambda kernel, step: kernel + rng.uniform(-0.5, 0.5, kernel.shape) * step)
        rows.append((f"weights moved at random up to half a step (draw {draw + 1})", probabilities(model, images)))
    model.set_weights(float_weights)

    activations_rounded = with_rounded_activations(model, training.sample(300).load(*size))
    rows.append(("activations rounded to 8 bits, weights float", probabilities(activations_rounded, images)))

    with tempfile.TemporaryDirectory() as scratch:
        model.export(scratch, verbose=False)
        for n in CALIBRATION_SIZES:
            print(f"converting to int8 with {n} calibration images", file=sys.stderr)
            calibration = tflite.with_full_pixel_range(training.sample(n).load(*size))  # as binbot convert draws them
            converted = tflite.convert(Path(scratch), "int8", calibration)
            rows.append((f"int8 .tflite, {n} calibration images", classify_all(Classifier(converted, threads=2), images)))

    table = markdown(rows, truth, checkpoint)
    print(table)
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.out:
        write_text(args.out, table + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


def round_kernels(model: keras.Model, change, chosen=lambda path: True) -> None:
    """Apply change(kernel, step) to every kernel the converter quantizes (or those whose
    variable path is chosen), in its folded form.

    The converter folds each batch norm into the kernel before it (a factor per output channel),
    then gives each output channel one step: its largest magnitude over 127.
    """
    for kernel, factor in int8_kernels(model):
        if not chosen(kernel.path):
            continue
        weights = kernel.numpy()
        depthwise = weights.ndim == 4 and weights.shape[-1] == 1  # (h, w, channels, 1): channels are axis 2
        folded = (weights[..., 0] if depthwise else weights) * factor
        largest = np.abs(folded).reshape(-1, folded.shape[-1]).max(axis=0)
        step = np.where(largest > 0, largest / INT8_LEVELS, 1.0)
        changed = change(folded, step) / factor
        kernel.assign((changed[..., np.newaxis] if depthwise else changed).astype(weights.dtype))


def round_to_steps(values: np.ndarray, step: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values / step), -INT8_LEVELS, INT8_LEVELS) * step


def int8_kernels(model: keras.Model) -> list[tuple[keras.Variable, np.ndarray]]:
    """Each quantized kernel with the factor folding its batch norm multiplies it by (1 if none)."""
    found = []
    base_layers = base_of(model).layers
    for layer, following in zip(base_layers, base_layers[1:] + [None]):
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
            factor = 1.0
            if isinstance(following, layers.BatchNormalization):
                variance = following.moving_variance.numpy()
                factor = following.gamma.numpy() / np.sqrt(variance + following.epsilon)
            found.append((layer.kernel, factor))
    found += [(layer.kernel, 1.0) for layer in model.layers if isinstance(layer, layers.Dense)]
    return found


def is_int8_tensor(layer: layers.Layer) -> bool:
    """Layers whose output TFLite stores as an 8-bit tensor.

    A batch norm followed by a ReLU is fused into its convolution; the logits inside the last
    dense layer (before its softmax) are the one 8-bit tensor this leaves in float.
    """
    if isinstance(layer, (layers.ReLU, layers.Add, layers.Rescaling, layers.GlobalAveragePooling2D, layers.Dense)):
        return True
    return layer.name.endswith("project_BN")  # MobileNetV2's linear bottlenecks: no activation after


def flat_graph(model: keras.Model, after) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The model's layers (those of its nested base too) called in one graph, after(layer, y) on int8 tensors."""
    inputs = keras.Input(model.input_shape[1:])
    newest = [inputs]

    def call(layer, *args, **kwargs):
        if isinstance(layer, layers.BatchNormalization):
            kwargs["training"] = False
        y = layer(*args, **kwargs)
        newest[0] = after(layer, y) if is_int8_tensor(layer) else y
        return newest[0]

    for layer in model.layers[1:]:
        if isinstance(layer, keras.Model):
            keras.models.clone_model(layer, input_tensors=newest[0], clone_function=lambda same: same, call_function=call)
        else:
            call(layer, newest[0])
    return inputs, newest[0]


def with_rounded_activations(model: keras.Model, calibration: np.ndarray) -> keras.Model:
    """The model sharing its layers, each int8 tensor rounded to 8 bits over its calibration range."""
    ranges = []

    def record(layer, y):
        ranges.append(keras.ops.stack([keras.ops.min(y), keras.ops.max(y)]))
        return y

    inputs, _ = flat_graph(model, record)
    probe = keras.Model(inputs, ranges)
    batches = [probe.predict_on_batch(calibration[i:i + 32].astype(np.float32)) for i in range(0, len(calibration), 32)]
    seen = np.array(batches)  # (batches, tensors, 2)
    lows, highs = np.minimum(seen[..., 0].min(axis=0), 0.0), np.maximum(seen[..., 1].max(axis=0), 0.0)
    tensors = iter(zip(lows, highs))

    def rounded(layer, y):
        low, high = next(tensors)
        return keras.layers.Lambda(
            lambda x, low=float(low), high=float(high): tf.quantization.fake_quant_with_min_max_args(x, low, high)
        )(y)

    return keras.Model(*flat_graph(model, rounded))


def probabilities(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return model.predict(images.astype(np.float32), batch_size=32, verbose=0)


def markdown(rows: list[tuple[str, np.ndarray]], truth: np.ndarray, checkpoint: Path) -> str:
    """One row a model: accuracy, its change from the first row's, agreement and largest difference with it."""
    keras_probabilities = rows[0][1]
    keras_top1 = keras_probabilities.argmax(axis=1)
    keras_accuracy = (keras_top1 == truth).mean()
    lines = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmarks/int8_sensitivity.py` "
        f"(TensorFlow {tf.__version__}). {checkpoint}, {len(truth)} validation images: "
        "the parts of int8 quantization applied one at a time.",
        "",
        "| model | accuracy | change | top-1 agreement with Keras | largest probability difference |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, scores in rows:
        top1 = scores.argmax(axis=1)
        accuracy = (top1 == truth).mean()
        lines.append(
            f"| {name} | {accuracy:.2%} | {100 * (accuracy - keras_accuracy):+.2f} points | "
            f"{(top1 == keras_top1).mean():.2%} | {np.abs(scores - keras_probabilities).max():.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        main()
    except BinbotError as error:
        raise SystemExit(f"int8_sensitivity: {error}") from None
