"""The images a conversion calibrates and validates on: a run's split.json, or a <class>/ folder."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from binbot.device.frames import load_model_input
from binbot.errors import BinbotError
from binbot.train import folder

SPLIT = "split.json"


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
    images = folder.scan(root, class_names)
    return ImageSet(str(root.resolve()), [e.path for e in images.examples], [e.label for e in images.examples])


def from_split(split_path: Path, part: str, class_names: list[str]) -> ImageSet:
    """The 'train' or 'validation' images a training run listed in its split.json."""
    try:
        split = json.loads(split_path.read_text())
        listed_names, entries = split["class_names"], split[part]
        paths = [Path(entry["path"]) for entry in entries]
        labels = [int(entry["label"]) for entry in entries]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise BinbotError(f"{split_path}: not a split.json written by binbot train ({type(error).__name__}: {error})") from None
    if listed_names != class_names:
        raise BinbotError(f"{split_path}: lists classes {listed_names}, but the checkpoint's labels are {class_names}")
    if not paths:
        raise BinbotError(f"{split_path}: lists no {part} images")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise BinbotError(
            f"{split_path}: {len(missing)} of its {part} images are gone (first: {missing[0]}); "
            f"pass the images with --{'calibration' if part == 'train' else 'eval'}-data DIR"
        )
    return ImageSet(f"{split_path.resolve()} ({part})", paths, labels)


def choose(checkpoint: Path, class_names: list[str], calibration_data: Path | None, eval_data: Path | None,
           need_calibration: bool) -> tuple[ImageSet | None, ImageSet]:
    """Calibration and evaluation images: the folders given, else the run's split, else each other."""
    split_path = checkpoint.parent / SPLIT
    has_split = split_path.is_file()
    calibration = None
    if calibration_data:
        calibration = from_folder(calibration_data, class_names)
    elif has_split and need_calibration:
        calibration = from_split(split_path, "train", class_names)
    if eval_data:
        evaluation = from_folder(eval_data, class_names)
    elif has_split:
        evaluation = from_split(split_path, "validation", class_names)
    elif calibration:
        evaluation = calibration
    else:
        raise BinbotError(
            f"{checkpoint}: no images to validate the conversion on, and no {SPLIT} beside it; "
            "pass --eval-data DIR (a <class>/<image> folder)"
        )
    if need_calibration and calibration is None:
        raise BinbotError(
            f"{checkpoint}: int8 needs calibration images and there is no {SPLIT} beside it; "
            "pass --calibration-data DIR (a <class>/<image> folder)"
        )
    return calibration, evaluation
