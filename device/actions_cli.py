"""`binbot actions test`: each configured GPIO action once, by hand, to check the wiring."""

from __future__ import annotations

import argparse
from pathlib import Path

from binbot.device import paths
from binbot.helpformat import DefaultsFormatter, epilog

EPILOG = epilog(
    ("sudo systemctl stop binbot", "the service holds the pins while it runs"),
    (f"{paths.VENV}/bin/binbot actions test --config {paths.CONFIG_FILE}", "each action once, then rest"),
    ("sudo systemctl start binbot", "back to sorting"),
    ("GPIOZERO_PIN_FACTORY=mock GPIOZERO_MOCK_PIN_CLASS=mockpwmpin binbot actions test --config binbot.toml",
     "without a Pi: gpiozero's mock pins (PWM ones, for a servo)"),
)


def register(commands: argparse._SubParsersAction) -> None:
    actions = commands.add_parser("actions", help="the GPIO actions of the [gpio] table (Pi)",
                                  description="Commands on the GPIO actions configured in binbot.toml's [gpio].",
                                  epilog=EPILOG, formatter_class=DefaultsFormatter)
    verbs = actions.add_subparsers(dest="actions_command", metavar="ACTION", required=True)
    test = verbs.add_parser(
        "test", help="do each configured action once, printing what it does (Pi)",
        description="Do each action of the [gpio] table once (each class's, then the default's): turn the "
        "servo, pulse the pin, hold, return to rest; then release the pins. Stop the daemon first "
        "(sudo systemctl stop binbot): it holds the pins while it runs.",
        epilog=EPILOG, formatter_class=DefaultsFormatter)
    test.add_argument("--config", type=Path, required=True, help=f"TOML settings file, e.g. {paths.CONFIG_FILE}")
    test.set_defaults(handler=_test)


def _test(args: argparse.Namespace) -> int:
    import logging
    import sys
    import time

    from binbot.device.config import load_config
    from binbot.device.gpio import build_gpio
    from binbot.device.metrics import Metrics
    from binbot.errors import BinbotError

    config = load_config(args.config, {})
    if config.output("gpio") is None:
        raise BinbotError(f"{args.config}: no [gpio] table: no actions to test")
    shown = logging.StreamHandler(sys.stdout)  # what the output does is this command's output
    logging.getLogger("binbot.gpio").addHandler(shown)
    logging.getLogger("binbot.gpio").setLevel(logging.INFO)
    gpio = build_gpio(config.output("gpio"), config, Metrics())
    try:
        for action in gpio.settings.actions.values():
            gpio.perform(action)
    finally:
        gpio.close(time.monotonic() + 2.0)
    print(f"{len(gpio.settings.actions)} action(s) done; at rest, pins released")
    return 0
