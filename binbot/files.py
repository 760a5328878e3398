"""Outputs that appear whole or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from binbot.errors import BinbotError

PARTIAL = ".partial"  # the suffix of a file write_atomic is writing; one a crash left can be removed


def check_can_write(out: Path, force: bool) -> None:
    """Fail early, before long work, if out exists and may not be replaced, or cannot be written."""
    if out.exists() and not force:
        raise BinbotError(f"{out}: already exists (choose another --out, or pass --force to replace it)")
    if out.exists() and not out.is_dir():
        raise BinbotError(f"{out}: exists and is not a folder")
    parent = out.absolute().parent
    while not parent.exists():  # build_directory will create it, and needs to write in its first existing ancestor
        parent = parent.parent
    if not parent.is_dir():
        raise BinbotError(f"{out}: cannot be created: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BinbotError(f"{out}: cannot be created: {parent} is not writable")


def check_out_apart(out: Path, inputs: dict[str, Path | None], inside_is_read: bool = True) -> None:
    """Refuse an out that is or holds an input (replacing it would delete the input), with or without
    --force; and, where inside_is_read, one inside an input folder, where it would be read as input."""
    target = out.resolve()
    for flag, path in inputs.items():
        if path is None:
            continue
        source = path.resolve()
        if target == source:
            raise BinbotError(f"{out}: is also {flag}; writing the output there would delete it (choose another --out)")
        if target in source.parents:
            raise BinbotError(f"{out}: holds {flag} {path}; writing the output there would delete it (choose another --out)")
        if inside_is_read and source in target.parents:
            raise BinbotError(f"{out}: inside {flag} {path}, where the output would be read as input "
                              "(choose an --out outside it)")


@contextmanager
def build_directory(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a scratch folder beside out that becomes out only if the block succeeds.

    An existing out is replaced (with force) only by a complete new one; on any
    failure the scratch folder is removed and out is left as it was.
    """
    out = Path(out)
    check_can_write(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        yield scratch
        os.chmod(scratch, 0o755)  # mkdtemp makes it private; the result is an ordinary folder
        if out.exists():
            retired = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, retired / out.name)
            os.replace(scratch, out)
            shutil.rmtree(retired)
        else:
            os.replace(scratch, out)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def write_json(path: Path, data: object) -> None:
    """Write data as JSON through a temporary file beside path, so path is never half-written."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write text through a temporary file beside path, so path is never half-written."""
    path = Path(path)
    try:
        write_atomic(path, text.encode())
    except OSError as error:
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
            raise BinbotError(f"{path}: cannot write there ({error.strerror or error})") from None
        raise BinbotError(f"{path}: cannot write it ({error.strerror or error}); it was left as it was") from None


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write data to a temporary file beside path, flush it to the disk and rename it over path, so path
    is whole or as it was, even after a power cut; OSError if that fails (the temporary file removed)."""
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(scratch, mode)  # mkstemp makes it 0600
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
