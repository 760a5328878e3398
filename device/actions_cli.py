"""`binbot actions test`: each configured GPIO action once, by hand, to check the wiring."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    actions = commands.add_parser("actions", help="the GPIO actions of the [gpio] table (device)",
                                  description="Commands on the GPIO actions configured in binbot.toml's [gpio].")
    verbs = actions.add_subparsers(dest="actions_command", metavar="ACTION", required=True)
    test = verbs.add_parser(
        "test", help="do each configured action once, printing what it does",
        description="Do each action of the [gpio] table once (each class's, then the default's): turn the "
        "servo, pulse the pin, hold, return to rest; then release the pins. Stop the daemon first "
        "(sudo systemctl stop binbot): it holds the pins while it runs.")
    test.add_argument("--config", type=Path, required=True, help="TOML settings file, e.g. /etc/binbot/binbot.toml")
    test.set_defaults(handler=_test)


def _test(args: argparse.Namespace) -> int:
    from binbot.device.config import load_config
    from binbot.device.gpio import build_gpio
    from binbot.device.metrics import Metrics
    from binbot.errors import BinbotError

    config = load_config(args.config, {})
    if "gpio" not in config.tables:
        raise BinbotError(f"{args.config}: no [gpio] table: no actions to test")
    gpio = build_gpio(config, Metrics(), print)
    try:
        for action in gpio.settings.actions.values():
            gpio.perform(action)
    finally:
        gpio.close()
    print(f"{len(gpio.settings.actions)} action(s) done; at rest, pins released")
    return 0
