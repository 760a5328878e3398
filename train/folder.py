"""An image folder laid out as <class>/<image>: scanning, checking and splitting it."""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from binbot.device.frames import IMAGE_SUFFIXES, read_rgb
from binbot.device.kept import NOT_CLASSES, UNLABELLED, kept_ids
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

    With class_names given (an existing model's labels, or the classes of several folders), the
    folder's classes must be among them and labels follow that order; otherwise the sorted folder
    names are the classes. A field folder's unlabelled/ and discarded/ are not classes, and a kept
    frame's sidecar (<id>.json beside <id>.jpg) is not a skipped file.
    """
    root = Path(root)
    folders = [root / name for name in class_folders(root)]
    _say_what_waits(root)
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
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = {(p.parent, p.stem) for p in files if p.suffix.lower() in IMAGE_SUFFIXES}
        for path in files:
            if path.suffix == ".json" and (path.parent, path.stem) in images:
                continue  # the sidecar of a kept field frame, or any image's notes: not a file to warn about
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


def class_folders(root: str | Path) -> list[str]:
    """The sorted names of root's class folders: its sub-folders, bar hidden ones and a field folder's unlabelled/ and discarded/."""
    root = Path(root)
    if not root.is_dir():
        raise BinbotError(f"{root}: not a folder (expected one sub-folder of images per class)")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_CLASSES)


def scan_all(roots: list[Path], class_names: list[str] | None = None) -> list[ImageFolder]:
    """scan() each folder with the same classes: class_names if given, else every folder's classes, sorted.

    A class may be missing from some of the folders, so a field folder with only a few classes yet
    trains beside the photos that have them all.
    """
    if not roots:
        raise BinbotError("no --data folder given")
    if len(set(p.resolve() for p in roots)) < len(roots):
        raise BinbotError(f"the same --data folder is given twice ({', '.join(map(str, roots))}); give each once")
    if class_names is None and len(roots) == 1:
        return [scan(roots[0])]
    if class_names is None:
        class_names = sorted(set().union(*(class_folders(root) for root in roots)))
        if len(class_names) < 2:
            raise BinbotError(
                f"{', '.join(map(str, roots))}: found {len(class_names)} class folder(s) between them; a classifier "
                "needs at least 2 (lay images out as <class>/<image>.jpg)"
            )
    return [scan(root, class_names) for root in roots]


def _say_what_waits(root: Path) -> None:
    waiting = len(kept_ids(root / UNLABELLED))
    if waiting:
        print(f"note: {root / UNLABELLED} has {waiting} frame(s) not yet labelled (binbot label {root})", file=sys.stderr)


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
