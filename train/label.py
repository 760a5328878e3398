"""`binbot label`: file the frames in FIELD/unlabelled/ into FIELD/<class>/ from a page in a browser.

A kept frame is a pair, <id>.jpg and its sidecar <id>.json (binbot.device.kept). Filing one moves
the pair into FIELD/<class>/ (or FIELD/discarded/) as the field folder moves pairs
(binbot.device.fieldfolder: renames, the sidecar last, never overwriting). What comes out is the
layout `binbot train --data` reads (it skips unlabelled/, discarded/ and the sidecars), so sorting
the files by hand is just as good.

The page and its API are served by binbot.train.label_server.
"""

from __future__ import annotations

import shlex
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from binbot import boundedfile
from binbot.device import kept
from binbot.device.fieldfolder import (DISCARDED, UNLABELLED, FrameMissing, FrameTaken, class_folders,
                                       class_name_problem, move_pair, waiting)
from binbot.device.httpguard import Refused
from binbot.errors import BinbotError

TOP = 3  # classes shown with bars for each frame


@dataclass(frozen=True)
class Move:
    id: str
    to: str  # the class folder, or DISCARDED


class Field:
    """A field folder, its classes and this session's moves: the API without the HTTP. Thread-safe."""

    def __init__(self, root: Path, classes: list[str], log: Callable[[str], None] = lambda line: None):
        self.root, self.classes, self._log = Path(root), list(classes), log
        self._moves: list[Move] = []  # this session's, for undo; the last one on top
        self._entries: dict[str, dict] = {}  # sidecars as the page shows them, by id (a frame's sidecar never changes)
        self._lock = threading.Lock()

    @property
    def unlabelled(self) -> Path:
        return self.root / UNLABELLED

    def state(self) -> dict:
        """What GET /api/frames answers."""
        with self._lock:
            frames, problems = self._frames()
            filed = Counter(move.to for move in self._moves)
            last = self._moves[-1] if self._moves else None
        return {
            "field": str(self.root), "classes": self.classes, "frames": frames, "problems": problems,
            "filed": {name: filed[name] for name in [*self.classes, DISCARDED]},
            "undo": last and {"id": last.id, "to": last.to},
            "next": f"binbot train --data PHOTOS --data {shlex.quote(str(self.root))} "
                    "--init RUN/model.keras --out NEWRUN",
        }

    def jpeg(self, frame_id: str) -> bytes:
        """The JPEG of a frame left to label."""
        with self._lock:
            self._check_left(frame_id)
        try:  # outside the lock, and within bounds: a slow read, or a FIFO, holds up this request alone
            return boundedfile.read(self.unlabelled / f"{frame_id}.jpg", kept.MAX_JPEG, "a JPEG")
        except FileNotFoundError:
            raise Refused(404, f"{frame_id} is not in {UNLABELLED}/ (filed already?)") from None
        except BinbotError as error:
            raise Refused(500, str(error)) from None

    def file(self, frame_id: str, label: str) -> dict:
        """Move a frame left to label into its class folder."""
        if label not in self.classes:
            raise Refused(400, f"{label!r} is not one of the classes ({', '.join(self.classes)})")
        return self._move_out(frame_id, label)

    def discard(self, frame_id: str) -> dict:
        return self._move_out(frame_id, DISCARDED)

    def undo(self) -> dict:
        """Move the session's last filed or discarded frame back to unlabelled/."""
        with self._lock:
            if not self._moves:
                raise Refused(409, "nothing to undo in this session")
            last = self._moves[-1]
            try:
                self._move(last.id, last.to, UNLABELLED)
            except Refused as refused:
                if refused.status == 404:  # moved away by hand since: there is nothing left to undo
                    self._moves.pop()
                raise
            self._moves.pop()
        self._log(f"label: undone: {last.id} back from {last.to}/ to {UNLABELLED}/")
        return {"id": last.id, "from": last.to, "to": UNLABELLED}

    def _move_out(self, frame_id: str, to: str) -> dict:
        with self._lock:
            self._check_left(frame_id)
            self._move(frame_id, UNLABELLED, to)
            self._moves.append(Move(frame_id, to))
        self._log(f"label: {frame_id} -> {to}/")
        return {"id": frame_id, "from": UNLABELLED, "to": to}

    def _move(self, frame_id: str, source: str, to: str) -> None:
        """Move a pair between two sub-folders; a refusal is the HTTP answer for why. The callers hold the lock."""
        try:
            move_pair(frame_id, self.root / source, self.root / to)
        except FrameMissing as missing:
            raise Refused(404, str(missing)) from None
        except FrameTaken as taken:
            raise Refused(409, str(taken)) from None
        except BinbotError as error:
            raise Refused(500, str(error)) from None

    def _check_left(self, frame_id: str) -> None:
        if not kept.is_id(frame_id):
            raise Refused(400, f"{frame_id!r} is not a kept frame's id (like 20261130T144223123Z-3fa2b1c9)")
        if not (self.unlabelled / f"{frame_id}.json").is_file():
            raise Refused(404, f"{frame_id} is not in {UNLABELLED}/ (filed already?)")

    def _frames(self) -> tuple[list[dict], list[str]]:
        frames, problems = [], []
        for frame_id in waiting(self.root):
            if not (self.unlabelled / f"{frame_id}.jpg").is_file():
                problems.append(f"{UNLABELLED}/{frame_id}.json: its {frame_id}.jpg is missing")
                continue
            if frame_id not in self._entries:
                self._entries[frame_id] = frame_entry(self.unlabelled / f"{frame_id}.json")
            frames.append(self._entries[frame_id])
        return frames, problems


def frame_entry(path: Path) -> dict:
    """A sidecar as the page shows it; one that cannot be read is still listed, with its problem, to be filed."""
    try:
        frame = kept.read_sidecar(path)
    except BinbotError as error:
        return {"id": path.stem, "problem": str(error)}
    return {"id": frame.id, "label": frame.label, "confidence": frame.confidence,
            "top": [{"label": label, "p": p} for label, p in frame.top(TOP)], "reasons": frame.reasons,
            "time": frame.time, "model": frame.model, "item": frame.item, "origin": frame.origin}


def open_field(root: Path, given: list[str] | None = None, log: Callable[[str], None] = print) -> Field:
    """The field folder at root, with its classes: given (--classes), else those the sidecars score in
    the model's order (their union, first seen first, if they differ); then any other class folder in root."""
    root = Path(root)
    if not (root / UNLABELLED).is_dir():
        raise BinbotError(f"{root}: has no {UNLABELLED}/ folder of frames to label "
                          "(binbot collect puts the frames it copies from a Pi there)")
    if given is not None:
        for name in given:
            if problem := class_name_problem(name):
                raise BinbotError(f"--classes: {problem}")
        if len(set(given)) != len(given):
            raise BinbotError("--classes: a class is named twice")
        classes = list(given)
    else:
        classes = sidecar_classes(root, log)
    folders = [name for name in class_folders(root) if not class_name_problem(name)]
    return Field(root, classes + [name for name in folders if name not in classes], log)


def sidecar_classes(root: Path, log: Callable[[str], None]) -> list[str]:
    """The classes the sidecars in root/unlabelled/ score, first seen first; names unfit for a folder are skipped."""
    unlabelled = root / UNLABELLED
    classes: dict[str, None] = {}
    for frame_id in waiting(root):
        try:
            frame = kept.read_sidecar(unlabelled / f"{frame_id}.json")
        except BinbotError:
            continue  # listed on the page with its problem
        for name in frame.classes:
            if name not in classes and (problem := class_name_problem(name)):
                log(f"label: warning: {unlabelled / frame_id}.json: class skipped: {problem} (use --classes)")
            classes.setdefault(name, None)
    return [name for name in classes if not class_name_problem(name)]
