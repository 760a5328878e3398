"""Every output of `binbot run`, by the name of its table in binbot.toml.

Adding an output is a module and one line here. The module declares its table's settings (a
binbot.schema dataclass) and how the output is built from them, as an OutputKind named KIND; this
table names where that is, so each module is imported only when its table is read (paho-mqtt, say,
is an optional extra).
"""

from __future__ import annotations

from importlib import import_module

OUTPUTS = {
    "events": "binbot.device.jsonlines:EVENTS",
    "results": "binbot.device.jsonlines:RESULTS",
    "view": "binbot.device.view:KIND",
    "gpio": "binbot.device.gpio:KIND",
    "mqtt": "binbot.device.mqtt:KIND",
    "keep": "binbot.device.keep:KIND",
}


def names() -> list[str]:
    return list(OUTPUTS)


def kind(name: str):
    """The OutputKind of the output whose table is name."""
    module, _, attribute = OUTPUTS[name].partition(":")
    return getattr(import_module(module), attribute)


def settings(name: str) -> type:
    return kind(name).settings


def always_on(name: str) -> bool:
    """Whether the output runs with its defaults when the file has no table for it (events, the view)."""
    return kind(name).always_on
