"""The one reader of JSON from outside: whatever it is given, a value or a one-line BinbotError."""

import os

import pytest

from binbot.boundedjson import MAX_DEPTH, parse, read
from binbot.errors import BinbotError


@pytest.mark.parametrize("data, problem", [
    (b"[" * 400_000, f"nested more than {MAX_DEPTH} levels deep"),
    (b'{"size": ' + b"9" * 5000 + b"}", "a number of 5,000 characters"),
    (b"[0." + b"1" * 5000 + b"]", "a number of 5,002 characters"),
    (b'{"p": NaN}', "holds NaN"),
    (b"[-Infinity]", "holds -Infinity"),
    (b"[1e999]", "holds 1e999"),
    (b'{"label": "can"', "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8 text (byte 0)"),
    (b" " * 2_000_000, "over 1,048,576 bytes"),
])
def test_malformed_json_is_a_one_line_error_naming_where(data, problem):
    with pytest.raises(BinbotError) as raised:
        parse(data, "pi1: /healthz", max_bytes=1 << 20)

    message = str(raised.value)
    assert message.startswith("pi1: /healthz: ") and problem in message and "\n" not in message


def test_json_within_the_bounds_is_parsed_brackets_in_strings_not_counted_as_nesting():
    deep_but_allowed = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)  # inside the outer object
    text = f'{{"name": "{"[" * 100}\\"{{", "n": [1, -2.5e3, 12345678901234567890], "deep": {deep_but_allowed}}}'

    value = parse(text, "x", max_bytes=10_000)

    assert value["name"] == "[" * 100 + '"{' and value["n"] == [1, -2500.0, 12345678901234567890]


def test_a_fifo_named_like_a_json_file_is_refused_at_once_not_waited_on(tmp_path):
    fifo = tmp_path / "20261130T144223123Z-3fa2b1c9.json"
    os.mkfifo(fifo)

    with pytest.raises(BinbotError, match="not a regular file"):
        read(fifo, max_bytes=1024)


def test_a_folder_and_a_file_too_big_are_refused_and_a_missing_file_is_left_to_the_caller(tmp_path):
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "big.json").write_text("[" + "0," * 1000 + "0]")

    with pytest.raises(BinbotError, match="a folder"):
        read(tmp_path / "folder.json", max_bytes=1024)
    with pytest.raises(BinbotError, match="over 1,024 bytes"):
        read(tmp_path / "big.json", max_bytes=1024)
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "missing.json", max_bytes=1024)
