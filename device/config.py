"""`binbot run` settings: a strict TOML file, overridden by command-line flags.

Every key is one of RunConfig's fields; an unknown key or a value of the wrong type or range is
an error that names the key, so a typo in /etc/binbot/binbot.toml cannot silently change nothing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from binbot.errors import BinbotError
from binbot.tomlfile import read_toml

MAX_THREADS = 64  # far beyond a Pi's cores; a huge count crashes the interpreter instead of failing cleanly
# Each live viewer holds two of the HTTP server's 32 connections (stream and events); the rest stay for others.
MAX_VIEW_CLIENTS = 8
MAX_VIEW_FPS = 30.0
VIEW_WIDTHS = (32, 4096)


@dataclass(frozen=True)
class RunConfig:
    bundle: str = ""
    source: str = "selftest:"  # the bundle's own self-test frames, so the daemon runs anywhere
    threads: int = min(os.cpu_count() or 1, MAX_THREADS)
    events: str = "-"  # a JSON-lines file, or - for stdout
    results: str = ""  # a JSON-lines file for every frame's raw result; empty: not written
    http: str = "127.0.0.1:8080"  # HOST:PORT (port 0 picks a free one), or "off"
    window: int = 5
    threshold: float = 0.6
    top_k: int = 3
    loop: bool = True
    fps: float = 0.0  # replay pacing; 0 replays as fast as frames are classified
    stale_after: float = 5.0  # /healthz fails when the last classified frame is older than this
    view: bool = True  # the live view on the HTTP server: a page at /, /stream.mjpg, /events, /snapshot.jpg
    view_fps: float = 5.0  # frames a second the live view encodes and sends, at most
    view_width: int = 640  # pixels; a narrower frame (a lores stream) is sent as the source gave it
    view_clients: int = 4  # viewers at once (each holds a stream and an event feed); more are answered 503
    # Outputs with settings of their own have a TOML table each ([mqtt], [gpio], [keep]); each output's module
    # checks its table as strictly as this file checks the keys above. Not settable on the command line
    # (except --keep-dir, which run_cli puts into [keep]).
    tables: dict = field(default_factory=dict)
    config_file: str = ""  # where the tables came from, for their error messages

    @property
    def http_address(self) -> tuple[str, int] | None:
        if self.http == "off":
            return None
        host, _, port = self.http.rpartition(":")
        return host.removeprefix("[").removesuffix("]"), int(port)  # [::1]:8080 is IPv6's loopback


OUTPUT_TABLES = ("gpio", "mqtt", "keep")
KEYS = {f.name: f.type for f in fields(RunConfig) if f.name not in ("tables", "config_file")}
TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def load_config(path: Path | None, overrides: dict) -> RunConfig:
    """The file's settings (if any) with the non-None overrides on top, validated."""
    values: dict = {}
    if path is not None:
        read = read_toml(path, "config file")
        tables = {key: read.pop(key) for key in OUTPUT_TABLES if key in read}
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise BinbotError(f"{path}: {name} should be a table ([{name}] with its settings under it)")
        values = {key: check(key, value, str(path)) for key, value in read.items()}
        values.update(tables=tables, config_file=str(path))
    values.update({key: check(key, value, "command line") for key, value in overrides.items() if value is not None})
    config = replace(RunConfig(), **values)
    if not config.bundle:
        raise BinbotError("no bundle: pass --bundle or set bundle in the config file")
    return config


def check(key: str, value: object, where: str) -> object:
    """value, if key is a setting and value fits it; else a BinbotError naming both."""
    if key not in KEYS:
        tables = ", ".join(f"[{name}]" for name in OUTPUT_TABLES)
        raise BinbotError(f"{where}: unknown key {key!r} (known: {', '.join(KEYS)}; and the tables {tables})")
    kind = TYPES[KEYS[key]]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BinbotError(f"{where}: {key} should be a {kind.__name__}, not {value!r}")
    problem = range_problem(key, value)
    if problem:
        raise BinbotError(f"{where}: {key} = {value!r}: {problem}")
    return value


def range_problem(key: str, value: object) -> str:
    """What is wrong with a setting's value of the right type, or "" if nothing is."""
    if isinstance(value, float) and not math.isfinite(value):  # TOML and argparse's float() both accept nan and inf
        return "must be a finite number"
    if key == "threads" and not 1 <= value <= MAX_THREADS:
        return f"must be between 1 and {MAX_THREADS}"
    if key in ("window", "top_k") and value < 1:
        return "must be at least 1"
    if key == "threshold" and not 0.0 <= value <= 1.0:
        return "must be between 0 and 1"
    if key in ("fps", "stale_after") and value < 0:
        return "must not be negative"
    if key == "view_fps" and not 0 < value <= MAX_VIEW_FPS:
        return f"must be above 0 and at most {MAX_VIEW_FPS:g}"
    if key == "view_width" and not VIEW_WIDTHS[0] <= value <= VIEW_WIDTHS[1]:
        return f"must be between {VIEW_WIDTHS[0]} and {VIEW_WIDTHS[1]}"
    if key == "view_clients" and not 1 <= value <= MAX_VIEW_CLIENTS:
        return f"must be between 1 and {MAX_VIEW_CLIENTS}"
    if key == "http" and value != "off":
        host, colon, port = value.rpartition(":")
        if not colon or not host or not port.isdigit() or int(port) > 65535:
            return "should be HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080) or off"
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            return "an IPv6 address goes in brackets, as [::1]:8080"
    return ""
