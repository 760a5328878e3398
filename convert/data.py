"""The images a conversion calibrates and validates on: a run's split.json, or a <class>/ folder."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from binbot.convert import runfolder
from binbot.device import imagefolder
from binbot.device.frames import load_model_input
from binbot.errors import BinbotError


@dataclass(frozen=True)
class ImageSet:
    """Image files with their class indices, and where they came from, for the record."""

    origin: str
    paths: list[Path]
    labels: list[int]

    def sample(self, n: int, seed: int = 0) -> ImageSet:
        """At most n of the images, drawn at random but the same every time."""
        if n >= len(self.paths):
            return self
        chosen = sorted(random.Random(seed).sample(range(len(self.paths)), n))
        return ImageSet(self.origin, [self.paths[i] for i in chosen], [self.labels[i] for i in chosen])

    def load(self, height: int, width: int) -> np.ndarray:
        """The images as the model sees them, through the device's frame contract: (n, h, w, 3) uint8."""
        images = np.empty((len(self.paths), height, width, 3), np.uint8)
        for n, path in enumerate(self.paths):
            images[n] = load_model_input(path, height, width)
        return images


def from_folder(root: Path, class_names: list[str]) -> ImageSet:
    images = imagefolder.scan(root, class_names)
    return ImageSet(str(root.resolve()), [e.path for e in images.examples], [e.label for e in images.examples])


def from_split(run: Path, part: str, class_names: list[str]) -> ImageSet:
    """The 'train' or 'validation' images a training run in the folder run listed in its split.json."""
    split_path = run / runfolder.SPLIT
    split = runfolder.read_split(run)
    if split.class_names != class_names:
        raise BinbotError(f"{split_path}: lists classes {split.class_names}, but the checkpoint's labels are {class_names}")
    examples = getattr(split, part)
    if not examples:
        raise BinbotError(f"{split_path}: lists no {part} images")
    missing = [e.path for e in examples if not e.path.is_file()]
    if missing:
        raise BinbotError(
            f"{split_path}: {len(missing)} of its {part} images are gone (first: {missing[0]}); "
            f"pass the images with --{'calibration' if part == 'train' else 'eval'}-data DIR"
        )
    return ImageSet(f"{split_path.resolve()} ({part})", [e.path for e in examples], [e.label for e in examples])


def choose(checkpoint: Path, class_names: list[str], calibration_data: Path | None, eval_data: Path | None,
           need_calibration: bool) -> tuple[ImageSet | None, ImageSet]:
    """Calibration and evaluation images: the folders given, else the run's split, else each other."""
    run = checkpoint.parent
    has_split = (run / runfolder.SPLIT).exists()  # if it is not a file, read_split says so
    calibration = None
    if calibration_data:
        calibration = from_folder(calibration_data, class_names)
    elif has_split and need_calibration:
        calibration = from_split(run, "train", class_names)
    if eval_data:
        evaluation = from_folder(eval_data, class_names)
    elif has_split:
        evaluation = from_split(run, "validation", class_names)
    elif calibration:
        evaluation = calibration
    else:
        raise BinbotError(
            f"{checkpoint}: no images to validate the conversion on, and no {runfolder.SPLIT} beside it; "
            "pass --eval-data DIR (a <class>/<image> folder)"
        )
    if need_calibration and calibration is None:
        raise BinbotError(
            f"{checkpoint}: int8 needs calibration images and there is no {runfolder.SPLIT} beside it; "
            "pass --calibration-data DIR (a <class>/<image> folder)"
        )
    return calibration, evaluation
