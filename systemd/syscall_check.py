"""Does `binbot run` stay inside binbot.service's sandbox? strace the daemon and compare.

systemd enforces SystemCallFilter=, MemoryDenyWriteExecute=, RestrictAddressFamilies= and
RestrictNamespaces= with seccomp, and a call they forbid fails (or kills the daemon) only when it
is made. This traces a real run and checks every call it made against the unit: the system calls
against the filter's @sets as `systemd-analyze syscall-filter` expands them, mmap/mprotect against
MemoryDenyWriteExecute, socket families, and namespace flags. Run it on the Pi too, with the
camera, to cover what libcamera does (it needs strace: sudo apt install strace):

    sudo /opt/binbot/venv/bin/python -m binbot.systemd.syscall_check --seconds 20 -- \\
        /opt/binbot/venv/bin/binbot run --config /etc/binbot/binbot.toml
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from binbot.errors import BinbotError
from binbot.helpformat import DefaultsFormatter

# The installed unit on the Pi; in a checkout, the one beside this file.
INSTALLED_UNIT = Path("/etc/systemd/system/binbot.service")
UNIT = INSTALLED_UNIT if INSTALLED_UNIT.exists() else Path(__file__).resolve().parent / "binbot.service"

# Calls the filter denies that the daemon survives, because SystemCallErrorNumber=EPERM makes
# them fail instead of killing it. Anything else denied is a problem.
HARMLESS_DENIED = {
    "mbind": "numpy's OpenBLAS asks for a NUMA memory policy and ignores the refusal",
}

CALL = re.compile(r"^(?P<pid>\d+)\s+(?:(?P<name>\w+)\((?P<args>.*)|<\.\.\. (?P<resumed>\w+) resumed>)")
NAMESPACE_FLAG = re.compile(r"CLONE_NEW\w+")


@dataclass
class Call:
    name: str
    args: str  # as strace printed them; empty for a "resumed" line


@dataclass
class Report:
    syscalls: set[str]
    denied: set[str] = field(default_factory=set)  # made, but not in SystemCallFilter=
    write_execute: list[str] = field(default_factory=list)  # calls MemoryDenyWriteExecute= refuses
    families: set[str] = field(default_factory=set)  # socket families used but not allowed
    namespaces: list[str] = field(default_factory=list)  # calls creating or joining namespaces
    proc_files: set[str] = field(default_factory=set)  # /proc files outside /proc/PID (cf. ProcSubset=)

    def problems(self, unit: dict[str, list[str]]) -> list[str]:
        """What would break under the unit; empty if nothing would."""
        found = []
        fails_softly = unit.get("SystemCallErrorNumber") == ["EPERM"]
        for name in sorted(self.denied):
            if not (fails_softly and name in HARMLESS_DENIED):
                found.append(f"{name}() is not allowed by SystemCallFilter=")
        found += [f"MemoryDenyWriteExecute= refuses {call}" for call in self.write_execute]
        found += [f"RestrictAddressFamilies= refuses {family} sockets" for family in sorted(self.families)]
        found += [f"RestrictNamespaces= refuses {call}" for call in self.namespaces]
        return found


def read_unit(path: Path) -> dict[str, list[str]]:
    """The [Service] settings of a unit file: each key's values, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def syscall_sets() -> dict[str, list[str]]:
    """systemd's named sets (@system-service, ...), as this machine's systemd-analyze lists them."""
    if not shutil.which("systemd-analyze"):
        raise BinbotError("systemd-analyze not found: sudo apt install systemd")
    listing = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"],
                             capture_output=True, text=True, check=True).stdout
    sets: dict[str, list[str]] = {}
    current = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = sets.setdefault(line.strip(), [])
        elif line.startswith(" ") and current is not None and not line.strip().startswith("#") and line.strip():
            current.append(line.strip())
        elif not line.strip():
            current = None
    return sets


def expand(names: list[str], sets: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    for name in names:
        found |= expand(sets[name], sets) if name.startswith("@") else {name}
    return found


def allowed_syscalls(unit: dict[str, list[str]], sets: dict[str, list[str]]) -> set[str]:
    """What SystemCallFilter= lets through: its allow-list minus its ~deny entries."""
    entries = unit.get("SystemCallFilter", [])
    if not entries or entries[0].startswith("~"):
        raise BinbotError("SystemCallFilter= should start with an allow-list such as @system-service")
    allowed, denied = [], []
    for entry in entries:
        (denied if entry.startswith("~") else allowed).extend(entry.lstrip("~").split())
    return expand(allowed, sets) - expand(denied, sets)


def read_trace(path: Path) -> list[Call]:
    calls = []
    for line in path.read_text(errors="replace").splitlines():
        match = CALL.match(line)
        if match:
            calls.append(Call(match["name"] or match["resumed"], match["args"] or ""))
    return calls


def check(calls: list[Call], unit: dict[str, list[str]], sets: dict[str, list[str]]) -> Report:
    report = Report(syscalls={call.name for call in calls})
    report.denied = report.syscalls - allowed_syscalls(unit, sets)
    families = set(" ".join(unit.get("RestrictAddressFamilies", [])).split())
    for call in calls:
        args = call.args
        if not args:  # the end of a call whose start (with its arguments) has its own line
            continue
        if call.name == "mmap" and "PROT_WRITE" in args and "PROT_EXEC" in args:
            report.write_execute.append(f"mmap({args.split(', MAP_')[0]}, ...)")
        elif call.name in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in args:
            report.write_execute.append(f"{call.name}({args[:60]}...)")
        elif call.name == "shmat" and "SHM_EXEC" in args:
            report.write_execute.append(f"shmat({args[:60]}...)")
        elif call.name == "socket" and families and args.split(",")[0] not in families:
            report.families.add(args.split(",")[0])
        elif call.name in ("unshare", "setns") or (call.name in ("clone", "clone3") and NAMESPACE_FLAG.search(args)):
            report.namespaces.append(f"{call.name}({args[:80]}...)")
        elif call.name in ("open", "openat") and (path := re.search(r'"(/proc/[^"]+)"', args)):
            if not re.match(r"/proc/(self|thread-self|\d+)(/|$)", path[1]):
                report.proc_files.add(path[1])
    return report


def trace(command: list[str], trace_file: Path, **popen) -> tuple[subprocess.Popen, int]:
    """command started under `strace -f`; the strace process and the traced command's pid."""
    if not shutil.which("strace"):
        raise BinbotError("strace not found: sudo apt install strace")
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-o", str(trace_file), "--", *command], **popen)
    children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and tracer.poll() is None:
        pids = children.read_text().split() if children.exists() else []
        if pids:
            return tracer, int(pids[0])
        time.sleep(0.05)
    tracer.kill()
    raise BinbotError(f"strace did not start {command[0]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m binbot.systemd.syscall_check",
        description="Run a command (the daemon) under strace for a while, stop it with SIGTERM, and check the "
        "system calls it made against a unit's seccomp settings.",
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument("--unit", type=Path, default=UNIT, help="the unit file whose sandbox to check against")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to let the command run")
    parser.add_argument("--trace", type=Path, default=Path("binbot-strace.txt"), help="where strace writes")
    parser.add_argument("command", nargs="+", help="the command, after --")
    args = parser.parse_args(argv)
    try:
        unit, sets = read_unit(args.unit), syscall_sets()
        tracer, pid = trace(args.command, args.trace)
        print(f"tracing {' '.join(args.command)} for {args.seconds:g} s into {args.trace} ...", file=sys.stderr)
        time.sleep(args.seconds)
        os.kill(pid, signal.SIGTERM)
        tracer.wait(timeout=30)
        report = check(read_trace(args.trace), unit, sets)
    except BinbotError as error:
        print(f"syscall_check: error: {error}", file=sys.stderr)
        return 1
    print(f"{len(report.syscalls)} distinct system calls; against {args.unit}:")
    for name in sorted(report.denied):
        why = f" ({HARMLESS_DENIED[name]})" if name in HARMLESS_DENIED else ""
        print(f"  denied by SystemCallFilter=: {name}{why}")
    for path in sorted(report.proc_files):
        print(f"  reads {path} (ProcSubset=pid would hide it)")
    problems = report.problems(unit)
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    print("no problems: the sandbox allows everything the run did" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
