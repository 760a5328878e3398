"""A real systemd to install and run the service under: this machine's own OS, booted in a container.

The tests' machine has no systemd as PID 1, but it has systemd. systemd-nspawn boots this
machine's root file system, read-only beneath a RAM overlay, as a container with its own PID 1
(systemd) and no network but loopback. Whatever the tests do inside (useradd, /opt, /etc, the
service) lands in the overlay and is gone when the container stops; the mounts live in a private
mount namespace, so the host never sees them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))

# Mounts the overlay in the private mount namespace unshare made, then becomes systemd-nspawn.
BOOT = """
set -e
mount --bind / "$1/lower"
mount -t tmpfs -o size=3G tmpfs "$1/overlay"
mkdir "$1/overlay/upper" "$1/overlay/work"
mount -t overlay overlay -o "lowerdir=$1/lower,upperdir=$1/overlay/upper,workdir=$1/overlay/work" "$1/root"
shift
exec systemd-nspawn "$@"
"""


def can_boot() -> str:
    """Why a container cannot be booted here, or "" if it can."""
    if os.geteuid() != 0:
        return "booting a container needs root"
    for program in ("systemd-nspawn", "unshare", "nsenter"):
        if not shutil.which(program):
            return f"{program} not installed (apt install systemd-container util-linux)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs"
    return ""


class BootedSystemd:
    """with BootedSystemd(workdir, binds={host_path: container_path}) as machine: machine.run(...)"""

    def __init__(self, workdir: Path, binds: dict[Path, str]):
        self.workdir, self.binds = workdir, binds
        self.name = f"binbot-test-{os.getpid()}"
        self.leader = 0
        self._existing_cgroups = self._nspawn_cgroups()

    def __enter__(self) -> "BootedSystemd":
        for name in ("lower", "overlay", "root"):
            (self.workdir / name).mkdir(parents=True)
        nspawn = ["--quiet", "--keep-unit", "--register=no", f"--machine={self.name}", "--private-network",
                  f"--directory={self.workdir / 'root'}",
                  *(f"--bind-ro={host}:{inside}" for host, inside in self.binds.items()),
                  # basic.target: the host's own multi-user services (ssh, databases) stay off.
                  "--boot", "systemd.unit=basic.target"]
        self.console = open(self.workdir / "console.log", "w")
        self.nspawn = subprocess.Popen(["unshare", "--mount", "sh", "-c", BOOT, "boot", str(self.workdir), *nspawn],
                                       stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT)
        try:
            self.leader = self._wait_for_leader()
            self._wait_for_boot()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_for_leader(self) -> int:
        children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.nspawn.poll() is None:
            for pid in (children.read_text().split() if children.exists() else []):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            time.sleep(0.1)
        raise RuntimeError(f"the container did not boot: {(self.workdir / 'console.log').read_text()[-2000:]}")

    def _wait_for_boot(self) -> None:
        """Until the container's systemd has finished booting (tmpfiles empties /tmp while it boots)."""
        deadline = time.monotonic() + 120
        state = ""
        while time.monotonic() < deadline:
            # --wait returns at once while PID 1 is not yet listening, hence the loop
            state = self.run("systemctl", "is-system-running", "--wait", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the container's systemd did not finish booting: {state}")

    def run(self, *command: str, check: bool = True, timeout: float = 120, env: dict | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        """command inside the container, as root, with a clean environment."""
        environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                       "LANG": "C.UTF-8", **(env or {})}
        result = subprocess.run(["nsenter", f"--target={self.leader}", "--all", "env", "-i",
                                 *(f"{k}={v}" for k, v in environment.items()), *command],
                                capture_output=True, text=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        output = self.run("systemctl", "show", unit, *(f"--property={p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    def journal(self, unit: str, *options: str, since: float | None = None) -> str:
        """unit's journal, with journalctl's options: its last 80 lines, or all logged from time.time() == since."""
        # Not --after-cursor: systemd 252 skips the first entry that matches when the cursor's own does not.
        span = f"--since=@{since:.6f}" if since is not None else "--lines=80"
        return self.run("journalctl", f"--unit={unit}", "--no-pager", span, *options, check=False).stdout

    def wait_until(self, condition, what: str, unit: str, timeout: float = 60) -> None:
        """Poll condition() (a state inside the container) until true; else fail with unit's journal."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s:\n{self.journal(unit)}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
            try:
                self.nspawn.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()
        self.console.close()
        self._remove_leftovers()

    def _nspawn_cgroups(self) -> set[Path]:
        """The cgroups nspawn --keep-unit makes beside its own when no systemd manages this machine."""
        return {root / name for root in CGROUP_ROOTS for name in ("payload", "supervisor") if (root / name).is_dir()}

    def _remove_leftovers(self) -> None:
        for cgroup in self._nspawn_cgroups() - self._existing_cgroups:
            for directory in sorted((p for p in cgroup.rglob("*") if p.is_dir()), reverse=True) + [cgroup]:
                try:
                    directory.rmdir()
                except OSError:
                    pass  # still in use: not ours to force
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}", ignore_errors=True)
