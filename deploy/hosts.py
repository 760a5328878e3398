"""A hosts file, for deploying to Pis that are not all set up alike.

    # pis.toml: a table per Pi, named as the output should call it
    [kitchen]
    host = "pi@kitchen.local"

    [garage]
    host = "pi@192.168.1.40:2222"
    remote_dir = "/srv/binbot"                      # each of these three is optional and
    health_url = "http://127.0.0.1:8081/healthz"    # overrides the option of the same name
    reload_command = "systemctl reload binbot"      # for this Pi only

An unknown key is an error naming it, so a typo cannot silently deploy somewhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from binbot import schema
from binbot.errors import BinbotError
from binbot.schema import REQUIRED, setting
from binbot.tomlfile import read_toml
from binbot.deploy.settings import Settings
from binbot.deploy.remote import HostSpec, parse_host

SOME_TEXT = {"pattern": r".+", "shape": "a non-empty string"}


@dataclass(frozen=True)
class HostEntry:
    """One Pi's table in a hosts file; the keys left out take the command line's options."""

    host: str = setting(REQUIRED, "[user@]host[:port] as ssh takes it; a name from ~/.ssh/config works", **SOME_TEXT)
    remote_dir: str | None = setting(None, "the service's state folder on this Pi (--remote-dir)", **SOME_TEXT,
                                     shown_default="--remote-dir")
    reload_command: str | None = setting(None, "what makes this Pi's service load `current` again (--reload-command)",
                                         **SOME_TEXT, shown_default="--reload-command")
    health_url: str | None = setting(None, "this Pi's /healthz as seen on the Pi itself (--health-url)", **SOME_TEXT,
                                     shown_default="--health-url")


def read_hosts_file(path: Path, defaults: Settings) -> list[tuple[HostSpec, Settings]]:
    """Each table's host, with the settings the command line gave overridden by the table's own."""
    tables = read_toml(path, "hosts file")
    if not tables:
        raise BinbotError(f"{path}: lists no hosts (expected a table per Pi, e.g. [kitchen] with host = \"pi@kitchen.local\")")
    hosts = []
    for name, table in tables.items():
        entry = schema.read(HostEntry, table, str(path), name)
        overrides = {key: value for key, value in vars(entry).items() if key != "host" and value is not None}
        hosts.append((parse_host(entry.host, name), replace(defaults, **overrides)))
    return hosts
