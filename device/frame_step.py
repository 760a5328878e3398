"""One frame's work once it is captured: preprocess, invoke, post-process, each stage timed.

The daemon, `binbot bench` and `binbot classify` all classify through FrameStep, so what bench
times and what classify prints are what the daemon does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from binbot.device.frames import RESIZE_POLICY, resize_to_input
from binbot.device.runtime import Classifier
from binbot.device.smoothing import Smoother

STEP_STAGES = ("preprocess", "invoke", "postprocess")


@dataclass
class StepResult:
    """What one frame gave: its result (label, confidence, top k, item in view), the event's fields
    when the smoothed view changed, and seconds per stage."""

    probabilities: np.ndarray
    result: dict
    change: dict | None
    seconds: dict[str, float]


class FrameStep:
    """Classifies RGB frames of any size with one classifier, resized as its bundle says; with a
    smoother, also decides events."""

    def __init__(self, classifier: Classifier, class_names: list[str], top_k: int, smoother: Smoother | None = None,
                 resize_policy: str = RESIZE_POLICY):
        self.classifier, self.class_names, self.top_k, self.smoother = classifier, class_names, top_k, smoother
        self.resize_policy = resize_policy

    def resize(self, rgb: np.ndarray) -> np.ndarray:
        """The frame at the model's input size (itself if it is that size already)."""
        return resize_to_input(rgb, self.classifier.height, self.classifier.width, self.resize_policy)

    def __call__(self, rgb: np.ndarray) -> StepResult:
        """ValueError for a frame the model cannot take, RuntimeError if the runtime fails."""
        classifier = self.classifier
        start = time.perf_counter()
        classifier.set_input(self.resize(rgb))  # a no-op resize when the capture thread did it already
        prepared = time.perf_counter()
        classifier.invoke()
        invoked = time.perf_counter()
        probabilities = classifier.probabilities()
        result, change = frame_result(probabilities, self.class_names, self.top_k, self.smoother)
        done = time.perf_counter()
        return StepResult(probabilities, result, change,
                          dict(zip(STEP_STAGES, (prepared - start, invoked - prepared, done - invoked))))


def frame_result(probabilities: np.ndarray, names: list[str], k: int,
                 smoother: Smoother | None = None) -> tuple[dict, dict | None]:
    """One frame's result (label, confidence, top k, item in view) and, when the smoothed view changed,
    the event's label, confidence and top k; the caller stamps both with time, frame and model."""
    decision = smoother.update(probabilities) if smoother else None
    label = int(np.argmax(probabilities))
    current = smoother.current if smoother else None
    result = {
        "label": names[label], "confidence": round(float(probabilities[label]), 4),
        "top": top_k(probabilities, names, k),
        "item": None if current is None else names[current],
    }
    if decision is None:
        return result, None
    return result, {"label": names[decision.label], "confidence": round(decision.confidence, 4),
                    "top": top_k(decision.mean, names, k)}


def top_k(probabilities: np.ndarray, names: list[str], k: int) -> list[dict]:
    """The k likeliest classes; ties in class order, so the first is always argmax's label."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"label": names[i], "p": round(float(probabilities[i]), 4)} for i in order]


def now_iso() -> str:
    """The time a result or event is stamped with: UTC, to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
