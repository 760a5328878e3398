"""labels.txt: one class name per line, in the order of the model's outputs."""

from __future__ import annotations

from pathlib import Path

from binbot import boundedfile
from binbot.errors import BinbotError


MAX_LABELS = 1 << 20  # bytes; a thousand class names take some 20 KB


def read_labels(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        lines = boundedfile.read(path, MAX_LABELS, "a labels file").decode("utf-8").splitlines()
    except FileNotFoundError:
        raise BinbotError(f"{path}: labels file not found") from None
    except UnicodeDecodeError as error:
        raise BinbotError(f"{path}: not UTF-8 text (byte {error.start}); labels are written as UTF-8") from None
    labels = [line.strip() for line in lines if line.strip()]
    if len(labels) < 2:
        raise BinbotError(f"{path}: has {len(labels)} label(s); a classifier needs at least 2")
    if len(set(labels)) != len(labels):
        raise BinbotError(f"{path}: a label appears more than once")
    return labels


def write_labels(path: str | Path, labels: list[str]) -> None:
    Path(path).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
