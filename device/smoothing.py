"""Per-frame probabilities to events: a stable change of the item in view."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decision:
    """The smoothed view: the class, its mean probability over the window, and the mean probabilities."""

    label: int
    confidence: float
    mean: np.ndarray


class Smoother:
    """Averages the last `window` frames; a class whose mean reaches `threshold` and differs
    from the current item is an event. When no class reaches it, the view is empty (no item),
    so the same item put back later is a new event."""

    def __init__(self, window: int, threshold: float):
        self.window, self.threshold = window, threshold
        self._recent: deque[np.ndarray] = deque(maxlen=window)
        self.current: int | None = None

    def update(self, probabilities: np.ndarray) -> Decision | None:
        """Add one frame's probabilities; return a Decision when it makes an event."""
        self._recent.append(probabilities)
        if len(self._recent) < self.window:
            return None
        mean = np.mean(self._recent, axis=0)
        label = int(np.argmax(mean))
        if mean[label] < self.threshold:
            self.current = None
            return None
        if label == self.current:
            return None
        self.current = label
        return Decision(label, float(mean[label]), mean)

    def reset(self) -> None:
        """Forget the window, as when the model changes and old scores mean something else."""
        self._recent.clear()
        self.current = None
