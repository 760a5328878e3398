"""Reading a TOML settings file (the daemon's config, deploy's hosts file) with one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from binbot.errors import BinbotError


def read_toml(path: Path, what: str) -> dict:
    """The file's tables and keys; a file that cannot be read or is not TOML is an error naming the file."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise BinbotError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise BinbotError(f"{path}: is a folder, not a file (give the {what} itself)") from None
    except PermissionError:
        raise BinbotError(f"{path}: cannot read the {what}: permission denied") from None
    except OSError as error:
        raise BinbotError(f"{path}: cannot read the {what}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise BinbotError(f"{path}: not UTF-8 text (byte {error.start}); TOML files must be saved as UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise BinbotError(f"{path}: not valid TOML ({error})") from None
