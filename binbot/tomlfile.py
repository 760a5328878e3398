"""Reading a TOML settings file (the daemon's config, deploy's hosts file) with one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from binbot import boundedfile
from binbot.errors import BinbotError

MAX_TOML = 1 << 20  # bytes; a config file with every table filled in is a few KB


def read_toml(path: Path, what: str) -> dict:
    """The file's tables and keys; a file that cannot be read or is not TOML is an error naming the file.

    Read as any file from outside is (binbot.boundedfile): a FIFO or a file of more than MAX_TOML is
    refused, and nesting too deep or a number too long is an error, not a crash of the parser.
    """
    try:
        data = boundedfile.read(path, MAX_TOML, f"the {what}")
    except FileNotFoundError:
        raise BinbotError(f"{path}: {what} not found") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise BinbotError(f"{path}: not UTF-8 text (byte {error.start}); TOML files must be saved as UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise BinbotError(f"{path}: not valid TOML ({error})") from None
    except RecursionError:
        raise BinbotError(f"{path}: nested deeper than any {what} needs; not a {what} binbot wrote") from None
    except ValueError as error:  # Python's limit on the digits of an integer
        raise BinbotError(f"{path}: not a {what} binbot reads ({error})") from None
