"""The package's shape: one `binbot` command, and device code that never needs TensorFlow."""

import subprocess
import sys
from pathlib import Path

import pytest

from binbot.cli import build_parser

# Run in a child interpreter: make `import tensorflow` (and keras) fail as on a Pi without them.
BLOCK_TENSORFLOW = """
import importlib.abc, sys
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, NoTensorFlow())
"""


def run_without_tensorflow(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW + code], capture_output=True, text=True, timeout=120)


def subcommands() -> list[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return sorted(commands.choices)


def test_the_blocker_really_blocks_tensorflow():
    result = run_without_tensorflow("import binbot.train.trainer")
    assert result.returncode != 0
    assert "is blocked in this test" in result.stderr


def test_every_device_module_imports_without_tensorflow_and_without_workstation_parts():
    result = run_without_tensorflow(
        "import importlib, pkgutil, sys, binbot.device\n"
        "for module in pkgutil.iter_modules(binbot.device.__path__):\n"
        "    importlib.import_module('binbot.device.' + module.name)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('binbot.train', 'binbot.convert', 'tensorflow', 'keras'))))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_top_level_help_lists_every_subcommand():
    result = subprocess.run([sys.executable, "-m", "binbot", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in subcommands():
        assert command in result.stdout
    assert {"train", "evaluate"} <= set(subcommands())


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_has_help_without_tensorflow(command):
    result = run_without_tensorflow(f"from binbot.cli import main\nmain([{command!r}, '--help'])")
    assert result.returncode == 0, result.stderr
    assert f"usage: binbot {command}" in result.stdout


def test_console_script_is_installed_and_reports_version():
    from binbot import __version__

    script = Path(sys.executable).parent / "binbot"  # beside the interpreter that runs the tests
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"binbot {__version__}"
