"""The package's shape: one `binbot` command, and device code that never needs TensorFlow."""

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from binbot.cli import leaf_parsers, build_parser
from binbot.tomlfile import tomllib
from helpers import run_without_tensorflow

CHECKOUT = Path(__file__).resolve().parents[1]


def subcommands() -> list[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return sorted(commands.choices)


SIDES = ("(workstation)", "(Pi)", "(workstation, Pi)")
# device/run_cli.py is being rewritten by the lead, who applies binbot.helpformat there: strict, so these fail
# (XPASS) once it is done, as a reminder to drop the mark.


def listed_commands() -> list[tuple[str, str]]:
    """(name, one-line purpose) of every command and sub-command, as their lists show them."""
    found = []
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        for group in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
            found += [(f"{parser.prog} {choice.dest}", choice.help) for choice in group._choices_actions]
            parsers += group.choices.values()
    return sorted(found)


def leaf_commands() -> dict[str, argparse.ArgumentParser]:
    return {parser.prog: parser for parser in leaf_parsers(build_parser())}


def test_the_blocker_really_blocks_tensorflow():
    result = run_without_tensorflow("import binbot.train.trainer")
    assert result.returncode != 0
    assert "is blocked in this test" in result.stderr


def test_every_device_module_imports_without_tensorflow_and_without_workstation_parts():
    result = run_without_tensorflow(
        "import importlib, pkgutil, sys, binbot.device\n"
        "names = [m.name for m in pkgutil.walk_packages(binbot.device.__path__, 'binbot.device.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names), sorted(m for m in sys.modules if m.startswith(\n"
        "    ('binbot.train', 'binbot.convert', 'binbot.deploy', 'tensorflow', 'keras'))))"
    )
    assert result.returncode == 0, result.stderr
    count, imported = result.stdout.strip().split(" ", 1)
    assert int(count) >= 20 and imported == "[]"  # bench/ and its modules included


def test_top_level_help_lists_every_subcommand():
    result = subprocess.run([sys.executable, "-m", "binbot", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in subcommands():
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command
    assert {"train", "evaluate"} <= set(subcommands())


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_has_help_without_tensorflow(command):
    result = run_without_tensorflow(f"from binbot.cli import main\nmain([{command!r}, '--help'])")
    assert result.returncode == 0, result.stderr
    assert f"usage: binbot {command}" in result.stdout


@pytest.mark.parametrize("name", [name for name, _ in listed_commands()])
def test_every_command_in_a_list_says_in_one_line_where_it_runs(name):
    purpose = dict(listed_commands())[name]
    assert "\n" not in purpose and purpose.endswith(SIDES), purpose


@pytest.mark.parametrize("name", sorted(leaf_commands()))
def test_every_command_shows_an_example_of_itself(name):
    text = leaf_commands()[name].format_help()
    examples = text.partition("\nexamples:\n")[2]
    assert re.search(rf"^  (\S+=\S+ )*\S*{name}( |$)", examples, re.M), text


def test_every_example_in_the_help_is_a_command_binbot_accepts():
    examples = []
    for parser in [build_parser(), *leaf_commands().values()]:
        block = parser.format_help().partition("\nexamples:\n")[2].partition("\n\n")[0]
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words and "=" in words[0]:  # VARIABLE=value before the command
                words.pop(0)
            if words and words[0].endswith("binbot"):
                examples.append(words[1:])

    assert len(examples) >= 20
    for words in examples:
        try:
            build_parser().parse_args(words)
        except SystemExit:
            pytest.fail(f"binbot {shlex.join(words)}: refused by binbot's own parser")


def test_console_script_is_installed_and_reports_version():
    from binbot import __version__

    script = Path(sys.executable).parent / "binbot"  # beside the interpreter that runs the tests
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"binbot {__version__}"


def test_the_wheel_carries_the_scripts_deploy_sends_to_a_pi(tmp_path):
    """The editable install reads deploy/scripts/ from the checkout; a wheel has them only if pyproject.toml says so."""
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
    source = tmp_path / "src"  # a copy, as install.sh builds from, so the build writes nothing into the checkout
    source.mkdir()
    for name in ["pyproject.toml", project["project"]["readme"], *project["tool"]["setuptools"]["package-dir"].values()]:
        if (CHECKOUT / name).is_dir():
            shutil.copytree(CHECKOUT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(CHECKOUT / name, source / name)

    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                             str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=600)

    if result.returncode and "No matching distribution found for setuptools" in result.stderr:
        pytest.skip("pip cannot get setuptools to build with (offline?)")
    assert result.returncode == 0, result.stderr[-3000:]
    names = zipfile.ZipFile(next((tmp_path / "wheel").glob("binbot-*.whl"))).namelist()
    scripts = sorted(path.name for path in (CHECKOUT / "deploy/scripts").iterdir() if path.is_file())
    assert [name for name in scripts if f"binbot/deploy/scripts/{name}" not in names] == []
    assert "health.py" in scripts and "upload.sh" in scripts
    assert "binbot/device/view.html" in names  # the live view's page, read with importlib.resources
