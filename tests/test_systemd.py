"""The service unit and its default config, checked by the real systemd-analyze and a traced daemon."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from dataclasses import fields
from pathlib import Path

import pytest

from binbot.deploy.settings import Settings
from binbot.device import paths
from binbot.device import registry
from binbot.device.config import MAX_THREADS, RunConfig, keys, load_config
from binbot.device.httpserver import MAX_CONNECTIONS
from binbot.device.keep import DEFAULT_DIR as DEFAULT_KEEP_DIR
from binbot.tomlfile import tomllib
from binbot.device.daemon import SHUTDOWN_BUDGET
from binbot.systemd import syscall_check

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNIT = SYSTEMD / "binbot.service"
CONFIG = SYSTEMD / "binbot.toml"
INSTALL = SYSTEMD / "install.sh"
BINBOT = Path(sys.executable).parent / "binbot"

needs_systemd_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
needs_strace = pytest.mark.skipif(not shutil.which("strace"), reason="strace not installed")


def verify(unit_text: str, root: Path) -> subprocess.CompletedProcess:
    """`systemd-analyze verify` on unit_text, in a throwaway root holding the paths the unit names.

    verify checks that ExecStart's program exists, and looks for it (and for the targets the unit
    is ordered against) under --root, so the root gets a placeholder binbot, kill, and a copy of
    this machine's system units.
    """
    for program in ("opt/binbot/venv/bin/binbot", "usr/bin/kill"):
        (root / program).parent.mkdir(parents=True, exist_ok=True)
        (root / program).write_text("#!/bin/sh\n")
        (root / program).chmod(0o755)
    (root / "bin").symlink_to("usr/bin")
    system_units = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir())
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/binbot.service").write_text(unit_text)
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "binbot.service"],
                          capture_output=True, text=True)


@needs_systemd_analyze
def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    result = verify(UNIT.read_text(), tmp_path / "root")

    # verify exits 0 even for an unknown key or a bad value; it only prints them.
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


@needs_systemd_analyze
def test_verify_would_report_a_misspelled_setting(tmp_path):
    result = verify(UNIT.read_text().replace("ProtectSystem=", "ProtectSystm="), tmp_path / "root")

    assert "Unknown key 'ProtectSystm'" in result.stdout + result.stderr


def exposure(unit: Path) -> tuple[float, str]:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                            capture_output=True, text=True, check=True)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout[-500:]
    return float(match[1]), match[2]


@needs_systemd_analyze
def test_the_unit_is_rated_ok_or_better_by_systemd_analyze_security():
    score, verdict = exposure(UNIT)

    assert score <= 4.0, f"exposure {score} {verdict}"
    assert verdict in ("OK", "SAFE")


@needs_systemd_analyze
def test_the_same_service_without_its_hardening_would_be_rated_exposed(tmp_path):
    bare = tmp_path / "binbot.service"
    bare.write_text("[Service]\nType=notify\nExecStart=/opt/binbot/venv/bin/binbot run\nUser=binbot\n")

    score, _ = exposure(bare)

    assert score > 4.0


def test_the_unit_follows_the_pi_conventions():
    unit = syscall_check.read_unit(UNIT)
    setting = {key: values[-1] for key, values in unit.items()}

    assert shlex.split(setting["ExecStart"]) == [f"{paths.VENV}/bin/binbot", "run", "--config", paths.CONFIG_FILE]
    assert setting["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert (setting["Type"], setting["NotifyAccess"]) == ("notify", "main")
    assert (setting["User"], setting["Group"], setting["SupplementaryGroups"]) == ("binbot", "binbot", "video gpio")
    assert (setting["StateDirectory"], setting["ConfigurationDirectory"]) == ("binbot", "binbot")
    assert setting["Restart"] == "on-failure"
    # The daemon exits within SHUTDOWN_BUDGET plus a frame; systemd must not SIGKILL it first.
    assert seconds(setting["TimeoutStopSec"]) > SHUTDOWN_BUDGET + 1
    assert seconds(setting["WatchdogSec"]) >= 10
    # Room for every HTTP connection the daemon takes on, and for interpreters at the most threads it accepts.
    assert int(setting["LimitNOFILE"]) >= 8 * MAX_CONNECTIONS
    assert int(setting["TasksMax"]) >= 2 * MAX_THREADS + MAX_CONNECTIONS + 8
    # Without a bundle the unit is skipped; the path is the one the default config serves.
    condition = re.search(r"^ConditionPathExists=(.+)$", UNIT.read_text(), re.M)[1]
    assert condition == load_config(CONFIG, {}).bundle == paths.CURRENT_BUNDLE


def seconds(span: str) -> float:
    """A systemd time span such as 30s, 2min or 500ms, in seconds."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min)?", span).groups()
    return float(number) * {"ms": 0.001, "s": 1, None: 1, "min": 60}[unit]


def test_the_default_config_loads_with_the_daemons_own_parser():
    config = load_config(CONFIG, {})

    assert config.source == "picamera2"
    assert config.bundle == paths.CURRENT_BUNDLE
    assert config.http == RunConfig().http
    assert config.http_address == RunConfig().http_address


def test_the_unit_installer_and_default_config_agree_with_the_defaults_in_code():
    """The Pi's paths are named once, in device/paths.py, and the service's name and its HTTP address in
    Python: the unit, the installer, the default config and deploy match them."""
    deploy = Settings()
    unit = syscall_check.read_unit(UNIT)
    installer = INSTALL.read_text()
    config = load_config(CONFIG, {})
    keep_table = tomllib.loads("\n".join(line.removeprefix("# ") for line in commented_table(CONFIG.read_text(), "keep")))

    assert "/var/lib/" + unit["StateDirectory"][-1] == paths.STATE_DIR
    assert "/etc/" + unit["ConfigurationDirectory"][-1] == paths.CONFIG_DIR
    assert installer_setting(installer, "STATE") == paths.STATE_DIR
    assert installer_setting(installer, "CONFIG") == paths.CONFIG_FILE
    assert installer_setting(installer, "VENV") == paths.VENV
    assert f'"$STATE/{paths.BUNDLES}"' in installer  # the folder the installer makes
    assert f"$STATE/{paths.BUNDLES}/{paths.CURRENT}" in installer  # the link it waits for before starting
    assert config.bundle == paths.CURRENT_BUNDLE
    assert keep_table["dir"] == DEFAULT_KEEP_DIR == paths.KEPT_DIR
    assert (deploy.remote_dir, deploy.bundles_dir, deploy.kept_dir) == (paths.STATE_DIR, paths.BUNDLES_DIR, paths.KEPT_DIR)
    assert config.http == RunConfig().http
    assert deploy.health_url == f"http://{config.http}/healthz"
    assert shlex.split(deploy.reload_command)[-1] + ".service" == UNIT.name
    assert installer_setting(installer, "UNIT") == f"/etc/systemd/system/{UNIT.name}"


def installer_setting(installer: str, name: str) -> str:
    """The value install.sh gives its variable name, on a line NAME=value of its own."""
    return re.search(rf"^{name}=(\S+)$", installer, re.M)[1]


# A path of BinBot's on the Pi, as the shipped files write it out (up to a quote, a space or punctuation).
PI_PATH = re.compile(r"/(?:var/lib|etc|opt)/binbot[^\s\"'`),;:]*")


@pytest.mark.parametrize("shipped", [UNIT, INSTALL, CONFIG], ids=lambda path: path.name)
def test_every_pi_path_a_shipped_file_writes_out_is_one_device_paths_names(shipped):
    named = {paths.STATE_DIR, paths.BUNDLES_DIR, paths.CURRENT_BUNDLE, paths.KEPT_DIR, paths.CONFIG_DIR,
             paths.CONFIG_FILE, paths.VENV}
    written = {path.rstrip(".") for path in PI_PATH.findall(shipped.read_text())}  # a sentence may end in one

    # Files under the state folder (results.jsonl, a bundle's folder) and the venv's programs are the service's own.
    unnamed = {path for path in written - named
               if not Path(path).is_relative_to(paths.STATE_DIR) and not Path(path).is_relative_to(paths.VENV)}
    assert written and not unnamed, unnamed


COMMENTED_SETTING = re.compile(r"^# (\w+) = (.+?)(?:\s+#\s*(.*))?$")


def commented_table(text: str, name: str) -> list[str]:
    """The commented-out lines of the example [name] table in text, from `# [name]` to the next blank line."""
    lines = text.splitlines()
    start = lines.index(f"# [{name}]") + 1
    return lines[start:lines.index("", start) if "" in lines[start:] else len(lines)]


def test_the_default_config_shows_every_top_level_setting_and_its_commented_examples_load(tmp_path):
    text = CONFIG.read_text()
    active = set(tomllib.loads(text)) - set(registry.names())
    top_level = re.split(r"^#? ?\[\w+\]$", text, maxsplit=1, flags=re.M)[0]  # a table's keys are not the file's
    commented = {m[1]: m for m in map(COMMENTED_SETTING.match, top_level.splitlines()) if m and m[1] in keys()}
    uncommented = tmp_path / "binbot.toml"
    uncommented.write_text('bundle = "b"\n' + "\n".join(f"{m[1]} = {m[2]}" for m in commented.values()) + "\n")

    config = load_config(uncommented, {})  # raises on an unknown key or a wrong type

    assert active | set(commented) == set(keys()), "a top-level setting is missing from systemd/binbot.toml"
    for key, match in commented.items():
        if "default:" not in (match[3] or ""):  # a line without its own "default:" shows the default
            assert getattr(config, key) == getattr(RunConfig(), key), f"{key}: the commented value is not the default"


@pytest.mark.parametrize("name", ["view", "keep"])
def test_a_commented_output_table_shows_every_setting_at_its_default_and_loads(tmp_path, name):
    lines = commented_table(CONFIG.read_text(), name)
    table = tomllib.loads("\n".join(line.removeprefix("# ") for line in lines))
    uncommented = tmp_path / "binbot.toml"
    uncommented.write_text(f'bundle = "b"\n[{name}]\n' + "\n".join(line.removeprefix("# ") for line in lines) + "\n")

    shown = load_config(uncommented, {}).output(name)  # raises on an unknown key or a wrong type
    empty = tmp_path / "empty.toml"
    empty.write_text(f'bundle = "b"\n[{name}]\n')

    declared = {field.name for field in fields(registry.settings(name))}
    assert set(table) == declared, f"a [{name}] setting is missing from systemd/binbot.toml"
    assert shown == load_config(empty, {}).output(name)  # each value shown is the default
    assert load_config(CONFIG, {}).output("keep") is None  # keeping is off until its table is uncommented


def test_the_service_can_write_only_under_its_state_folder_where_frames_are_kept():
    """ProtectSystem=strict makes every file system read-only to the service; StateDirectory=binbot opens
    /var/lib/binbot alone (RuntimeDirectory's /run/binbot and PrivateTmp's /tmp vanish with it)."""
    unit = syscall_check.read_unit(UNIT)
    setting = {key: values[-1] for key, values in unit.items()}
    state = Path(paths.STATE_DIR)
    opened = [path.lstrip("-+") for key in ("ReadWritePaths", "BindPaths") for value in unit.get(key, [])
              for path in value.split()]

    assert setting["ProtectSystem"] == "strict" and setting["ProtectHome"] in ("yes", "read-only", "tmpfs")
    assert "/var/lib/" + setting["StateDirectory"] == paths.STATE_DIR and setting["PrivateTmp"] == "yes"
    assert all(Path(path.split(":")[0]).is_relative_to(state) for path in opened), opened
    for key in ("CacheDirectory", "LogsDirectory", "ReadWriteDirectories"):  # other persistent writable places
        assert key not in unit, key
    assert setting.get("DynamicUser", "no") == "no"  # which would move the state folder under /var/lib/private
    assert Path(paths.KEPT_DIR).is_relative_to(state) and Path(paths.BUNDLES_DIR).is_relative_to(state)


class Daemon:
    """`binbot run` under strace, started as systemd would: a notify socket and a watchdog."""

    def __init__(self, bundle: Path, tmp_path: Path):
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp_path / "notify"))
        self.notify.settimeout(60)
        env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="2000000")
        command = [str(BINBOT), "run", "--config", str(CONFIG), "--bundle", str(bundle), "--source", "",
                   "--http", "127.0.0.1:0", "--fps", "20", "--events", os.devnull]
        self.trace_file = tmp_path / "strace.txt"
        self.tracer, self.pid = syscall_check.trace(command, self.trace_file, env=env, stderr=subprocess.PIPE,
                                                    text=True)
        self.log: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        for line in self.tracer.stderr:
            self.log.put(line)

    def wait_for_log(self, pattern: str) -> re.Match:
        while True:
            line = self.log.get(timeout=60)
            if match := re.search(pattern, line):
                return match

    def wait_for_notify(self, message: str) -> None:
        while message not in self.notify.recv(4096).decode().split("\n"):
            pass


@needs_systemd_analyze
@needs_strace
def test_the_daemon_stays_inside_the_units_sandbox(small_cnn_bundles, tmp_path):
    daemon = Daemon(small_cnn_bundles["int8"], tmp_path)
    try:
        port = int(daemon.wait_for_log(r"http: listening on http://127\.0\.0\.1:(\d+)")[1])
        daemon.wait_for_notify("READY=1")
        for path in ("/healthz", "/metrics", "/latest"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read()
        os.kill(daemon.pid, signal.SIGHUP)
        daemon.wait_for_log(r"reload: now serving model")
        daemon.wait_for_notify("WATCHDOG=1")
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read())
    finally:
        os.kill(daemon.pid, signal.SIGTERM)
        daemon.tracer.wait(timeout=60)
    unit = syscall_check.read_unit(UNIT)
    sets = syscall_check.syscall_sets()

    report = syscall_check.check(syscall_check.read_trace(daemon.trace_file), unit, sets)

    assert health["ok"] and not health["reload_error"]
    assert {"socket", "bind", "accept4", "sendto", "mmap", "openat"} <= report.syscalls  # it traced the real thing
    assert report.problems(unit) == []
    assert report.denied <= set(syscall_check.HARMLESS_DENIED)
    assert "/proc/cpuinfo" in report.proc_files  # why the unit has no ProcSubset=pid


def test_the_syscall_check_finds_what_a_sandbox_would_refuse():
    calls = [syscall_check.Call("openat", 'AT_FDCWD, "/proc/cpuinfo", O_RDONLY'),
             syscall_check.Call("mprotect", "0x7f00, 4096, PROT_READ|PROT_EXEC"),
             syscall_check.Call("socket", "AF_PACKET, SOCK_RAW, 0"),
             syscall_check.Call("unshare", "CLONE_NEWNS"),
             syscall_check.Call("reboot", "")]
    unit = {"SystemCallFilter": ["@basic-io", "~@privileged"], "RestrictAddressFamilies": ["AF_UNIX AF_INET"]}
    sets = {"@basic-io": ["openat", "mprotect", "socket"], "@privileged": ["reboot"]}

    report = syscall_check.check(calls, unit, sets)

    assert report.denied == {"unshare", "reboot"}
    assert len(report.write_execute) == 1 and report.families == {"AF_PACKET"} and len(report.namespaces) == 1
    assert report.proc_files == {"/proc/cpuinfo"}
    assert len(report.problems(unit)) == 5
