"""A newcomer sees BinBot's own output: TensorFlow's and TensorFlow Lite's native lines only with --verbose."""

import os
import re
import subprocess
import sys

import pytest

from binbot import quiet

NATIVE_LOG_LINE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl|fully_quantize: )", re.M)
XNNPACK_LINE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def binbot(*args, timeout=300):
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_CPP")}
    return subprocess.run([sys.executable, "-m", "binbot", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def convert(run, out, *flags):
    return binbot("convert", run / "model.keras", "--out", out, "--mode", "int8", *flags)


def test_tensorflows_start_up_lines_are_hidden_unless_verbose(small_cnn_run, tmp_path):
    quiet_run = convert(small_cnn_run, tmp_path / "quiet")
    verbose = convert(small_cnn_run, tmp_path / "verbose", "--verbose")

    assert quiet_run.returncode == 0 and verbose.returncode == 0, quiet_run.stderr + verbose.stderr
    assert NATIVE_LOG_LINE.search(quiet_run.stderr) is None, quiet_run.stderr
    assert NATIVE_LOG_LINE.search(verbose.stderr), verbose.stderr  # they were there to hide
    assert "converting" in quiet_run.stdout and "wrote" in quiet_run.stdout
    assert XNNPACK_LINE not in quiet_run.stderr  # convert validates the model through the device's runtime


@pytest.mark.parametrize("command", [["bundle", "inspect", "{bundle}"], ["classify", "{bundle}", "{image}"]],
                         ids=["bundle inspect", "classify"])
def test_the_xnnpack_line_of_a_command_that_loads_a_bundle_shows_only_with_verbose(command, small_cnn_bundles,
                                                                                    image_folder):
    image = next((image_folder / "can").iterdir())
    args = [part.format(bundle=small_cnn_bundles["int8"], image=image) for part in command]

    plain, verbose = binbot(*args), binbot(*args, "-v")

    assert plain.returncode == 0 and verbose.returncode == 0, plain.stderr + verbose.stderr
    assert XNNPACK_LINE in verbose.stderr  # the runtime does print it: the test would see it leak
    assert XNNPACK_LINE not in plain.stderr
    assert plain.stdout == verbose.stdout


def test_lines_other_than_tflites_info_written_meanwhile_are_passed_on(capfd, monkeypatch):
    monkeypatch.setattr(quiet, "_verbose", False)
    with quiet.tflite_info_hidden():
        os.write(2, f"{XNNPACK_LINE}\n".encode())
        os.write(2, b"binbot run: a line another thread logged meanwhile\n")
        os.write(2, b"WARNING: a warning of the runtime\n")

    assert capfd.readouterr().err == ("binbot run: a line another thread logged meanwhile\n"
                                      "WARNING: a warning of the runtime\n")


def test_everything_hidden_is_shown_when_the_block_fails(capfd, monkeypatch):
    monkeypatch.setattr(quiet, "_verbose", False)
    with pytest.raises(ValueError), quiet.tflite_info_hidden():
        os.write(2, f"{XNNPACK_LINE}\nERROR: the op is not supported\n".encode())
        raise ValueError("the model did not load")

    assert capfd.readouterr().err == f"{XNNPACK_LINE}\nERROR: the op is not supported\n"
