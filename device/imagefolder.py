"""An image folder laid out as <class>/<image>: finding its images, and skipping with a warning what cannot be read.

Training, evaluation and conversion read their images from such folders, and a field folder
(binbot.device.fieldfolder) is one once labelled. It lives with the device, not the trainer, for the
reason the kept-frame contract does: it needs no more than the device has (no TensorFlow), so
`binbot convert` and `binbot train` can both use it, and it decodes as the device does.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from binbot.device.fieldfolder import UNLABELLED, class_folders, waiting
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

    With class_names given (an existing model's labels, or the classes of several folders), the
    folder's classes must be among them and labels follow that order; otherwise the sorted folder
    names are the classes. A field folder's unlabelled/ and discarded/ are not classes, and a kept
    frame's sidecar (<id>.json beside <id>.jpg) is not a skipped file.
    """
    root = Path(root)
    folders = [root / name for name in classes_in(root)]
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


def classes_in(root: str | Path) -> list[str]:
    """The sorted names of root's class folders, or a BinbotError if root is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise BinbotError(f"{root}: not a folder (expected one sub-folder of images per class)")
    return class_folders(root)


def _say_what_waits(root: Path) -> None:
    left = len(waiting(root))
    if left:
        print(f"note: {root / UNLABELLED} has {left} frame(s) not yet labelled (binbot label {root})", file=sys.stderr)


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
