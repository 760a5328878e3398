"""An image folder laid out as <class>/<image>: scanning, checking and splitting it."""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from binbot.device.frames import IMAGE_SUFFIXES, read_rgb
from binbot.errors import BinbotError


@dataclass(frozen=True)
class Example:
    path: Path
    label: int


@dataclass
class ImageFolder:
    """The readable images of a folder, and the files that were skipped with why."""

    root: Path
    class_names: list[str]
    examples: list[Example]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        per_class = {name: 0 for name in self.class_names}
        for example in self.examples:
            per_class[self.class_names[example.label]] += 1
        return per_class


def scan(root: str | Path, class_names: list[str] | None = None) -> ImageFolder:
    """Find every readable image under root/<class>/, warning once per file skipped.

    With class_names given (an existing model's labels), the folder's classes must be
    among them and labels follow that order; otherwise the sorted folder names are the classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise BinbotError(f"{root}: not a folder (expected one sub-folder of images per class)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_names is None:
        class_names = [p.name for p in folders]
        if len(class_names) < 2:
            raise BinbotError(
                f"{root}: found {len(class_names)} class folder(s); a classifier needs at least 2 "
                "(lay images out as <class>/<image>.jpg)"
            )
    unknown = [p.name for p in folders if p.name not in class_names]
    if unknown:
        raise BinbotError(f"{root}: class folder(s) {', '.join(unknown)} are not among the model's labels {class_names}")

    examples, skipped = [], []
    for folder in folders:
        label = class_names.index(folder.name)
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            problem = _problem_with(path)
            if problem:
                print(f"warning: skipping {path}: {problem}", file=sys.stderr)
                skipped.append((path, problem))
            else:
                examples.append(Example(path, label))

    images = ImageFolder(root, list(class_names), examples, skipped)
    empty = [name for name, n in images.counts().items() if n == 0 and (root / name).is_dir()]
    if empty:
        raise BinbotError(f"{root}: class folder(s) {', '.join(empty)} have no readable image")
    if not examples:
        raise BinbotError(f"{root}: no readable image found")
    return images


def _problem_with(path: Path) -> str | None:
    """Why an image file cannot be used, or None if it decodes.

    It is decoded as training, calibration and the device decode it (OpenCV's read_rgb), so a file
    another library would read but OpenCV refuses is skipped here, not fatal mid-epoch.
    """
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file extension ({', '.join(IMAGE_SUFFIXES)})"
    if path.stat().st_size == 0:
        return "empty file"
    try:
        read_rgb(path)
    except BinbotError:
        if cv2.haveImageReader(str(path)):
            return "truncated or corrupt image (OpenCV cannot decode it)"
        return "not an image in a format OpenCV reads"
    return None


def stratified_split(examples: list[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Split each class separately so train and validation keep the class proportions."""
    if not 0.0 < val_fraction < 1.0:
        raise BinbotError(f"--val-split must be between 0 and 1, got {val_fraction}")
    by_label: dict[int, list[Example]] = defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda e: e.path)
        rng.shuffle(group)
        n_val = round(len(group) * val_fraction)
        if len(group) >= 2:
            n_val = min(max(n_val, 1), len(group) - 1)  # every class in both halves when it can be
        val.extend(group[:n_val])
        train.extend(group[n_val:])
    return train, val
