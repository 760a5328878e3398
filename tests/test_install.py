"""systemd/install.sh, run for real (useradd, venv, pip) into a throwaway root (DESTDIR)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import booted_systemd
import pytest

from binbot.device import paths
from binbot.device.daemon import SHUTDOWN_BUDGET
from binbot.device.bundle import Bundle, read_bundle
from binbot.device.kept import jpeg_matches, read_sidecar
from binbot.tomlfile import tomllib
from binbot.systemd.syscall_check import read_unit

CHECKOUT = Path(__file__).resolve().parents[1]
INSTALL = CHECKOUT / "systemd" / "install.sh"
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root (it creates users and owns files)"),
    pytest.mark.skipif(not shutil.which("useradd"), reason="useradd not installed"),
    pytest.mark.skipif(subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip, venv"], capture_output=True).returncode,
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


def under(root: Path, path: str) -> Path:
    """A path of the Pi's (device/paths.py) inside the throwaway root."""
    return root / path.lstrip("/")


def run_install(root: Path, install: Path = INSTALL, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(install)], env=dict(os.environ, DESTDIR=str(root), **env), capture_output=True,
                          text=True, timeout=900)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner, size, mtime and link target."""
    listing = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        target = os.readlink(path) if path.is_symlink() else None
        listing[str(path.relative_to(root))] = (
            info.st_mode, info.st_uid, info.st_gid, info.st_size, info.st_mtime_ns, target)
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
    config: str  # the config file (paths.CONFIG_FILE) as the first run left it


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = make_pi_root(tmp_path_factory.mktemp("pi") / "root")
    result = run_install(root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Installed(root, result.stdout, under(root, paths.CONFIG_FILE).read_text())


def test_the_first_run_creates_the_user_venv_config_state_and_unit(installed):
    root = installed.root
    user = account(root, "passwd", "binbot")
    assert user is not None and int(user[2]) < 1000  # a system user
    assert user[5:] == ["/nonexistent", "/usr/sbin/nologin"]
    assert "binbot" in account(root, "group", "video")[3].split(",")
    assert account(root, "group", "binbot")[2] == user[3]

    unit = read_unit(CHECKOUT / "systemd/binbot.service")
    executable = root / unit["ExecStart"][0].split()[0].lstrip("/")
    assert executable == under(root, paths.VENV) / "bin/binbot"
    help_text = subprocess.run([executable, "run", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--config" in help_text
    assert "include-system-site-packages = true" in (under(root, paths.VENV) / "pyvenv.cfg").read_text()

    config = under(root, paths.CONFIG_FILE)
    assert installed.config == (CHECKOUT / "systemd/binbot.toml").read_text()
    assert mode_and_owner(config) == (0o644, 0, 0)
    for state in (paths.STATE_DIR, paths.BUNDLES_DIR):
        assert mode_and_owner(under(root, state)) == (0o750, int(user[2]), int(user[3]))

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
    # What a setuptools build in the checkout would leave (build/site is the docs', mkdocs.yml's site_dir).
    assert not [path.name for path in CHECKOUT.glob("build/*") if path.name.startswith(("lib", "bdist", "temp"))]
    assert not list((CHECKOUT / "systemd").glob("*.egg-info"))


def test_a_second_run_changes_nothing_and_says_so(installed):
    before = snapshot(installed.root)

    result = run_install(installed.root)

    assert result.returncode == 0, result.stderr
    assert snapshot(installed.root) == before
    assert "nothing to do" in result.stdout


def test_an_edited_config_is_never_overwritten(installed):
    config = under(installed.root, paths.CONFIG_FILE)
    config.write_text(config.read_text().replace('source = "picamera2"', 'source = "opencv:0"'))
    edited = config.read_text()

    result = run_install(installed.root)

    assert result.returncode == 0, result.stderr
    assert config.read_text() == edited
    assert f"kept {paths.CONFIG_FILE}" in result.stdout and "nothing to do" in result.stdout


def test_a_changed_unit_file_or_state_dir_is_put_right(installed):
    unit = installed.root / "etc/systemd/system/binbot.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=30s", "WatchdogSec=5s"))
    under(installed.root, paths.STATE_DIR).chmod(0o755)

    result = run_install(installed.root)

    assert result.returncode == 0, result.stderr
    assert unit.read_text() == (CHECKOUT / "systemd/binbot.service").read_text()
    assert mode_and_owner(under(installed.root, paths.STATE_DIR))[0] == 0o750
    assert "installed /etc/systemd/system/binbot.service" in result.stdout
    assert "done: 2 change(s)" in result.stdout


def copy_checkout(destination: Path) -> Path:
    """The files install.sh builds from (as pyproject.toml lists them), plus systemd/, in a new checkout."""
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())
    destination.mkdir(parents=True)
    package_dirs = project["tool"]["setuptools"]["package-dir"].values()
    for name in ["pyproject.toml", project["project"]["readme"], *package_dirs]:
        source = CHECKOUT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    return destination


def test_a_changed_checkout_is_reinstalled_once(installed, tmp_path):
    checkout = copy_checkout(tmp_path / "checkout")
    marker = "# changed after the first install\n"
    with open(checkout / "device/__init__.py", "a") as file:
        file.write(marker)
    site_packages = next((under(installed.root, paths.VENV) / "lib").glob("python3*/site-packages"))
    installed_module = site_packages / "binbot/device/__init__.py"
    try:
        updated = run_install(installed.root, checkout / "systemd/install.sh")
        had_marker = marker in installed_module.read_text()
        again = run_install(installed.root, checkout / "systemd/install.sh")
    finally:
        restored = run_install(installed.root)  # back to this checkout's code, for the other tests

    assert updated.returncode == 0, updated.stderr
    assert "installed binbot" in updated.stdout and had_marker  # the changed code really went in
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert restored.returncode == 0 and "installed binbot" in restored.stdout
    assert marker not in installed_module.read_text()


def install_with_config(installed: Installed, text: str, runs: int = 2) -> list[subprocess.CompletedProcess]:
    """install.sh run runs times with the installed config set to text; the config put back after."""
    config = under(installed.root, paths.CONFIG_FILE)
    original = config.read_text()
    config.write_text(text)
    try:
        return [run_install(installed.root) for _ in range(runs)]
    finally:
        config.write_text(original)


def test_an_mqtt_table_gets_the_mqtt_extras_paho_into_the_venv_once(installed):
    first, second = install_with_config(installed, installed.config + '\n[mqtt]\nhost = "broker.local"\n')

    assert first.returncode == 0, first.stderr
    assert re.search(rf"^install.sh: installed paho-mqtt (2\.\S+) into {paths.VENV} for the \[mqtt\] table of "
                     rf"{paths.CONFIG_FILE}$", first.stdout, re.M), first.stdout
    version = subprocess.run([under(installed.root, paths.VENV) / "bin/python", "-c",
                              "import paho.mqtt; print(paho.mqtt.__version__)"], capture_output=True, text=True, check=True)
    assert int(version.stdout.split(".")[0]) >= 2  # the extra's paho-mqtt>=2.0, not apt's 1.6
    assert second.returncode == 0 and "nothing to do" in second.stdout, second.stdout + second.stderr


@pytest.mark.skipif(not subprocess.run([SYSTEM_PYTHON, "-c", "import gpiozero, lgpio"], capture_output=True).returncode,
                    reason=f"{SYSTEM_PYTHON} has gpiozero and lgpio: the venv sees them, so there is nothing to say")
def test_a_gpio_table_without_gpiozero_says_the_apt_command_and_changes_nothing(installed):
    before = snapshot(under(installed.root, paths.VENV))

    [result] = install_with_config(installed, installed.config + "\n[gpio]\n", runs=1)

    assert result.returncode == 0, result.stderr
    assert (f"install.sh: warning: the [gpio] table of {paths.CONFIG_FILE} needs gpiozero and its pin driver lgpio, "
            f"which {paths.VENV} cannot import; install them with: sudo apt install python3-gpiozero python3-lgpio\n"
            ) in result.stdout
    assert "nothing to do" in result.stdout and snapshot(under(installed.root, paths.VENV)) == before


def test_a_config_that_does_not_parse_is_said_and_the_rest_installs(installed):
    [result] = install_with_config(installed, installed.config + "\n[mqtt\n", runs=1)

    assert result.returncode == 0, result.stderr
    assert re.search(rf"^install.sh: warning: cannot read {installed.root}{paths.CONFIG_FILE}: .+; the packages its "
                     r"\[gpio\] and \[mqtt\] tables need were not checked$", result.stdout, re.M), result.stdout
    assert "nothing to do" in result.stdout


@pytest.mark.skipif(subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import numpy"], capture_output=True).returncode != 0,
                    reason=f"{SYSTEM_PYTHON} has no numpy of its own (on a Pi, apt's python3-picamera2 brings one)")
def test_the_venv_keeps_the_systems_numpy_that_apt_packages_are_built_against(installed):
    venv_python = under(installed.root, paths.VENV) / "bin/python"
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


def test_a_failed_pip_install_stops_before_the_unit_and_is_retried_next_time(tmp_path):
    root = make_pi_root(tmp_path / "root")

    result = run_install(root, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path), PIP_CONFIG_FILE=os.devnull)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"install.sh: error: pip could not install binbot[device] into {paths.VENV} (see above); "
        "run install.sh again once that is fixed")
    assert not (under(root, paths.VENV) / ".binbot-source").exists()  # so the next run installs again
    assert not (root / "etc/systemd/system/binbot.service").exists()


def test_the_script_passes_bash_n_and_shellcheck():
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed")
    result = subprocess.run(["shellcheck", str(INSTALL)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


needs_container = pytest.mark.skipif(bool(booted_systemd.can_boot()), reason=booted_systemd.can_boot() or "-")
OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheelhouse", "PIP_CONFIG_FILE": "/dev/null"}
INSTALL_INSIDE = "/src/binbot/systemd/install.sh"  # the checkout, as the container sees it
DROP_INS = "/etc/systemd/system/binbot.service.d"


def extra_requirements(*extras: str) -> list[str]:
    """pyproject.toml's requirements of binbot[EXTRA] for each extra."""
    optional = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return [requirement for extra in extras for requirement in optional[extra]]


def download_wheelhouse(installed: Installed, wheelhouse: Path) -> Path:
    """For installs without network: the wheels of exactly what the DESTDIR install put in its venv, and of
    the pi and mqtt extras (gpiozero, paho-mqtt) with what they need."""
    pip = [str(under(installed.root, paths.VENV) / "bin/python"), "-m", "pip"]
    frozen = subprocess.run([*pip, "freeze", "--local", "--exclude", "binbot"], capture_output=True, text=True,
                            check=True).stdout.split()
    subprocess.run([*pip, "download", "--quiet", "--no-deps", "--dest", str(wheelhouse), *frozen, "setuptools>=69"],
                   check=True, timeout=600)
    subprocess.run([*pip, "download", "--quiet", "--dest", str(wheelhouse), *extra_requirements("pi", "mqtt")],
                   check=True, timeout=600)
    return wheelhouse


@dataclass
class Booted:
    machine: booted_systemd.BootedSystemd
    first_install: subprocess.CompletedProcess  # install.sh's first run, before any bundle was deployed
    bundle: Bundle  # deployed: bundles/<id>/, and `current` pointing at it


@pytest.fixture(scope="module")
def booted(installed, small_cnn_bundles, tmp_path_factory) -> Booted:
    """This machine's OS booted under its own systemd, once for the tests below; install.sh run in it from an
    offline wheelhouse, then a bundle put where a deploy puts it. The service is left stopped: each test writes
    the config it needs and starts it."""
    bundle = read_bundle(small_cnn_bundles["int8"])
    folder = tmp_path_factory.mktemp("booted")
    binds = {CHECKOUT: "/src/binbot", download_wheelhouse(installed, folder / "wheels"): "/wheelhouse",
             bundle.path: "/bundle"}
    with booted_systemd.BootedSystemd(folder / "machine", binds) as machine:
        first = machine.run(INSTALL_INSIDE, env=OFFLINE_PIP, timeout=900)
        machine.run("cp", "-r", "/bundle", f"{paths.BUNDLES_DIR}/{bundle.id}")
        machine.run("ln", "-s", bundle.id, paths.CURRENT_BUNDLE)
        yield Booted(machine, first, bundle)


@needs_container
def test_the_installed_service_runs_sandboxed_under_a_real_systemd(booted):
    """install.sh as a Pi owner runs it, then the unit as systemd 252 really starts, reloads, watches and stops it."""
    machine, bundle = booted.machine, booted.bundle
    assert "no bundle yet" in booted.first_install.stdout
    assert machine.run("systemctl", "is-enabled", "binbot").stdout.strip() == "enabled"
    assert machine.show("binbot", "ActiveState")["ActiveState"] == "inactive"

    # The default config (whatever another test wrote) made for a machine without a camera; a short
    # watchdog, so that the test can see it petted and see it bite.
    machine.run("cp", "/src/binbot/systemd/binbot.toml", paths.CONFIG_FILE)
    machine.run("rm", "-rf", paths.KEPT_DIR)
    machine.run("sed", "-i", 's/^source = "picamera2"/source = ""\\nfps = 10.0/', paths.CONFIG_FILE)
    machine.run("tee", "-a", paths.CONFIG_FILE, input="\n[keep]\nsample = 1.0\nper_hour = 3\n")
    machine.run("mkdir", "-p", DROP_INS)
    machine.run("tee", f"{DROP_INS}/watchdog.conf", input="[Service]\nWatchdogSec=3s\n")
    machine.run("systemctl", "daemon-reload")

    second = machine.run(INSTALL_INSIDE, env=OFFLINE_PIP, check=False, timeout=300)
    assert second.returncode == 0 and "started binbot.service" in second.stdout, (
        second.stdout + second.stderr + machine.journal("binbot"))
    service = machine.show("binbot", "ActiveState", "SubState", "MainPID", "NRestarts", "WatchdogUSec")
    assert (service["ActiveState"], service["SubState"], service["NRestarts"]) == ("active", "running", "0")
    assert service["WatchdogUSec"] == "3s"
    health = json.loads(machine.run(f"{paths.VENV}/bin/python", "-c", HEALTHZ).stdout)
    assert health["ok"] and health["model"] == bundle.id

    # The sandbox is really on: no privileges, seccomp filters, the video group, read-only /opt.
    pid = service["MainPID"]
    status = dict(line.split(":\t", 1) for line in machine.run("cat", f"/proc/{pid}/status").stdout.splitlines())
    video = machine.run("getent", "group", "video").stdout.split(":")[2]
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2" and int(status["Seccomp_filters"]) > 1
    assert int(status["CapEff"], 16) == 0 and video in status["Groups"].split()
    assert machine.run("stat", "-c", "%U", f"/proc/{pid}").stdout.strip() == "binbot"
    touch = machine.run("nsenter", f"--target={pid}", "--mount", "touch", f"{paths.VENV}/x", check=False)
    assert "Read-only file system" in touch.stderr
    assert machine.run("nsenter", f"--target={pid}", "--mount", "ls", "-A", "/root").stdout == ""

    # Kept frames go where the sandbox lets the service write: the state folder's kept/, its own.
    def kept() -> list[str]:
        return machine.run("ls", paths.KEPT_DIR, check=False).stdout.split()

    machine.wait_until(lambda: sum(name.endswith(".json") for name in kept()) == 3, "3 kept frames", "binbot")
    assert machine.run("stat", "-c", "%U %a", paths.KEPT_DIR, *[f"{paths.KEPT_DIR}/{name}" for name in kept()]
                       ).stdout.split() == ["binbot", "700"] + ["binbot", "600"] * len(kept())

    def watchdog_petted() -> str:
        return machine.show("binbot", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]

    first_ping = watchdog_petted()
    machine.wait_until(lambda: watchdog_petted() != first_ping, "watchdog ping", "binbot")

    machine.run("systemctl", "reload", "binbot")
    machine.wait_until(lambda: "reload: now serving model" in machine.journal("binbot"), "reload", "binbot")

    again = machine.run(INSTALL_INSIDE, env=OFFLINE_PIP)
    assert "nothing to do" in again.stdout

    machine.run("kill", "-STOP", pid)  # a hung daemon: it stops petting the watchdog
    machine.wait_until(lambda: machine.show("binbot", "NRestarts", "ActiveState") == {
        "NRestarts": "1", "ActiveState": "active"}, "restart after the watchdog", "binbot")
    assert "Watchdog timeout" in machine.journal("binbot")
    assert machine.show("binbot", "MainPID")["MainPID"] != pid

    machine.run("systemctl", "stop", "binbot")
    stopped = machine.show("binbot", "ActiveState", "Result", "ExecMainStatus")
    clean_exit = {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert stopped == clean_exit, machine.journal("binbot")


@needs_container
def test_a_stop_with_every_output_at_work_closes_them_all_well_inside_timeoutstopsec(booted, tmp_path):
    """`systemctl stop` with every output on and busy: the outputs close side by side within the daemon's budget,
    nothing is killed, the servo is back at rest, MQTT's `offline` is sent, and every file is whole."""
    machine = booted.machine
    # gpiozero's mock pins stand in for the header (on a Pi gpiozero comes from apt; here from the wheelhouse).
    machine.run(f"{paths.VENV}/bin/python", "-m", "pip", "install", "--quiet", *extra_requirements("pi"),
                env=OFFLINE_PIP)
    machine.run("rm", "-rf", DROP_INS)
    machine.run("mkdir", DROP_INS)
    machine.run("tee", f"{DROP_INS}/mock-pins.conf", input=MOCK_PINS)
    machine.run("systemctl", "daemon-reload")
    machine.run("tee", paths.CONFIG_FILE, input=EVERY_OUTPUT)
    machine.run("mkdir", "-p", BROKER)
    machine.run("tee", f"{BROKER}/mosquitto.conf", input=BROKER_CONFIG)
    since = time.time()  # the container's clock is this machine's

    def log(*options: str) -> str:
        return machine.journal("binbot", "--output=cat", *options, since=since)

    def health() -> dict:
        return json.loads(machine.run(f"{paths.VENV}/bin/python", "-c", HEALTHZ).stdout)["outputs"]

    def kept() -> int:
        return sum(name.endswith(".json") for name in machine.run("ls", paths.KEPT_DIR, check=False).stdout.split())

    def lines(name: str) -> list[str]:
        return machine.run("cat", f"{paths.STATE_DIR}/{name}", check=False).stdout.splitlines(keepends=True)

    # The service starts before the broker is up, so MQTT has a warning to log (for the priorities, below).
    kept_before = kept()  # another test's
    started = machine.run(INSTALL_INSIDE, env=OFFLINE_PIP, timeout=300)
    assert "installed paho-mqtt" in started.stdout and "started binbot.service" in started.stdout, started.stdout
    machine.wait_until(lambda: "mqtt: cannot connect" in log(), "MQTT's failure to connect", "binbot")
    machine.run("systemd-run", "--unit=broker", "/usr/sbin/mosquitto", "-c", f"{BROKER}/mosquitto.conf")
    machine.run("systemd-run", "--unit=viewer", "curl", "--silent", "--output", "/dev/null",
                "http://127.0.0.1:8080/stream.mjpg")  # someone watching: the view encodes frames

    def every_output_at_work() -> bool:
        outputs = health()
        return (outputs["mqtt"]["connected"] and outputs["view"]["streams"] == 1 and kept() > kept_before
                and "gpio: doing" in log() and lines("events.jsonl") and lines("results.jsonl"))

    machine.wait_until(every_output_at_work, "every output at work", "binbot")

    began = time.monotonic()
    machine.run("systemctl", "stop", "binbot")
    took = time.monotonic() - began

    machine.wait_until(lambda: "binbot run: stopped after" in log(), "the daemon's last line", "binbot")
    journal = log()
    print(f"systemctl stop returned in {took:.2f} s;", *re.findall(r"shutdown took .*", journal))
    timeout = machine.show("binbot", "TimeoutStopUSec")["TimeoutStopUSec"]
    assert re.fullmatch(r"[0-9.]+s", timeout) and took < float(timeout[:-1]), (took, timeout)
    stopped = machine.show("binbot", "ActiveState", "Result", "ExecMainStatus")
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, journal
    assert not [line for line in journal.splitlines() if any(
        sign in line for sign in ("SIGKILL", "Killing process", "timed out", "left unfinished", "did not finish"))]
    [shutdown] = re.findall(r"^binbot run: shutdown took ([0-9.]+) s$", journal, re.M)
    assert float(shutdown) <= SHUTDOWN_BUDGET

    # The servo: held at 45° for a minute when the stop came, and back at rest before the pins were let go.
    [left_at] = re.findall(r"^binbot run: gpio: shutdown cut an action short: servo GPIO17 left at (-?[0-9.]+)° "
                           r"\(rest 0°\), pins released$", journal, re.M)
    assert abs(float(left_at)) < 0.5

    # MQTT: `offline` retained, published by the daemon itself and followed by a clean DISCONNECT (a killed
    # daemon's will would say `offline` too, but the broker would log a connection closed without one).
    assert machine.run(f"{paths.VENV}/bin/python", "-c", RETAINED, "binbot/testbin/available").stdout.split() == [
        "offline", "retained"]
    client = "binbot-testbin"
    broker_log = [line.split(": ", 1)[-1] for line in machine.run("cat", f"{BROKER}/mosquitto.log").stdout.splitlines()]
    about = [line for line in broker_log if client in line]
    assert sum(line.startswith("New client connected") for line in about) == 1, about  # never dropped
    assert "'binbot/testbin/available', ... (7 bytes)" in [line for line in about if "PUBLISH" in line][-1]
    assert about[-2:] == [f"Received DISCONNECT from {client}", f"Client {client} disconnected."], about[-5:]

    # Files: every kept frame whole (its JPEG as its sidecar describes it), no .partial left; whole JSON lines.
    archive = machine.run("sh", "-c", f"tar -C {paths.KEPT_DIR} -c . | base64 --wrap=0").stdout
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(archive))) as tar:
        tar.extractall(tmp_path / "kept", filter="data")
    ids = sorted(sidecar.stem for sidecar in (tmp_path / "kept").glob("*.json"))
    assert sorted(path.name for path in (tmp_path / "kept").iterdir()) == sorted(
        [f"{i}.jpg" for i in ids] + [f"{i}.json" for i in ids])
    assert len(ids) > kept_before
    for i in ids:
        assert jpeg_matches(read_sidecar(tmp_path / "kept" / f"{i}.json"), tmp_path / "kept" / f"{i}.jpg")
    for name in ("events.jsonl", "results.jsonl"):
        assert all(line.endswith("\n") and json.loads(line) for line in lines(name))

    # journald took each line's priority: -p warning shows the warning and not the info lines.
    warnings = log("--priority=warning").splitlines()
    assert warnings == ["binbot run: mqtt: cannot connect to 127.0.0.1:1883; retrying, classification goes on"]
    ready = f"binbot run: ready: first frame classified with model {booted.bundle.id}"
    assert ready in journal.splitlines() and ready not in warnings


HEALTHZ = ("import urllib.request; "
           "print(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=10).read().decode())")
# The message retained on a topic (argv[1]), and whether it came as retained.
RETAINED = """
import sys, threading
import paho.mqtt.client as paho
got = threading.Event()
def show(client, userdata, message):
    print(message.payload.decode(), "retained" if message.retain else "live")
    got.set()
client = paho.Client(paho.CallbackAPIVersion.VERSION2)
client.on_connect = lambda client, *_: client.subscribe(sys.argv[1], qos=1)
client.on_message = show
client.connect("127.0.0.1", 1883)
client.loop_start()
got.wait(10)
client.disconnect()
client.loop_stop()
"""
MOCK_PINS = "[Service]\nEnvironment=GPIOZERO_PIN_FACTORY=mock GPIOZERO_MOCK_PIN_CLASS=mockpwmpin\n"
BROKER = "/srv/broker"
# log_type all: the broker logs each client's DISCONNECT, and tells a clean one from a dropped connection.
BROKER_CONFIG = f"""listener 1883 127.0.0.1
allow_anonymous true
user root
log_dest file {BROKER}/mosquitto.log
log_type all
"""
# Every output on: files under the state folder, the live view, every frame kept, a broker on loopback, and a
# servo whose every action is held for a minute (so that the stop comes while it is away from rest).
EVERY_OUTPUT = f"""bundle = "{paths.CURRENT_BUNDLE}"
source = ""
fps = 10.0
http = "127.0.0.1:8080"

[events]
file = "{paths.STATE_DIR}/events.jsonl"

[results]
file = "{paths.STATE_DIR}/results.jsonl"

[view]
enabled = true

[keep]
sample = 1.0
per_hour = 10000
per_day = 10000

[mqtt]
host = "127.0.0.1"
device = "testbin"

[gpio]
hold = 60.0
cooldown = 60.0
servo = {{ pin = "GPIO17", rest = 0.0 }}
default = {{ angle = 45.0, pulse = {{ pin = "GPIO27", seconds = 0.2 }} }}
"""
