"""`binbot run` as a child process for the benchmarks: started, its address found in its log, stopped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BINBOT = [sys.executable, "-m", "binbot"]


@contextmanager
def running_daemon(args: list[str], log: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """`binbot run ARGS` on a free loopback port, events discarded and its log in log, until the block
    ends; yields the process and its http://HOST:PORT."""
    command = [*BINBOT, "run", *args, "--http", "127.0.0.1:0", "--events", os.devnull]
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        url = None
        while url is None:
            if process.poll() is not None:
                raise SystemExit(f"binbot run exited: {log.read_text()}")
            found = re.search(r"listening on (http://\S+)", log.read_text())
            url = found and found.group(1)
            time.sleep(0.05)
        yield process, url
    finally:
        process.terminate()
        process.wait(timeout=30)
