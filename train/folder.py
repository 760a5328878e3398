"""The training images of one or several <class>/<image> folders: their shared classes, and the split.

Each folder is scanned by binbot.device.imagefolder, which evaluation and conversion use as well.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from binbot.device.imagefolder import Example, ImageFolder, classes_in, scan
from binbot.errors import BinbotError


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
        class_names = sorted(set().union(*(classes_in(root) for root in roots)))
        if len(class_names) < 2:
            raise BinbotError(
                f"{', '.join(map(str, roots))}: found {len(class_names)} class folder(s) between them; a classifier "
                "needs at least 2 (lay images out as <class>/<image>.jpg)"
            )
    return [scan(root, class_names) for root in roots]


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
