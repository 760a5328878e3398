"""`binbot run` settings: strict TOML, flags on top, errors that name the key."""

import os
import re
from pathlib import Path

import pytest

from binbot import settings_reference
from binbot.cli import main
from binbot.device.config import RunConfig, load_config
from binbot.device.jsonlines import EventsSettings
from binbot.device.keep import KeepSettings
from binbot.device.mqtt import MqttSettings
from binbot.device.view import ViewSettings
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
    ('bundle = "b"\nthreads = "4"\n', "threads should be a whole number, not '4'"),
    ('bundle = "b"\nthreshold = 1.5\n', "threshold = 1.5: must be between 0 and 1"),
    ('bundle = "b"\nwindow = 0\n', "window = 0: must be between 1 and 1000"),
    ('bundle = "b"\nhttp = "8080"\n', "should be HOST:PORT"),
    ('bundle = "b"\nloop = 1\n', "loop should be true or false, not 1"),
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


def test_each_output_table_is_read_into_its_settings_and_must_be_a_table(tmp_path):
    config = tmp_path / "binbot.toml"
    config.write_text('bundle = "b"\n\n[mqtt]\nhost = "broker.local"\n\n[keep]\nsample = 0.05\n\n[view]\nfps = 2\n')

    loaded = load_config(config, {})

    assert loaded.output("mqtt") == MqttSettings(host="broker.local")
    assert loaded.output("keep") == KeepSettings(sample=0.05, band_high=0.6)  # the threshold by default
    assert loaded.output("view") == ViewSettings(fps=2.0) and loaded.output("events") == EventsSettings()
    assert loaded.output("gpio") is None and loaded.output("results") is None  # no table: off
    assert loaded.config_file == str(config)
    config.write_text('bundle = "b"\nmqtt = "broker.local"\n')
    with pytest.raises(BinbotError, match=re.escape(f"{config}: [mqtt] should be a table, not 'broker.local'")):
        load_config(config, {})


@pytest.mark.parametrize("text, message", [
    ('[view]\nfsp = 2\n', "[view] unknown key 'fsp' (known: enabled, fps, width, clients)"),
    ('[view]\nfps = "fast"\n', "[view] fps should be a number, not 'fast'"),
    ('[view]\nclients = 9\n', "[view] clients = 9: must be between 1 and 8"),
    ('[results]\n', "[results] needs file"),
    ('[mqtt]\nport = 1883\n', "[mqtt] needs host"),
    ('[mqtt]\nhost = "b"\nprefix = "a/#"\n', "[mqtt] prefix = 'a/#': should be a topic prefix without # or +"),
    ('[mqtt]\nhost = "b"\npassword_file = "/p"\n', "[mqtt] password_file = '/p': needs a username"),
    ('[keep]\nband_low = 0.9\n', "[keep] band_low = 0.9 is above band_high = 0.6"),
    ('[gpio.servo]\npin = "GPIO99"\n', "[gpio.servo] pin = 'GPIO99': should be a GPIO pin, GPIO0 .. GPIO27"),
    ('[gpio.classes.can]\nconfidence = 2\n', "[gpio.classes.can] confidence = 2.0: must be between 0 and 1"),
    ('[gpio]\nclasses = 3\n', "[gpio] classes should be a table of tables ([gpio.classes.NAME]), not 3"),
    ('[hooks]\nurl = "x"\n', "unknown key 'hooks'"),
])
def test_a_bad_output_table_is_one_line_naming_the_file_the_table_and_the_key(tmp_path, capsys, text, message):
    path = write(tmp_path, 'bundle = "b"\nhttp = "off"\n' + text)

    code, err = run_refused(capsys, "--config", str(path), "--check")

    assert code == 1 and err.startswith(f"binbot run: error: {path}: ") and message in err, err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("flat, value, table, key", [
    ("view", "false", "view", "enabled"), ("view_fps", "2.0", "view", "fps"), ("view_width", "320", "view", "width"),
    ("view_clients", "2", "view", "clients"), ("events", '"-"', "events", "file"),
    ("results", '"/tmp/r.jsonl"', "results", "file"),
])
def test_a_file_in_the_first_flat_form_is_told_what_to_write_instead(tmp_path, flat, value, table, key):
    path = write(tmp_path, f'bundle = "b"\n{flat} = {value}\n')

    with pytest.raises(BinbotError) as refused:
        load_config(path, {})

    assert str(refused.value) == (f"{path}: {flat} is now {key} in the [{table}] table: write [{table}] then "
                                  f"{key} = {value} (the settings of each output have a table of their own)")


def test_flags_set_keys_of_the_output_tables_and_are_checked_as_the_command_lines(tmp_path):
    path = write(tmp_path, 'bundle = "b"\n[view]\nfps = 2\nwidth = 320\n')

    config = load_config(path, {"view.fps": 10.0, "keep.dir": str(tmp_path / "kept"), "events.file": None})

    assert config.output("view") == ViewSettings(fps=10.0, width=320)  # the flag over the file, the rest kept
    assert config.output("keep") == KeepSettings(dir=str(tmp_path / "kept"), band_high=0.6)  # --keep-dir alone: on
    with pytest.raises(BinbotError, match=r"^command line: \[view\] fps = 50.0: must be above 0 and at most 30$"):
        load_config(path, {"view.fps": 50.0})


def test_the_configuration_reference_in_the_docs_is_generated_from_the_declarations():
    page = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

    text = page.read_text()

    assert settings_reference.START in text, "run: python -m binbot.settings_reference docs/configuration.md"
    assert settings_reference.page_with_reference(text) == text, (
        "docs/configuration.md is behind the settings; run: python -m binbot.settings_reference docs/configuration.md")
    for key in ("`threshold`", "`view.fps`", "`gpio.classes.NAME.pulse.seconds`", "`keep.min_free_percent`",
                "`mqtt.host`", "`NAME.remote_dir`"):
        assert key in text


def test_check_reads_everything_says_what_would_run_and_starts_nothing(tmp_path, capsys, small_cnn_bundles):
    path = write(tmp_path, f'bundle = "{small_cnn_bundles["int8"]}"\nhttp = "127.0.0.1:1"\n'
                           '[gpio]\ndry_run = true\n[gpio.classes.can]\nangle = 10\n[gpio.servo]\npin = "GPIO17"\n')

    code = main(["run", "--config", str(path), "--check"])

    out = capsys.readouterr().out
    assert code == 0 and out.startswith(f"{path}: ok; bundle {small_cnn_bundles['int8']} (3 classes)")
    assert "outputs: events, view, gpio" in out
    path.write_text(path.read_text().replace("classes.can", "classes.glass"))
    code, err = run_refused(capsys, "--config", str(path), "--check")
    assert code == 1 and err.endswith("[gpio.classes.glass]: the bundle has no class 'glass' (its classes: bottle, "
                                      "can, paper)")
