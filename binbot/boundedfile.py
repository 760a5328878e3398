"""A file from outside the process, read within bounds: a regular file of at most max_bytes.

A FIFO or a device named like the file is refused instead of read: opening a FIFO waits for a
writer for ever, and a device such as /dev/zero never ends.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from binbot.errors import BinbotError


def read(path: Path, max_bytes: int, expected: str = "a file") -> bytes:
    """The bytes of the regular file at path (expected: what it should be, for the message when it is not);
    FileNotFoundError if it is not there, else BinbotError."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as error:
        raise BinbotError(f"{path}: cannot read ({error.strerror or error})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise BinbotError(f"{path}: {'a folder' if stat.S_ISDIR(mode) else 'not a regular file'}, where {expected} "
                          "was expected")
    with os.fdopen(descriptor, "rb") as file:
        try:
            data = file.read(max_bytes + 1)
        except OSError as error:
            raise BinbotError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(data) > max_bytes:
        raise BinbotError(f"{path}: over {max_bytes:,} bytes, too big to be what it claims")
    return data
