"""What a benchmark ran on (CPU, cores, board, system) and the memory it peaked at."""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
BOARD = Path("/proc/device-tree/model")  # on a Raspberry Pi: "Raspberry Pi 5 Model B Rev 1.0"


def machine() -> dict:
    """CPU model, cores, board (a Pi's device-tree model, else None), system and Python."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "board": BOARD.read_text().rstrip("\0\n") if BOARD.is_file() else None,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
    }


def cpu_model() -> str:
    # x86 says "model name"; ARM kernels vary: "Model" names the board on a Pi, "Hardware" the SoC.
    fields: dict[str, str] = {}
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return (fields.get("model name") or fields.get("Hardware") or fields.get("Model")
            or platform.processor() or platform.machine())


def peak_resident_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    # VmHWM belongs to the process's memory map, made new by exec. getrusage's ru_maxrss survives
    # exec: a child started by a big parent would report the parent's size as its own peak.
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6
