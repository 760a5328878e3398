"""systemd/install.sh, run for real (useradd, venv, pip) into a throwaway root (DESTDIR)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from binbot.device.config import tomllib
from binbot.systemd.syscall_check import read_unit

CHECKOUT = Path(__file__).resolve().parents[1]
INSTALL = CHECKOUT / "systemd" / "install.sh"
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root (it creates users and owns files)"),
    pytest.mark.skipif(not shutil.which("useradd"), reason="useradd not installed"),
    pytest.mark.skipif(subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip, venv"], capture_output=True).returncode != 0,
                       reason=f"{SYSTEM_PYTHON} cannot create venvs (apt install python3-venv)"),
]


def make_pi_root(root: Path, video_group: bool = True) -> Path:
    """An empty root whose user database looks like a fresh Raspberry Pi OS: root, pi, group video."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n" + ("video:x:44:pi\n" if video_group else "") + "pi:x:1000:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n" + ("video:*::pi\n" if video_group else "") + "pi:!::\n")
    for name in ("shadow", "gshadow"):
        (etc / name).chmod(0o640)
    return root


def run_install(root: Path, install: Path = INSTALL) -> subprocess.CompletedProcess:
    return subprocess.run([str(install)], env=dict(os.environ, DESTDIR=str(root)), capture_output=True, text=True,
                          timeout=900)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner, size, mtime and link target."""
    listing = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        target = os.readlink(path) if path.is_symlink() else None
        listing[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, info.st_size, info.st_mtime_ns, target)
    return listing


def account(root: Path, database: str, name: str) -> list[str] | None:
    for line in (root / "etc" / database).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    return None


@dataclass
class Installed:
    root: Path
    output: str
    config: str  # /etc/binbot/binbot.toml as the first run left it


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = make_pi_root(tmp_path_factory.mktemp("pi") / "root")
    result = run_install(root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Installed(root, result.stdout, (root / "etc/binbot/binbot.toml").read_text())


def test_the_first_run_creates_the_user_venv_config_state_and_unit(installed):
    root = installed.root
    user = account(root, "passwd", "binbot")
    assert user is not None and int(user[2]) < 1000  # a system user
    assert user[5:] == ["/nonexistent", "/usr/sbin/nologin"]
    assert "binbot" in account(root, "group", "video")[3].split(",")
    assert account(root, "group", "binbot")[2] == user[3]

    unit = read_unit(CHECKOUT / "systemd/binbot.service")
    executable = root / unit["ExecStart"][0].split()[0].lstrip("/")
    assert executable == root / "opt/binbot/venv/bin/binbot"
    help_text = subprocess.run([executable, "run", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--config" in help_text
    assert "include-system-site-packages = true" in (root / "opt/binbot/venv/pyvenv.cfg").read_text()

    config = root / "etc/binbot/binbot.toml"
    assert installed.config == (CHECKOUT / "systemd/binbot.toml").read_text()
    assert mode_and_owner(config) == (0o644, 0, 0)
    for state in ("var/lib/binbot", "var/lib/binbot/bundles"):
        assert mode_and_owner(root / state) == (0o750, int(user[2]), int(user[3]))

    installed_unit = root / "etc/systemd/system/binbot.service"
    assert installed_unit.read_text() == (CHECKOUT / "systemd/binbot.service").read_text()
    assert mode_and_owner(installed_unit) == (0o644, 0, 0)
    wanted = root / "etc/systemd/system/multi-user.target.wants/binbot.service"
    assert os.readlink(wanted) == "/etc/systemd/system/binbot.service"  # enabled, by systemctl --root
    assert installed.output.rstrip().endswith("change(s)")


def mode_and_owner(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def test_the_build_writes_nothing_into_the_checkout(installed):
    assert not (CHECKOUT / "build").exists()
    assert not list((CHECKOUT / "systemd").glob("*.egg-info"))


def test_a_second_run_changes_nothing_and_says_so(installed):
    before = snapshot(installed.root)

    result = run_install(installed.root)

    assert result.returncode == 0, result.stderr
    assert snapshot(installed.root) == before
    assert "nothing to do" in result.stdout


def test_an_edited_config_is_never_overwritten(installed):
    config = installed.root / "etc/binbot/binbot.toml"
    config.write_text(config.read_text().replace('source = "picamera2"', 'source = "opencv:0"'))
    edited = config.read_text()

    result = run_install(installed.root)

    assert result.returncode == 0, result.stderr
    assert config.read_text() == edited
    assert "kept /etc/binbot/binbot.toml" in result.stdout and "nothing to do" in result.stdout


def test_a_changed_unit_file_or_state_dir_is_put_right(installed):
    unit = installed.root / "etc/systemd/system/binbot.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=30s", "WatchdogSec=5s"))
    (installed.root / "var/lib/binbot").chmod(0o755)

    result = run_install(installed.root)

    assert result.returncode == 0, result.stderr
    assert unit.read_text() == (CHECKOUT / "systemd/binbot.service").read_text()
    assert mode_and_owner(installed.root / "var/lib/binbot")[0] == 0o750
    assert "installed /etc/systemd/system/binbot.service" in result.stdout
    assert "done: 2 change(s)" in result.stdout


def copy_checkout(destination: Path) -> Path:
    """The files install.sh builds from (as pyproject.toml lists them), plus systemd/, in a new checkout."""
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
    destination.mkdir(parents=True)
    for name in ["pyproject.toml", project["project"]["readme"], *project["tool"]["setuptools"]["package-dir"].values()]:
        source = CHECKOUT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            shutil.copy2(source, destination / name)
    return destination


def test_a_changed_checkout_is_reinstalled_once(installed, tmp_path):
    checkout = copy_checkout(tmp_path / "checkout")
    marker = "# changed after the first install\n"
    with open(checkout / "device/__init__.py", "a") as file:
        file.write(marker)
    site_packages = next((installed.root / "opt/binbot/venv/lib").glob("python3*/site-packages"))
    try:
        updated = run_install(installed.root, checkout / "systemd/install.sh")
        again = run_install(installed.root, checkout / "systemd/install.sh")
    finally:
        restored = run_install(installed.root)  # back to this checkout's code, for the other tests

    assert updated.returncode == 0, updated.stderr
    assert "installed binbot" in updated.stdout
    assert "nothing to do" in again.stdout
    assert "installed binbot" in restored.stdout
    assert marker not in (site_packages / "binbot/device/__init__.py").read_text()


@pytest.mark.skipif(subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import numpy"], capture_output=True).returncode != 0,
                    reason=f"{SYSTEM_PYTHON} has no numpy of its own (on a Pi, apt's python3-picamera2 brings one)")
def test_the_venv_keeps_the_systems_numpy_that_apt_packages_are_built_against(installed):
    venv_python = installed.root / "opt/binbot/venv/bin/python"
    system_numpy = subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import numpy; print(numpy.__file__)"],
                                  capture_output=True, text=True, check=True).stdout.strip()

    venv_numpy = subprocess.run([venv_python, "-c", "import numpy; print(numpy.__file__)"],
                                capture_output=True, text=True, check=True).stdout.strip()

    assert venv_numpy == system_numpy
    assert "keeping the system's numpy" in installed.output


def test_a_root_without_group_video_is_refused_before_anything_is_written(tmp_path):
    root = make_pi_root(tmp_path / "root", video_group=False)

    result = run_install(root)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"install.sh: error: group video does not exist in {root}/etc/group (it owns the camera devices)"]
    assert sorted(p.name for p in root.iterdir()) == ["etc"]


def test_the_script_passes_bash_n_and_shellcheck():
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed")
    result = subprocess.run(["shellcheck", str(INSTALL)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
