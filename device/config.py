"""`binbot run` settings: one TOML file, declared once here and in each output's module, read strictly.

The top-level keys are the daemon's own (RunConfig); every output has a table of its own, named in
binbot.device.registry and declared in the output's module ([events], [results], [view], [gpio],
[mqtt], [keep]). Everything is read by binbot.schema: an unknown key or a value of the wrong type or
range is an error naming the file, the table and the key, so a typo in the Pi's binbot.toml
cannot silently change nothing. Command-line flags override the file, and are checked the same way.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, replace
from pathlib import Path

from binbot import schema
from binbot.errors import BinbotError
from binbot.schema import setting
from binbot.tomlfile import read_toml

MAX_THREADS = 64  # far beyond a Pi's cores; a huge count crashes the interpreter instead of failing cleanly
HTTP_SHAPE = "HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080; port 0: any free one) or off"
# The flat keys of the first binbot.toml, now each in its output's table: refused with what to write instead.
MOVED = {"view": ("view", "enabled"), "view_fps": ("view", "fps"), "view_width": ("view", "width"),
         "view_clients": ("view", "clients"), "events": ("events", "file"), "results": ("results", "file")}


def http_problem(value: str) -> str:
    """What is wrong with an http setting ("" if nothing)."""
    if value == "off":
        return ""
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        return f"should be {HTTP_SHAPE}"
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return "an IPv6 address goes in brackets, as [::1]:8080"
    return ""


@dataclass(frozen=True)
class RunConfig:
    bundle: str = setting("", "bundle folder, or a `current` symlink to one (followed again on SIGHUP)")
    source: str = setting("selftest:", "where frames come from: picamera2, opencv:INDEX|PATH|URL, replay:PATH "
                          "(a folder of images, a video or an .npz of frames) or selftest: (the bundle's own frames)")
    threads: int = setting(min(os.cpu_count() or 1, MAX_THREADS), "interpreter threads", low=1, high=MAX_THREADS,
                           shown_default="all cores")
    http: str = setting("127.0.0.1:8080", "address serving /healthz, /metrics, /latest and the live view",
                        shape=HTTP_SHAPE, check=http_problem)
    window: int = setting(5, "frames averaged before deciding what item is in view", low=1, high=1000)
    threshold: float = setting(0.6, "mean probability an item needs to be reported", low=0.0, high=1.0)
    top_k: int = setting(3, "classes listed per event and result", low=1, high=100)
    loop: bool = setting(True, "a replay starts again at its end (false: it plays once and the daemon exits)")
    fps: float = setting(0.0, "a replay's pace in frames a second; 0: as fast as frames are classified", low=0.0)
    stale_after: float = setting(5.0, "seconds without a classified frame before /healthz reports not ok",
                                 above=0.0, high=3600.0)
    # Each output's settings, by table name (binbot.device.registry), read from its table or its defaults.
    outputs: dict = dataclasses.field(default_factory=dict)
    config_file: str = ""  # where the settings came from, for the outputs' messages

    @property
    def http_address(self) -> tuple[str, int] | None:
        if self.http == "off":
            return None
        host, _, port = self.http.rpartition(":")
        return host.removeprefix("[").removesuffix("]"), int(port)  # [::1]:8080 is IPv6's loopback

    def output(self, name: str) -> object | None:
        """The settings of output name, or None if it is not turned on."""
        return self.outputs.get(name)


def keys() -> dict[str, dataclasses.Field]:
    """RunConfig's own settings (the top-level keys), by name."""
    return {field.name: field for field in dataclasses.fields(RunConfig) if "rule" in field.metadata}


def load_config(path: Path | None, overrides: dict[str, object]) -> RunConfig:
    """The file's settings (if any) with the non-None overrides on top, checked.

    overrides: flags by setting name, dotted for an output's table ("view.fps"); each is checked
    as the command line's, then takes the place of the file's value.
    """
    from binbot.device import registry

    raw = read_toml(path, "config file") if path is not None else {}
    where = str(path) if path is not None else "command line"
    refuse_flat_keys(raw, where)
    given = {key: value for key, value in overrides.items() if value is not None}
    for dotted, value in given.items():
        check_flag(dotted, value)
        table, _, key = dotted.rpartition(".")
        target = raw.setdefault(table, {}) if table else raw
        if not isinstance(target, dict):
            raise BinbotError(f"{where}: {table} should be a table ([{table}] with its settings under it)")
        target[key] = value
    tables = {name: raw.pop(name) for name in registry.names() if name in raw}
    unknown = [key for key in raw if key not in keys()]
    if unknown:
        raise BinbotError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(keys())}; and the tables "
                          f"{', '.join(f'[{name}]' for name in registry.names())})")
    config = schema.read(RunConfig, raw, where)
    outputs = {name: schema.read(registry.settings(name), tables.get(name, {}), where, name)
               for name in registry.names() if name in tables or registry.always_on(name)}
    config = replace(config, config_file=str(path) if path is not None else "")
    config = replace(config, outputs={name: registry.kind(name).settle(settings, config)
                                      for name, settings in outputs.items()})
    if not config.bundle:
        raise BinbotError("no bundle: pass --bundle or set bundle in the config file")
    return config


def check_flag(dotted: str, value: object) -> None:
    """A flag's value, checked as its setting's (a BinbotError naming the command line if it does not fit)."""
    from binbot.device import registry

    table, _, key = dotted.rpartition(".")
    cls = registry.settings(table) if table else RunConfig
    field = {field.name: field for field in dataclasses.fields(cls)}[key]
    schema.read_value(schema.field_type(cls, key), field, value, "command line", dotted)


def refuse_flat_keys(raw: dict, where: str) -> None:
    """A file in the first, flat form gets one line saying what to write instead."""
    for key, (table, new) in MOVED.items():
        if key in raw and not isinstance(raw[key], dict):
            value = schema.toml_value(raw[key])
            raise BinbotError(f"{where}: {key} is now {new} in the [{table}] table: write [{table}] then "
                              f"{new} = {value} (the settings of each output have a table of their own)")


def range_problem(key: str, value: object) -> str:
    """What is wrong with a top-level setting's value of the right type, or "" if nothing is."""
    return schema.value_problem(keys()[key].metadata["rule"], value)
