"""TensorFlow's C++ start-up lines (oneDNN, CUDA probing, cuInit errors on a machine without a GPU)
kept off the terminal, unless the user asks for them with --verbose.

Some are written to file descriptor 2 before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so the
descriptor itself is pointed elsewhere while TensorFlow starts; what was written is shown after
all if the start fails, since it may then say why.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_verbose = False


def set_verbose(verbose: bool) -> None:
    """--verbose: let TensorFlow say everything it has to say."""
    global _verbose
    _verbose = verbose
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """Hide what C++ code writes to stderr in this block (not with --verbose); show it if the block fails."""
    if _verbose:
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow():
    """tensorflow, imported without its start-up lines."""
    set_verbose(_verbose)
    with native_stderr_hidden():
        import tensorflow

        tensorflow.constant(0)  # the first op probes for CUDA and logs cuInit's failure: do it now, hidden
    return tensorflow
