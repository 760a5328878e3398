"""Native libraries' start-up lines kept off the terminal, unless the user asks for them with --verbose.

TensorFlow's C++ start-up lines (oneDNN, CUDA probing, cuInit errors on a machine without a GPU) and
TensorFlow Lite's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." are written by native
code straight to file descriptor 2, some before TensorFlow reads TF_CPP_MIN_LOG_LEVEL and the TFLite
one whatever it says, so the descriptor itself is pointed elsewhere while they may be written.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

# TensorFlow Lite's own log lines at INFO level start so (its warnings and errors with WARNING:, ERROR:).
TFLITE_INFO = b"INFO: "

_verbose = False


def set_verbose(verbose: bool) -> None:
    """--verbose: let TensorFlow and TensorFlow Lite say everything they have to say."""
    global _verbose
    _verbose = verbose
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextmanager
def native_stderr_hidden(shown: Callable[[bytes], bool] = lambda line: False) -> Iterator[None]:
    """Hide what is written to stderr in this block (not with --verbose); show it all if the block fails.

    shown picks lines to pass on when the block ends after all: the descriptor is the whole process's,
    so what other threads log meanwhile is written there too.
    """
    if _verbose:
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().splitlines(keepends=True)
            _write_stderr(b"".join(line for line in lines if failed or shown(line)))


def tflite_info_hidden() -> AbstractContextManager[None]:
    """Hide TensorFlow Lite's INFO lines written in this block (not with --verbose); pass on everything else."""
    return native_stderr_hidden(shown=lambda line: not line.startswith(TFLITE_INFO))


def _write_stderr(data: bytes) -> None:
    try:
        while data:
            data = data[os.write(2, data):]
    except OSError:
        pass  # stderr closed: there was nowhere to show it anyway


def import_tensorflow():
    """tensorflow, imported without its start-up lines."""
    set_verbose(_verbose)
    with native_stderr_hidden():
        import tensorflow

        tensorflow.constant(0)  # the first op probes for CUDA and logs cuInit's failure: do it now, hidden
    return tensorflow
