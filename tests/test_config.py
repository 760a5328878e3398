"""`binbot run` settings: strict TOML, flags on top, errors that name the key."""

import os
import re

import pytest

from binbot.cli import main
from binbot.device.config import RunConfig, load_config
from binbot.errors import BinbotError


def write(tmp_path, text):
    path = tmp_path / "binbot.toml"
    path.write_text(text)
    return path


def test_the_file_sets_values_and_flags_override_them(tmp_path):
    path = write(tmp_path, 'bundle = "/var/lib/binbot/bundles/current"\nwindow = 7\nthreshold = 1\nhttp = "127.0.0.1:0"\n')

    config = load_config(path, {"window": 3, "source": None})

    assert config.bundle == "/var/lib/binbot/bundles/current"
    assert config.window == 3 and config.threshold == 1.0 and config.http_address == ("127.0.0.1", 0)
    assert config.threads == RunConfig().threads


@pytest.mark.parametrize("text, message", [
    ('bundle = "b"\nwindw = 3\n', "unknown key 'windw'"),
    ('bundle = "b"\nthreads = "4"\n', "threads should be a int, not '4'"),
    ('bundle = "b"\nthreshold = 1.5\n', "threshold = 1.5: must be between 0 and 1"),
    ('bundle = "b"\nwindow = 0\n', "window = 0: must be at least 1"),
    ('bundle = "b"\nhttp = "8080"\n', "should be HOST:PORT"),
    ('bundle = "b"\nloop = 1\n', "loop should be a bool"),
    ('bundle = b\n', "not valid TOML"),
])
def test_bad_keys_and_values_are_refused_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(BinbotError, match=message) as error:
        load_config(path, {})
    assert str(path) in str(error.value)


def test_a_bad_flag_is_refused_as_such():
    with pytest.raises(BinbotError, match="command line: threads = 0: must be between 1 and 64"):
        load_config(None, {"bundle": "b", "threads": 0})


def test_a_bundle_is_required():
    with pytest.raises(BinbotError, match="no bundle"):
        load_config(None, {})


def run_refused(capsys, *args):
    """binbot run's exit code and its one line on stderr, for settings refused before it starts."""
    code = main(["run", "--http", "off", *args])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("make, message", [
    (lambda path: path.write_bytes('bundle = "caf\xe9"\n'.encode("latin-1")), "not UTF-8 text"),
    (lambda path: path.mkdir(), "a folder, where the config file was expected"),
    (lambda path: os.mkfifo(path), "not a regular file, where the config file was expected"),
    (lambda path: path.write_text("bundle = " + "[" * 100_000 + "]" * 100_000), "nested deeper than any config file"),
    (lambda path: path.write_text("window = " + "1" * 5000), "not a config file binbot reads (Exceeds the limit"),
    (lambda path: path.write_text("# " + "x" * (2 << 20)), "over 1,048,576 bytes"),
])
def test_an_unreadable_config_file_is_one_line_naming_it(tmp_path, capsys, make, message):
    path = tmp_path / "binbot.toml"
    make(path)

    code, err = run_refused(capsys, "--config", str(path))

    assert code == 1 and err.startswith(f"binbot run: error: {path}: {message}")
    assert len(err.splitlines()) == 1


def test_a_config_path_through_a_file_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "etc").write_text("")
    path = tmp_path / "etc" / "binbot.toml"

    code, err = run_refused(capsys, "--config", str(path))

    assert code == 1 and err.startswith(f"binbot run: error: {path}: cannot read (Not a directory)")
    assert len(err.splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_a_config_file_without_read_permission_is_one_line_naming_it(tmp_path, capsys):
    path = write(tmp_path, 'bundle = "b"\n')
    path.chmod(0)

    code, err = run_refused(capsys, "--config", str(path))

    assert code == 1 and err == f"binbot run: error: {path}: cannot read (Permission denied)"


@pytest.mark.parametrize("text, message", [
    ('bundle = "b"\nthreads = 100000\n', "threads = 100000: must be between 1 and 64"),
    ('bundle = "b"\nthreshold = nan\n', "threshold = nan: must be a finite number"),
    ('bundle = "b"\nfps = nan\n', "fps = nan: must be a finite number"),
    ('bundle = "b"\nfps = inf\n', "fps = inf: must be a finite number"),
    ('bundle = "b"\nstale_after = -inf\n', "stale_after = -inf: must be a finite number"),
])
def test_out_of_range_threads_and_non_finite_numbers_in_the_file_are_refused(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(BinbotError, match=f"{path}: {message}"):
        load_config(path, {})


@pytest.mark.parametrize("flag, value, message", [
    ("--threads", "100000", "threads = 100000: must be between 1 and 64"),
    ("--threads", "0", "threads = 0: must be between 1 and 64"),
    ("--threshold", "nan", "threshold = nan: must be a finite number"),
    ("--fps", "inf", "fps = inf: must be a finite number"),
    ("--stale-after", "nan", "stale_after = nan: must be a finite number"),
])
def test_run_refuses_out_of_range_threads_and_non_finite_numbers_on_the_command_line(capsys, flag, value, message):
    code, err = run_refused(capsys, "--bundle", "b", flag, value)
    assert code == 1 and err == f"binbot run: error: command line: {message}"


@pytest.mark.parametrize("command", [["classify", "bundle", "image.jpg"], ["bundle", "inspect", "bundle"],
                                     ["deploy", "bundle", "pi"]])
@pytest.mark.parametrize("threads", ["0", "100000"])
def test_classify_and_inspect_bound_threads_as_run_does(capsys, command, threads):
    with pytest.raises(SystemExit) as exited:  # argparse refuses a bad flag as it does --threads abc
        main([*command, "--threads", threads])
    assert exited.value.code == 2
    assert f"argument --threads: {threads}: must be between 1 and 64" in capsys.readouterr().err


def test_output_tables_are_kept_for_their_outputs_and_must_be_tables(tmp_path):
    config = tmp_path / "binbot.toml"
    config.write_text('bundle = "b"\n\n[mqtt]\nhost = "broker.local"\n')

    loaded = load_config(config, {})

    assert loaded.tables == {"mqtt": {"host": "broker.local"}} and loaded.config_file == str(config)
    config.write_text('bundle = "b"\nmqtt = "broker.local"\n')
    with pytest.raises(BinbotError, match=re.escape(f"{config}: mqtt should be a table ([mqtt] with its settings")):
        load_config(config, {})


def test_a_keep_table_is_kept_for_the_keep_output(tmp_path):
    config = tmp_path / "binbot.toml"
    config.write_text('bundle = "b"\n\n[keep]\nsample = 0.05\n')

    assert load_config(config, {}).tables == {"keep": {"sample": 0.05}}
    config.write_text('bundle = "b"\nkeep = true\n')
    with pytest.raises(BinbotError, match=re.escape(f"{config}: keep should be a table ([keep] with its settings")):
        load_config(config, {})
