"""JSON from outside the process, read within bounds.

Everything BinBot reads as JSON from a file or a peer it does not control (a bundle's bundle.json,
a kept frame's sidecar, a Pi's /healthz answer, the label page's POST bodies) goes through here:
at most max_bytes of UTF-8, nested at most MAX_DEPTH deep, each number at most MAX_NUMBER
characters and finite. Anything else is a BinbotError "WHERE: problem" in one line, never a
RecursionError or ValueError from inside the parser; files are read through binbot.boundedfile, so
a FIFO or a device named like a JSON file is refused instead of read.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from binbot import boundedfile
from binbot.errors import BinbotError

MAX_DEPTH = 32  # BinBot's own files nest 4 deep at most
MAX_NUMBER = 32  # characters: a 64-bit integer has 20, a double's shortest repr 24
# A string, escapes and all (the unrolled form never backtracks), and the brackets left once strings are gone.
STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
BRACKET = re.compile(r"[\[\]{}]")


def parse(data: bytes | str, where: str, max_bytes: int) -> object:
    """data as JSON, or a BinbotError naming where and what is wrong."""
    if len(data) > max_bytes:
        raise BinbotError(f"{where}: over {max_bytes:,} bytes, too big to be what it claims")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BinbotError(f"{where}: not UTF-8 text (byte {error.start})") from None
    depth = nesting(data)
    if depth > MAX_DEPTH:
        raise BinbotError(f"{where}: nested more than {MAX_DEPTH} levels deep, which no BinBot JSON is")
    try:
        return json.loads(data, parse_int=_integer(where), parse_float=_float(where), parse_constant=_constant(where))
    except json.JSONDecodeError as error:
        raise BinbotError(f"{where}: not valid JSON ({error})") from None


def read(path: Path, max_bytes: int) -> object:
    """The JSON file at path, read within bounds; FileNotFoundError if it is not there, else BinbotError."""
    return parse(boundedfile.read(path, max_bytes, "a JSON file"), str(path), max_bytes)


def nesting(text: str) -> int:
    """How deep text's arrays and objects nest, counted up to MAX_DEPTH + 1 (strings' brackets not counted)."""
    depth = deepest = 0
    for bracket in BRACKET.finditer(STRING.sub('""', text)):
        if bracket.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        else:
            depth -= 1
    return deepest


def _short(text: str, where: str) -> str:
    if len(text) > MAX_NUMBER:
        raise BinbotError(f"{where}: holds a number of {len(text):,} characters; no BinBot value needs more than "
                          f"{MAX_NUMBER}")
    return text


def _integer(where: str):
    return lambda text: int(_short(text, where))


def _float(where: str):
    def parse_float(text: str) -> float:
        value = float(_short(text, where))
        if not math.isfinite(value):
            raise BinbotError(f"{where}: holds {text}, beyond what a number can be")
        return value
    return parse_float


def _constant(where: str):
    def parse_constant(name: str) -> float:
        raise BinbotError(f"{where}: holds {name}, which is not JSON")
    return parse_constant
