"""The camera seam: every frame source is one small class behind this interface.

A source delivers RGB uint8 frames (converted at its own boundary) and raises
SourceError when it fails; the daemon reopens it with backoff. One backend per
file (source_replay, source_opencv, source_picamera2); open_source picks one from a spec.
A bundle's own self-test frames (`selftest:`) are a replay like any other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from binbot.errors import BinbotError

SELFTEST_FILE = "selftest.npz"  # bundle.SELFTEST; not imported, so that a source needs no bundle code
SPECS = "picamera2, opencv:INDEX|PATH|URL, replay:PATH or selftest:"


class SourceError(Exception):
    """The source cannot deliver frames now; reopening may help."""


@dataclass
class Frame:
    """One RGB uint8 frame and where it came from (a file name for replays, else empty)."""

    rgb: np.ndarray
    origin: str = ""


class Source(ABC):
    """Opens a camera, video or folder and yields RGB frames until closed."""

    #: True when frames arrive at the world's pace and stale ones must be dropped;
    #: an unpaced replay is not live, so the daemon classifies every one of its frames.
    live: bool = True
    #: Frames or files passed over because they could not be read (the daemon counts them in /metrics).
    unreadable: int = 0

    @abstractmethod
    def open(self) -> None:
        """Start delivering frames; raise SourceError if the device or file is not there."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None when a finite source has ended; raise SourceError on failure."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; safe to call more than once and after a failed open."""

    def describe(self) -> str:
        return type(self).__name__


def open_source(spec: str, height: int, width: int, loop: bool = True, fps: float = 0.0,
                bundle: Path | None = None) -> Source:
    """The source a spec names. height and width are the model input, which cameras may deliver directly;
    bundle is the folder whose self-test frames `selftest:` (or an empty spec, as older configs say) replays."""
    kind, _, where = (spec or "selftest:").partition(":")
    if kind == "replay":
        from binbot.device.source_replay import ReplaySource

        if not where:
            raise BinbotError(f"source {spec!r}: replay needs a folder, video or .npz file, as replay:PATH")
        return ReplaySource(where, loop=loop, fps=fps)
    if kind == "selftest" and not where:
        from binbot.device.source_replay import ReplaySource

        if bundle is None:
            raise BinbotError(f"source {spec!r}: needs a bundle, whose self-test frames it replays")
        return ReplaySource(bundle / SELFTEST_FILE, loop=loop, fps=fps)
    if kind == "opencv":
        from binbot.device.source_opencv import OpenCVSource

        if not where:
            raise BinbotError(f"source {spec!r}: opencv needs a device index, path or URL, as opencv:0")
        return OpenCVSource(where)
    if kind == "picamera2" and not where:
        from binbot.device.source_picamera2 import Picamera2Source

        return Picamera2Source(height, width)
    raise BinbotError(f"source {spec!r}: not a source; use {SPECS}")
