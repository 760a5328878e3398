"""Settings declared once, read by one strict reader, described in the docs from the same declaration.

A table of settings is a frozen dataclass whose fields are made with setting(): a default, one line
of meaning, and the bounds or choices a value must keep. read() turns a TOML table (or what the
command line gave) into that dataclass, refusing an unknown key, a value of the wrong type, one out
of range or a required one missing, each with one line naming the file, the table and the key. A
field whose type is another such dataclass is a sub-table ([gpio.servo]); dict[str, Dataclass] is a
table of named sub-tables ([gpio.classes.can]). A dataclass may define check(), which raises
SettingProblem for what involves two keys at once (band_low above band_high). reference() lists
every key, for the generated configuration reference.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from binbot.errors import BinbotError

REQUIRED = dataclasses.MISSING  # setting(REQUIRED, ...): a key the table must give


UNSET = object()


class SettingProblem(Exception):
    """What check() finds wrong: the key it is about ("" for the table as a whole), the problem, and where
    the key is when it is in a sub-table (table, relative to the one checked) with its value."""

    def __init__(self, key: str, problem: str, table: str = "", value: object = UNSET):
        super().__init__(problem)
        self.key, self.table, self.value = key, table, value


@dataclass(frozen=True)
class Rule:
    """What a value must be, beyond its type, and what it means."""

    doc: str
    low: float | None = None  # low <= value
    high: float | None = None  # value <= high
    above: float | None = None  # above < value
    choices: tuple | None = None
    pattern: str | None = None  # a str value must match it whole
    shape: str = ""  # the pattern in words, for the message and the reference
    check: Callable[[object], str] | None = None  # more: returns what is wrong, "" if nothing
    shown_default: str = ""  # the default in words, where the value depends on the machine ("all cores")


def setting(default: object, doc: str, **rule) -> dataclasses.Field:
    """A field of a settings table: its default (REQUIRED if none), one line of meaning, and its Rule."""
    metadata = {"rule": Rule(doc, **rule)}
    if isinstance(default, (list, dict, set)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def read(cls: type, table: object, where: str, name: str = "") -> object:
    """table (a TOML table) as an instance of the settings dataclass cls, checked; where names the file."""
    place = _place(where, name)
    if not isinstance(table, dict):
        raise BinbotError(f"{place} should be a table, not {_shown(table)}")
    fields = {field.name: field for field in dataclasses.fields(cls) if "rule" in field.metadata}
    unknown = [key for key in table if key not in fields]
    if unknown:
        raise BinbotError(f"{place} unknown key {unknown[0]!r} (known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, field in fields.items():
        if key in table:
            values[key] = read_value(hints[key], field, table[key], where, _join(name, key))
        elif field.default is REQUIRED and field.default_factory is REQUIRED:
            raise BinbotError(f"{place} needs {key} ({_rule(field).doc})")
    settings = cls(**values)
    try:
        settings.check() if hasattr(settings, "check") else None
    except SettingProblem as problem:
        place = _place(where, _join(name, problem.table) if problem.table else name)
        if not problem.key:
            raise BinbotError(f"{place} {problem}") from None
        value = getattr(settings, problem.key, None) if problem.value is UNSET else problem.value
        raise BinbotError(f"{place} {problem.key} = {_shown(value)}: {problem}") from None
    return settings


def field_type(cls: type, key: str) -> object:
    """The declared type of cls's setting key."""
    return typing.get_type_hints(cls)[key]


def read_value(kind: object, field: dataclasses.Field, value: object, where: str, dotted: str) -> object:
    """One key's value, checked against its declared type and rule."""
    table, key = dotted.rpartition(".")[0], dotted.rpartition(".")[2]
    place = _place(where, table)
    nested = _nested(kind)
    if nested is not None:
        return read(nested, value, where, dotted)
    entries = _entries(kind)
    if entries is not None:
        if not isinstance(value, dict):
            raise BinbotError(f"{place} {key} should be a table of tables ([{dotted}.NAME]), not {_shown(value)}")
        return {name: read(entries, entry, where, f"{dotted}.{name}") for name, entry in value.items()}
    base = _base(kind)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, base) or (base is not bool and isinstance(value, bool)):
        raise BinbotError(f"{place} {key} should be {_kind_name(base)}, not {_shown(value)}")
    problem = value_problem(_rule(field), value)
    if problem:
        raise BinbotError(f"{place} {key} = {_shown(value)}: {problem}")
    return value


def value_problem(rule: Rule, value: object) -> str:
    """What is wrong with a value of the right type under rule ("" if nothing)."""
    if isinstance(value, float) and not math.isfinite(value):  # TOML has nan and inf
        return "must be a finite number"
    if rule.choices is not None and value not in rule.choices:
        return f"must be one of {', '.join(map(str, rule.choices))}"
    if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
        return f"should be {rule.shape}"
    if rule.above is not None and not (value > rule.above and (rule.high is None or value <= rule.high)):
        return f"must be above {_number(rule.above)}" + (f" and at most {_number(rule.high)}" if rule.high is not None else "")
    low, high = rule.low, rule.high
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            return f"must be between {_number(low)} and {_number(high)}"
        return f"must be at least {_number(low)}" if low is not None else f"must be at most {_number(high)}"
    return rule.check(value) if rule.check else ""


@dataclass(frozen=True)
class Row:
    """One key of the configuration reference."""

    key: str  # dotted: gpio.servo.pin, gpio.classes.NAME.angle
    kind: str
    default: str  # as TOML writes it, or in words (literal False): "all cores", "(required)"
    allowed: str
    doc: str
    literal: bool = True


def reference(cls: type, name: str = "") -> Iterator[Row]:
    """Every key of cls (and of its sub-tables), in declaration order, as the docs show them."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if "rule" not in field.metadata:
            continue
        dotted, kind = _join(name, field.name), hints[field.name]
        nested, entries = _nested(kind), _entries(kind)
        if nested is not None:
            yield from reference(nested, dotted)
        elif entries is not None:
            yield from reference(entries, f"{dotted}.NAME")
        else:
            literal = not _rule(field).shown_default and not _required(field)
            yield Row(dotted, _kind_name(_base(kind), article=False), _default(field), allowed(_rule(field)),
                      _rule(field).doc, literal)


def allowed(rule: Rule) -> str:
    """A rule's bounds or choices in words, for the reference."""
    if rule.choices is not None:
        return ", ".join(map(str, rule.choices))
    if rule.shape:
        return rule.shape
    if rule.above is not None:
        return f"> {_number(rule.above)}" + (f", ≤ {_number(rule.high)}" if rule.high is not None else "")
    if rule.low is not None and rule.high is not None:
        return f"{_number(rule.low)} to {_number(rule.high)}"
    if rule.low is not None:
        return f"≥ {_number(rule.low)}"
    if rule.high is not None:
        return f"≤ {_number(rule.high)}"
    return ""


def _nested(kind: object) -> type | None:
    kind = _base(kind)
    return kind if isinstance(kind, type) and dataclasses.is_dataclass(kind) else None


def _entries(kind: object) -> type | None:
    kind = _base(kind)
    if typing.get_origin(kind) is dict:
        value = typing.get_args(kind)[1]
        return value if dataclasses.is_dataclass(value) else None
    return None


def _base(kind: object) -> object:
    """X for X | None (a setting whose default is None: TOML has no null, so it is set or left out)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        others = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return others[0]
    return kind


def _required(field: dataclasses.Field) -> bool:
    return field.default is REQUIRED and field.default_factory is REQUIRED


def _rule(field: dataclasses.Field) -> Rule:
    return field.metadata.get("rule") or Rule("")


def _default(field: dataclasses.Field) -> str:
    if _rule(field).shown_default:
        return _rule(field).shown_default
    if field.default is not REQUIRED:
        return "" if field.default is None else toml_value(field.default)
    if field.default_factory is not REQUIRED:
        return toml_value(field.default_factory())
    return "(required)"


def toml_value(value: object) -> str:
    """value as TOML writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


KIND_NAMES = {bool: ("true or false", "bool"), int: ("a whole number", "int"), float: ("a number", "float"),
              str: ("a string", "str")}


def _kind_name(kind: object, article: bool = True) -> str:
    """How a message (article) or the reference calls a type."""
    words, short = KIND_NAMES.get(kind, (f"a {getattr(kind, '__name__', kind)}", getattr(kind, "__name__", str(kind))))
    return words if article else short


def _number(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(name: str, key: str) -> str:
    return f"{name}.{key}" if name else key


def _place(where: str, table: str) -> str:
    return f"{where}: [{table}]" if table else f"{where}:"
