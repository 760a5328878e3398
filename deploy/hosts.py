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

from dataclasses import replace
from pathlib import Path

from binbot.errors import BinbotError
from binbot.tomlfile import read_toml
from binbot.deploy.settings import Settings
from binbot.deploy.remote import HostSpec, parse_host

PER_HOST = ("remote_dir", "reload_command", "health_url")


def read_hosts_file(path: Path, defaults: Settings) -> list[tuple[HostSpec, Settings]]:
    """Each table's host, with the settings the command line gave overridden by the table's own."""
    tables = read_toml(path, "hosts file")
    if not tables:
        raise BinbotError(f"{path}: lists no hosts (expected a table per Pi, e.g. [kitchen] with host = \"pi@kitchen.local\")")
    hosts = []
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise BinbotError(f"{path}: {name} should be a table, e.g. [{name}] with host = \"pi@{name}.local\"")
        unknown = sorted(set(table) - {"host", *PER_HOST})
        if unknown:
            raise BinbotError(f"{path}: [{name}] has unknown key {unknown[0]!r} (known: host, {', '.join(PER_HOST)})")
        for key, value in table.items():
            if not isinstance(value, str) or not value:
                raise BinbotError(f"{path}: [{name}] {key} should be a non-empty string, not {value!r}")
        if "host" not in table:
            raise BinbotError(f"{path}: [{name}] has no host (e.g. host = \"pi@{name}.local\")")
        overrides = {key: table[key] for key in PER_HOST if key in table}
        hosts.append((parse_host(table["host"], name), replace(defaults, **overrides)))
    return hosts
