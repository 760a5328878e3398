"""A field folder: the frames the Pis kept, here on the workstation, sorted into classes as they are labelled.

    unlabelled/   frames collected and not labelled yet: `binbot collect` files new ones here
    <class>/      frames labelled as that class: `binbot label` moves them here, `binbot train --data` reads them
    discarded/    frames labelled as not worth training on

Each frame is a kept-frame pair, <id>.jpg and its sidecar <id>.json (binbot.device.kept). A pair
moves between folders by two renames, the JPEG first and the sidecar last, and never over a file
already there: a frame whose sidecar is in a folder is whole there, and a name taken twice costs no
frame. Hidden folders (collect's .collect-* copies under way) are not part of the layout.

The one owner of this layout: collect, label and the trainer's folder scan all go through here.
"""

from __future__ import annotations

import os
from pathlib import Path

from binbot.device.kept import kept_ids
from binbot.errors import BinbotError

UNLABELLED, DISCARDED = "unlabelled", "discarded"
NOT_CLASSES = (UNLABELLED, DISCARDED)
MAX_CLASS_NAME = 100


class FrameMissing(BinbotError):
    """A file of the pair is not in the folder it was to be moved from; nothing was moved."""


class FrameTaken(BinbotError):
    """A file of the pair is already in the folder it was to be moved to; nothing was moved."""


def class_folders(root: Path) -> list[str]:
    """The sorted names of root's class folders: its sub-folders, bar hidden ones, unlabelled/ and discarded/."""
    return sorted(p.name for p in Path(root).iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_CLASSES)


def class_name_problem(name: str) -> str:
    """Why name cannot be a class folder of a field folder ('' if it can)."""
    if not name or len(name) > MAX_CLASS_NAME:
        return f"a class name should be 1 to {MAX_CLASS_NAME} characters"
    if name in NOT_CLASSES:
        return f"{name!r} is the folder of {'frames not yet labelled' if name == UNLABELLED else 'discarded frames'}"
    if name.startswith(".") or any(c in name for c in "/\\\0") or not name.isprintable() or name != name.strip():
        return f"{name!r} cannot be a folder name (no leading dot, slash, control character or edge space)"
    return ""


def frames_here(root: Path) -> dict[str, Path]:
    """Each complete kept frame in root's unlabelled/, class folders and discarded/: its id -> its folder."""
    root = Path(root)
    return {frame_id: root / name
            for name in [UNLABELLED, *class_folders(root), DISCARDED]
            for frame_id in kept_ids(root / name)}


def waiting(root: Path) -> list[str]:
    """The ids of the frames in root/unlabelled/, left to label, oldest first."""
    return kept_ids(Path(root) / UNLABELLED)


def move_pair(frame_id: str, source: Path, to: Path) -> None:
    """Rename source/<id>.jpg, then source/<id>.json, into the folder to (made if missing).

    FrameMissing or FrameTaken if a file is not in source or is in to already; BinbotError if a
    rename fails, with the JPEG put back. In each case the pair is left whole where it was.
    """
    names = (f"{frame_id}.jpg", f"{frame_id}.json")
    missing = [name for name in names if not (source / name).is_file()]
    if missing:
        raise FrameMissing(f"{source.name}/{missing[0]} is not there (moved by hand?)")
    # Checked, not left to rename, which would replace the file silently. Only a move by another
    # program at the same moment could slip between the check and the rename.
    taken = [name for name in names if os.path.lexists(to / name)]
    if taken:
        raise FrameTaken(f"{to.name}/{taken[0]} exists already; nothing moved (compare the two and remove one by hand)")
    try:
        to.mkdir(exist_ok=True)
        os.rename(source / names[0], to / names[0])
        try:
            os.rename(source / names[1], to / names[1])
        except OSError:
            os.rename(to / names[0], source / names[0])
            raise
    except OSError as error:
        raise BinbotError(f"cannot move {frame_id} from {source.name}/ to {to.name}/ ({error.strerror or error}); "
                          "it was left where it was") from None
