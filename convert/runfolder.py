"""A training run's folder: what `binbot train` writes, and `binbot evaluate` and `binbot convert` read.

    model.keras    the checkpoint: raw RGB 0..255 in, class probabilities out
    labels.txt     the class names, in the order of the model's outputs (binbot.device.labels)
    split.json     the images it trained and validated on: {"class_names": [...], "train": [...],
                   "validation": [...]}, each image {"path": absolute path, "label": class index}
    config.json    every value the run was made with (the recipe and the options over it)
    metrics.json   the validation figures
    history.json   loss and accuracy per epoch, and the epoch fine-tuning began at
    training.png, confusion.png, report.md   the same, for people

The one writer and reader of that layout. It sits with convert, its reader, because the trainer may
import convert but convert never imports the trainer (and neither does it import TensorFlow:
the model is saved by the object handed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from binbot import boundedjson
from binbot.device.imagefolder import Example
from binbot.device.labels import write_labels
from binbot.errors import BinbotError
from binbot.files import write_json

if TYPE_CHECKING:
    import keras

MODEL = "model.keras"
LABELS = "labels.txt"
SPLIT = "split.json"
CONFIG = "config.json"
METRICS = "metrics.json"
HISTORY = "history.json"
TRAINING_PLOT = "training.png"
CONFUSION_PLOT = "confusion.png"
REPORT = "report.md"
FILES = (MODEL, LABELS, SPLIT, CONFIG, METRICS, HISTORY, TRAINING_PLOT, CONFUSION_PLOT, REPORT)
PARTS = ("train", "validation")
# A split.json takes some 150 bytes an image: this allows for a few million, and refuses anything bigger
# rather than reading it all into memory.
MAX_SPLIT = 512 << 20


@dataclass(frozen=True)
class Split:
    """The images a run trained and validated on, labelled by their index in class_names."""

    class_names: list[str]
    train: list[Example]
    validation: list[Example]


def write(folder: Path, model: keras.Model, split: Split, config: dict, history: dict, metrics: dict) -> None:
    """Write a run's model, labels, split and records into folder; the plots and the report are the trainer's."""
    model.save(folder / MODEL)
    write_labels(folder / LABELS, split.class_names)
    write_split(folder, split)
    write_json(folder / CONFIG, config)
    write_json(folder / HISTORY, history)
    write_json(folder / METRICS, metrics)


def write_split(folder: Path, split: Split) -> None:
    listing = {part: [{"path": str(e.path.resolve()), "label": e.label} for e in getattr(split, part)] for part in PARTS}
    write_json(folder / SPLIT, {"class_names": split.class_names, **listing})


def read_split(folder: Path) -> Split:
    """The split.json in folder, checked: a BinbotError naming it if it is missing or not one binbot train wrote."""
    path = folder / SPLIT
    try:
        data = boundedjson.read(path, MAX_SPLIT)
    except FileNotFoundError:
        raise BinbotError(f"{path}: not found (binbot train writes it beside model.keras)") from None
    try:
        class_names = data["class_names"]
        if not (isinstance(class_names, list) and all(isinstance(name, str) for name in class_names)):
            raise TypeError("class_names should be a list of names")
        parts = {part: [_example(entry, len(class_names)) for entry in data[part]] for part in PARTS}
    except (KeyError, TypeError, ValueError) as error:
        raise BinbotError(f"{path}: not a split.json written by binbot train ({type(error).__name__}: {error})") from None
    return Split(class_names, **parts)


def _example(entry: dict, n_classes: int) -> Example:
    label = entry["label"]
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < n_classes:
        raise ValueError(f"label {label!r} is not the index of one of its {n_classes} classes")
    if not isinstance(entry["path"], str):
        raise TypeError(f"path {entry['path']!r} is not a string")
    return Example(Path(entry["path"]), label)


def labels_beside(checkpoint: Path) -> Path:
    """Where a checkpoint's labels.txt is: beside a checkpoint file; in a SavedModel folder, or else beside it."""
    if checkpoint.is_dir() and (checkpoint / LABELS).is_file():
        return checkpoint / LABELS
    return checkpoint.parent / LABELS
