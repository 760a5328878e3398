"""How far the converted model is from the checkpoint, on images with known classes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from binbot.device.runtime import Classifier
from binbot.errors import BinbotError


@dataclass(frozen=True)
class Validation:
    data: str
    images: int
    keras_accuracy: float
    tflite_accuracy: float
    agreement: float  # share of images where both models give the same top-1 class
    max_probability_difference: float

    @property
    def drop_points(self) -> float:
        """Accuracy lost by the conversion, in percentage points (negative if it gained)."""
        return 100.0 * (self.keras_accuracy - self.tflite_accuracy)

    def as_json(self) -> dict:
        return {**asdict(self), "accuracy_drop_points": round(self.drop_points, 4)}


def classify_all(classifier: Classifier, images: np.ndarray) -> np.ndarray:
    """Probabilities for each image, one frame at a time as the device classifies them."""
    return np.stack([classifier.classify(image) for image in images])


def compare(data: str, labels: list[int], keras_probabilities: np.ndarray, tflite_probabilities: np.ndarray) -> Validation:
    truth = np.asarray(labels)
    keras_top1, tflite_top1 = keras_probabilities.argmax(axis=1), tflite_probabilities.argmax(axis=1)
    return Validation(
        data=data,
        images=len(truth),
        keras_accuracy=float((keras_top1 == truth).mean()),
        tflite_accuracy=float((tflite_top1 == truth).mean()),
        agreement=float((keras_top1 == tflite_top1).mean()),
        max_probability_difference=float(np.abs(keras_probabilities - tflite_probabilities).max()),
    )


def within(validation: Validation, max_drop: float) -> bool:
    """True when the conversion lost at most max_drop points."""
    return validation.drop_points <= max_drop + 1e-9


def check_drop(validation: Validation, max_drop: float, allow_drop: bool, note: str = "") -> str | None:
    """Refuse a conversion that lost more than max_drop points, unless allowed; returns a warning if allowed.

    note, if any, follows the figures: what else was tried.
    """
    if within(validation, max_drop):
        return None
    message = (
        f"the converted model's accuracy is {validation.drop_points:.2f} points below the checkpoint's "
        f"({validation.tflite_accuracy:.2%} vs {validation.keras_accuracy:.2%} on {validation.images} images), "
        f"more than --max-drop {max_drop}{note}"
    )
    if not allow_drop:
        raise BinbotError(f"{message}; no bundle written (try another --mode, more --calibration-samples, or --allow-drop)")
    return f"warning: {message}; writing the bundle anyway (--allow-drop)"


def table(validation: Validation, mode: str) -> str:
    rows = [
        ("keras (checkpoint)", f"{validation.keras_accuracy:.2%}"),
        (f"tflite {mode}", f"{validation.tflite_accuracy:.2%}"),
        ("accuracy drop", f"{validation.drop_points:+.2f} points"),
        ("top-1 agreement", f"{validation.agreement:.2%}"),
        ("max probability diff", f"{validation.max_probability_difference:.4f}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"validation on {validation.images} images from {validation.data}:"]
    lines += [f"  {name:<{width}}  {value:>14}" for name, value in rows]
    return "\n".join(lines)
