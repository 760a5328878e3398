"""labels.txt: one class name per line, in the order of the model's outputs."""

from __future__ import annotations

from pathlib import Path

from binbot.errors import BinbotError


def read_labels(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BinbotError(f"{path}: labels file not found") from None
    labels = [line.strip() for line in lines if line.strip()]
    if len(labels) < 2:
        raise BinbotError(f"{path}: has {len(labels)} label(s); a classifier needs at least 2")
    if len(set(labels)) != len(labels):
        raise BinbotError(f"{path}: a label appears more than once")
    return labels


def write_labels(path: str | Path, labels: list[str]) -> None:
    Path(path).write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
