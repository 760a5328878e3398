"""A newcomer sees BinBot's own output: TensorFlow's C++ start-up lines only with --verbose."""

import os
import re
import subprocess
import sys

NATIVE_LOG_LINE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl|fully_quantize: )", re.M)


def convert(run, out, *flags):
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_CPP")}
    return subprocess.run([sys.executable, "-m", "binbot", "convert", str(run / "model.keras"), "--out", str(out),
                           "--mode", "int8", *flags], capture_output=True, text=True, timeout=300, env=env)


def test_tensorflows_start_up_lines_are_hidden_unless_verbose(small_cnn_run, tmp_path):
    quiet = convert(small_cnn_run, tmp_path / "quiet")
    verbose = convert(small_cnn_run, tmp_path / "verbose", "--verbose")

    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert NATIVE_LOG_LINE.search(quiet.stderr) is None, quiet.stderr
    assert NATIVE_LOG_LINE.search(verbose.stderr), verbose.stderr  # they were there to hide
    assert "converting" in quiet.stdout and "wrote" in quiet.stdout
