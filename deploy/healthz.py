"""A Pi's /healthz as deploy reads it: checked where it enters, described in one line, judged serving or not.

The Pi's own health.py (scripts/) fetches the answer on the Pi and prints it as JSON; here it goes
through binbot.boundedjson and a check of the fields deploy reads, so a service answering something
else (a field of the wrong type, a 5,000-digit number) is a row saying so, never a traceback.
"""

from __future__ import annotations

import json
import re

from binbot import boundedjson
from binbot.errors import BinbotError

MAX_HEALTH = 1 << 20  # bytes of a /healthz answer; the service's own is about 1 KB
# The fields of /healthz that deploy reads, and their types: None (JSON null) is as good as absent.
HEALTH_FIELDS = {"ok": (bool,), "model": (str,), "fps": (int, float), "reload_error": (str,), "source": (dict,)}
SOURCE_FIELDS = {"state": (str,), "error": (str,)}


def parse_health(text: str) -> dict:
    """/healthz as the Pi's health.py printed it, checked: a field of the wrong type makes it no answer."""
    try:
        health = boundedjson.parse(text.strip(), "/healthz", MAX_HEALTH)
    except BinbotError as error:
        return {"unreachable": shortened(text.strip()) if text.strip() and not text.lstrip().startswith("{")
                else str(error)}
    problem = health_problem(health)
    return {"unreachable": f"/healthz answered {problem}"} if problem else health


def health_problem(health: object) -> str:
    """What makes health not a /healthz answer this binbot reads ("" if nothing)."""
    if not isinstance(health, dict):
        return "with something other than a JSON object"
    fields = [(key, health.get(key), kinds) for key, kinds in HEALTH_FIELDS.items()]
    source = health.get("source")
    if isinstance(source, dict):
        fields += [(f"source.{key}", source.get(key), kinds) for key, kinds in SOURCE_FIELDS.items()]
    for name, value, kinds in fields:
        if value is not None and (not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))):
            return f"with {name} = {shortened(json.dumps(value))}, not {' or '.join(k.__name__ for k in kinds)}"
    return ""


def shortened(text: str, most: int = 120) -> str:
    return text if len(text) <= most else text[:most] + "..."


def why_not_serving(health: dict, want: str, error_before: str, timeout: float) -> str:
    """"" if health reports want and ok; else the reason, in the service's own words where it gave some."""
    if serving(health, want):
        return ""
    if "unreachable" in health:
        return f"/healthz unreachable after the reload ({health['unreachable']})"
    reload_error = health.get("reload_error") or ""
    if reload_error and reload_error != error_before:
        # The daemon stamps the time in front; the message after it is what matters here.
        return f"the service refused it: {re.sub(r'^[0-9]{4}-[0-9-]+T[^ ]*: ', '', reload_error)}"
    if health.get("model") == want:
        return f"it is loaded but /healthz is not ok ({describe_health(health)})"
    return f"/healthz still reports model {health.get('model', '?')} after {timeout:g} s"


def serving(health: dict, model: str) -> bool:
    return bool(model) and health.get("model") == model and bool(health.get("ok"))


def describe_health(health: dict) -> str:
    if "unreachable" in health:
        return f"unreachable ({health['unreachable']})"
    parts = [f"{'ok' if health.get('ok') else 'NOT ok'}", f"model {health.get('model', '?')}"]
    if "fps" in health:
        parts.append(f"{health['fps']} fps")
    source = health.get("source")
    if isinstance(source, dict) and source.get("state") not in (None, "open"):
        parts.append(f"source {source['state']}{': ' + source['error'] if source.get('error') else ''}")
    if health.get("reload_error"):
        parts.append(f"last reload failed: {health['reload_error']}")
    return ", ".join(parts)
