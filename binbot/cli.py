"""The `binbot` command: each part registers its own subcommands here.

Subcommand modules must not import TensorFlow at import time, so that the device
commands (and every `--help`) work on a Pi where TensorFlow is not installed.
"""

from __future__ import annotations

import argparse
import sys

from binbot import __version__, quiet
from binbot.convert import cli as convert_cli
from binbot.deploy import cli as deploy_cli
from binbot.device import cli as device_cli
from binbot.errors import BinbotError
from binbot.helpformat import DefaultsFormatter, epilog
from binbot.train import cli as train_cli, label_cli

EPILOG = epilog(
    ("binbot train --data photos --out runs/first", "fit a classifier to photos/<class>/*.jpg"),
    ("binbot convert runs/first/model.keras --out bundles/first", "quantize it into a bundle for the Pi"),
    ("binbot deploy bundles/first pi@binbot.local", "serve it on a Pi, where `binbot run` is the service"),
    ("binbot collect pi@binbot.local --out field", "fetch the frames the Pi was unsure of"),
    ("binbot label field", "file them into classes, to train on with --data field"),
    notes="Each command says in the list above where it runs: on the workstation that trains, on the Pi, or both.",
    next_steps="`binbot COMMAND --help` for a command's options and examples; the docs (docs/, or `make docs`) "
    "for the whole story, in reading order.",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="binbot",
        description="Train a waste-sorting image classifier on a workstation, quantize it into a self-checking "
        "bundle, and run it on a Raspberry Pi camera as a service.",
        epilog=EPILOG, formatter_class=DefaultsFormatter,
    )
    parser.add_argument("--version", action="version", version=f"binbot {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train_cli.register(commands)
    convert_cli.register(commands)
    device_cli.register(commands)
    deploy_cli.register(commands)
    label_cli.register(commands)
    for command in leaf_parsers(parser):
        command.add_argument("-v", "--verbose", action="store_true",
                             help="also show debug lines, and the start-up and progress lines of TensorFlow's "
                             "and TensorFlow Lite's own code (oneDNN, CUDA, the XNNPACK delegate)")
    return parser


def leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of commands that run (train, bundle inspect, ...), not of command groups."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        return [parser]
    return [leaf for group in groups for child in group.choices.values() for leaf in leaf_parsers(child)]


def main(argv: list[str] | None = None) -> int:
    # Progress should reach a log file or the journal as it happens, not when a buffer fills.
    if sys.stdout is not None:  # None when started with fd 1 closed
        sys.stdout.reconfigure(line_buffering=True)
    args = build_parser().parse_args(argv)
    quiet.set_verbose(args.verbose)
    try:
        return args.handler(args) or 0
    except BinbotError as error:
        print(f"binbot {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"binbot {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
