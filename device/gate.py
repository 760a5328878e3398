"""The [motion] gate: a cheap look at each frame that decides whether the classifier runs, and whether
the scene is empty.

It works the way Frigate's motion detector does (frigate/motion/improved_motion.py), on a small
greyscale copy of the frame (`height` pixels high): the copy is blurred a little against sensor
noise and compared with a running-average background; pixels that differ by more than `threshold`
are changed, a dilation joins neighbours, and the frame shows motion when the changed area is at
least `min_area` of the frame. A still scene is averaged into the background (`frame_alpha` a
frame), a moving one only once the difference has lasted `absorb` frames (Frigate's 10), so
something set down becomes background instead of motion for ever; a change of most of the frame at
once (a light switched on: Frigate's lightning threshold) makes the background the new frame. What
differs from Frigate: brightness is normalised by the copy's median rather than Frigate's percentile
contrast stretch, which keeps a slow drift of the light (and an item covering less than half the
view) from moving the background's levels; there are no masks or boxes, only the changed area.

The decision: while something moves, and for `settle` seconds after, every frame is classified;
while the scene is still, one frame every 1/`idle_fps` seconds is, to catch slow changes.

Beside the motion background the gate keeps the empty scene: what the drop zone looks like with
nothing in it, learned from the first still frames (or again on learn_background(), which
`binbot run --learn-background` and a POST to /motion/learn ask for) and followed slowly
(`empty_alpha`) while the scene matches it, so the day's light is followed but an item left lying
is not learned as empty. A still scene that differs from it by less than `empty_area` is empty:
whatever the classifier says of it, no item is in view.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from binbot.schema import SettingProblem, setting

SCENES = ("empty", "still", "moving")
LIGHTNING = 0.8  # share of the frame changed at once that is the light, not a thing (Frigate's default)
LEVEL = 128.0  # the median every copy is brought to


@dataclass(frozen=True)
class MotionSettings:
    height: int = setting(100, "pixels high of the greyscale copy the gate looks at (Frigate's frame_height)",
                          low=16, high=480)
    threshold: int = setting(30, "grey levels (of 255) a pixel must differ from the background by to count as "
                             "changed", low=1, high=254)
    min_area: float = setting(0.005, "share of the frame that must change for the frame to show motion",
                              above=0.0, high=1.0)
    frame_alpha: float = setting(0.05, "how fast the motion background follows a still scene, a frame", above=0.0,
                                 high=1.0)
    absorb: int = setting(10, "frames a change must last while moving before the background takes it in", low=1,
                          high=1000)
    settle: float = setting(2.0, "seconds without motion before the classifier slows to idle_fps", low=0.0,
                            high=600.0)
    idle_fps: float = setting(1.0, "classifications a second while the scene is still", above=0.0, high=30.0)
    empty: bool = setting(True, "learn the empty scene and report no item while the scene matches it")
    empty_area: float = setting(0.01, "share of the frame that may differ from the empty scene for it to still be "
                                "empty", above=0.0, high=1.0)
    empty_alpha: float = setting(0.002, "how fast the empty scene follows the light while the scene matches it, "
                                 "a frame", above=0.0, high=1.0)

    def check(self) -> None:
        if self.empty_area < self.min_area:
            raise SettingProblem("empty_area", f"must not be below min_area ({self.min_area:g}): a scene that "
                                 "shows motion cannot be empty")


@dataclass(frozen=True)
class Look:
    """What the gate saw in one frame."""

    classify: bool  # run the classifier on this frame
    scene: str  # one of SCENES
    changed: float  # share of the frame changed against the motion background
    unlike_empty: float  # share of the frame that differs from the empty scene (1.0 before it is learned)


class Gate:
    """Looks at each frame in turn (look()); not thread-safe: the frame loop alone calls it."""

    def __init__(self, settings: MotionSettings, clock: Callable[[], float] = time.monotonic):
        self.settings, self._clock = settings, clock
        self._background: np.ndarray | None = None  # float32, the motion background
        self._empty: np.ndarray | None = None  # float32, the empty scene
        self._learn = settings.empty  # take the next still frame as the empty scene
        self._moving_for = 0  # frames in a row with motion
        self._moved_at = -float("inf")
        self._classified_at = -float("inf")
        self.scene = "moving"  # until the background is known, nothing is taken for still

    def learn_background(self) -> None:
        """Take the next still frame as the empty scene (the drop zone with nothing in it)."""
        self._learn = True

    def look(self, rgb: np.ndarray) -> Look:
        """Decide for one RGB frame (or a greyscale one, a source's luma plane) of any size."""
        s, now = self.settings, self._clock()
        copy = small_grey(rgb, s.height)
        if self._background is None or self._background.shape != copy.shape:
            self._background, self._moving_for = copy.copy(), 0
        changed = changed_share(copy, self._background, s.threshold)
        moving = changed >= s.min_area
        self._follow(copy, changed, moving)
        if moving:
            self._moved_at = now
        still = now - self._moved_at >= s.settle
        unlike_empty = 1.0
        if s.empty and still:
            unlike_empty = self._follow_empty(copy)
        scene = "moving" if not still else "empty" if unlike_empty <= s.empty_area else "still"
        classify = not still or now - self._classified_at >= 1.0 / s.idle_fps
        if classify:
            self._classified_at = now
        self.scene = scene
        return Look(classify, scene, changed, unlike_empty)

    def _follow(self, copy: np.ndarray, changed: float, moving: bool) -> None:
        """Average the frame into the motion background, as Frigate does."""
        s = self.settings
        if changed > LIGHTNING:
            self._background, self._moving_for = copy.copy(), 0
            return
        self._moving_for = self._moving_for + 1 if moving else 0
        if not moving or self._moving_for >= s.absorb:
            cv2.accumulateWeighted(copy, self._background, s.frame_alpha)

    def _follow_empty(self, copy: np.ndarray) -> float:
        """The share of a still frame unlike the empty scene; the scene learned or followed as it matches."""
        s = self.settings
        if self._learn or self._empty is None or self._empty.shape != copy.shape:
            self._empty, self._learn = copy.copy(), False
            return 0.0
        unlike = changed_share(copy, self._empty, s.threshold)
        if unlike <= s.empty_area:
            cv2.accumulateWeighted(copy, self._empty, s.empty_alpha)
        return unlike


def small_grey(frame: np.ndarray, height: int) -> np.ndarray:
    """frame as a float32 greyscale copy height pixels high, its median brought to LEVEL, lightly blurred."""
    rows, columns = frame.shape[:2]
    width = max(1, round(columns * height / rows))
    small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    grey = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    grey = cv2.GaussianBlur(grey, (3, 3), 1.0).astype(np.float32)
    median = float(np.median(grey))
    return np.minimum(grey * (LEVEL / max(median, 1.0)), 255.0)


def changed_share(copy: np.ndarray, reference: np.ndarray, threshold: int) -> float:
    """The share of copy's pixels that differ from reference by more than threshold, neighbours joined."""
    changed = (cv2.absdiff(copy, reference) > threshold).astype(np.uint8)
    changed = cv2.dilate(changed, None, iterations=1)
    return cv2.countNonZero(changed) / changed.size
