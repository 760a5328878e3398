"""Replay: a folder of images (searched recursively, in name order), a video file, or an .npz file of
frames (as a bundle's selftest.npz holds), looped or once."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from binbot.device.frames import IMAGE_SUFFIXES, read_rgb
from binbot.device.source import Frame, Source, SourceError
from binbot.errors import BinbotError


class ReplaySource(Source):
    def __init__(self, path: str | Path, loop: bool = True, fps: float = 0.0):
        self.path, self.loop, self.fps = Path(path), loop, fps
        self.live = fps > 0  # unpaced, a replay goes as fast as the classifier and loses nothing
        self._frames: np.ndarray | None = None  # an .npz file's frames, held in memory
        self._files: list[Path] = []
        self._video: cv2.VideoCapture | None = None
        self._next = 0
        self._due = 0.0
        # Image files that were junk or removed since the folder was listed: counted each time a looped
        # replay comes round to them, never reset.
        self.unreadable = 0

    def describe(self) -> str:
        in_memory = " (in memory)" if self.path.suffix == ".npz" else ""
        return f"replay of {self.path}{in_memory}" + (f" at {self.fps:g} fps" if self.fps else "")

    def open(self) -> None:
        self._next, self._due = 0, time.monotonic()
        if self.path.suffix == ".npz" and self.path.is_file():
            self._frames = read_npz_frames(self.path)
        elif self.path.is_dir():
            self._files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise SourceError(f"{self.path}: no images ({', '.join(IMAGE_SUFFIXES)})")
        elif self.path.is_file():
            self._video = cv2.VideoCapture(str(self.path))
            if not self._video.isOpened():
                raise SourceError(f"{self.path}: not a video OpenCV can read")
        else:
            raise SourceError(f"{self.path}: no such folder or video")

    def read(self) -> Frame | None:
        self._pace()
        if self._frames is not None:
            return self._from_memory()
        if self._video is not None:
            return self._from_video()
        return self._from_files()

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None

    def _from_files(self) -> Frame | None:
        # One bad file must not stop the replay (reopening would restart at the first image and never
        # get past it), so it is skipped; only a whole pass without a readable image is a failure.
        for _ in range(len(self._files)):
            if self._next == len(self._files):
                if not self.loop:
                    return None
                self._next = 0
            path = self._files[self._next]
            self._next += 1
            try:
                return Frame(read_rgb(path), str(path))
            except BinbotError:  # junk, or removed since the folder was listed
                self.unreadable += 1
        raise SourceError(f"no readable images in {self.path} ({len(self._files)} files tried)")

    def _from_memory(self) -> Frame | None:
        if self._next == len(self._frames):
            if not self.loop:
                return None
            self._next = 0
        self._next += 1
        return Frame(self._frames[self._next - 1], f"{self.path}[{self._next - 1}]")

    def _from_video(self) -> Frame | None:
        ok, bgr = self._video.read()
        if not ok and self.loop and self._next > 0:
            self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._next = 0
            ok, bgr = self._video.read()
        if not ok:
            if self._next == 0:
                raise SourceError(f"{self.path}: no frames could be read")
            return None
        self._next += 1
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{self.path}#{self._next - 1}")

    def _pace(self) -> None:
        if self.fps <= 0:
            return
        self._due += 1.0 / self.fps
        delay = self._due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self._due = time.monotonic()  # running late: do not rush to catch up


def read_npz_frames(path: Path) -> np.ndarray:
    """The "inputs" array of an .npz file: RGB uint8 frames of shape (n, height, width, 3)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            frames = archive["inputs"]
    except (OSError, ValueError, KeyError) as error:
        raise SourceError(f"{path}: not an .npz file of frames under 'inputs' ({error})") from None
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise SourceError(f"{path}: holds {frames.dtype} {frames.shape}, not RGB uint8 frames (n, height, width, 3)")
    return frames
