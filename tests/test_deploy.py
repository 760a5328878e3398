"""`binbot deploy` against a real OpenSSH server on 127.0.0.1 and a real `binbot run` standing in for the service.

Each "Pi" is a folder on this machine (its --remote-dir), reached over ssh as root through the sshd
that tests/sshd.py starts (host aliases pi1, pi2, flaky, down in a generated ssh config). Its service
is a `binbot run` on <folder>/bundles/current, reloaded with `kill -HUP`, its /healthz read on
loopback as on a Pi.
"""

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from binbot.cli import main
from binbot.device.bundle import FILES, MANIFEST, manifest_checksum, read_bundle
from binbot.errors import BinbotError
from binbot.deploy import steps as deploy_steps
from binbot.deploy.hosts import read_hosts_file
from binbot.deploy.settings import Settings
from binbot.deploy.remote import SCRIPTS, HostSpec, Remote, RemoteError, SshSettings, parse_host, remote_script
from helpers import wait_for


class Pi:
    """A folder laid out as the installer leaves /var/lib/binbot, with `binbot run` serving bundles/current."""

    def __init__(self, folder: Path, bundle: Path, images: Path):
        self.folder, self.bundles = folder, folder / "bundles"
        self.bundles.mkdir(parents=True)
        first = read_bundle(bundle).id
        shutil.copytree(bundle, self.bundles / first)
        (self.bundles / "current").symlink_to(first)
        self.log = folder / "daemon.log"
        with open(self.log, "w") as log:
            # Paced, so that a few of these do not take the CPU from the ssh sessions under test.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "binbot", "run", "--bundle", str(self.bundles / "current"),
                 "--source", f"replay:{images}", "--fps", "20", "--http", "127.0.0.1:0", "--threads", "1",
                 "--events", os.devnull], stdout=subprocess.DEVNULL, stderr=log)
        self.url = wait_for("the daemon to listen", self._address)
        wait_for("the daemon to serve", lambda: self.health().get("ok"))

    def _address(self):
        if self.process.poll() is not None:
            raise AssertionError(f"binbot run exited with {self.process.returncode}:\n{self.log.read_text()}")
        found = re.search(r"listening on (http://\S+)", self.log.read_text())
        return found and found.group(1)

    def health(self) -> dict:
        """/healthz, fetched by the test itself over HTTP."""
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    def link(self, name: str) -> str | None:
        path = self.bundles / name
        return os.readlink(path) if path.is_symlink() else None

    def service_options(self) -> list[str]:
        """The options that make deploy find this Pi's folder and service."""
        return ["--remote-dir", str(self.folder), "--reload-command", f"kill -HUP {self.process.pid}",
                "--health-url", f"{self.url}/healthz"]

    def hosts_file_entry(self, name: str, host: str) -> str:
        return (f'[{name}]\nhost = "{host}"\nremote_dir = "{self.folder}"\n'
                f'reload_command = "kill -HUP {self.process.pid}"\nhealth_url = "{self.url}/healthz"\n')

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def make_pi(tmp_path, image_folder, small_cnn_bundles):
    pis = []

    def make(name: str = "pi", first: str = "int8") -> Pi:
        pis.append(Pi(tmp_path / name, small_cnn_bundles[first], image_folder))
        return pis[-1]

    yield make
    for pi in pis:
        pi.stop()


@pytest.fixture
def deploy(sshd, capsys):
    """Runs `binbot deploy ARGS -F <the test ssh config>` in this process: (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["deploy", *args, "-F", str(sshd["config"]), "--timeout", "30"])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def bundle_id(bundle: Path) -> str:
    return read_bundle(bundle).id


def test_a_good_deploy_switches_current_and_the_running_daemon_serves_the_new_model(make_pi, deploy, small_cnn_bundles):
    pi = make_pi()
    old, new = bundle_id(small_cnn_bundles["int8"]), bundle_id(small_cnn_bundles["float16"])
    assert pi.health()["model"] == old

    code, out, err = deploy(str(small_cnn_bundles["float16"]), "pi1", *pi.service_options())

    assert code == 0, err
    assert pi.link("current") == new and pi.link("previous") == old
    assert pi.health()["model"] == new and pi.health()["ok"]
    assert sorted(p.name for p in (pi.bundles / new).iterdir()) == sorted(p.name for p in small_cnn_bundles["float16"].iterdir())
    assert not (pi.bundles / f"{new}.partial").exists()
    assert "pi1: checksums verified on the host" in out
    assert re.search(rf"^pi1\s+deployed\s+{new}\b", out, re.M), out


def test_deploying_the_current_bundle_again_is_a_no_op_that_says_so(make_pi, deploy, small_cnn_bundles):
    pi = make_pi()
    assert deploy(str(small_cnn_bundles["float16"]), "pi1", *pi.service_options())[0] == 0
    link_before = (pi.bundles / "current").lstat()
    reloads_before = pi.log.read_text().count("SIGHUP")

    code, out, _ = deploy(str(small_cnn_bundles["float16"]), "pi1", *pi.service_options())

    assert code == 0
    assert "already current and serving; nothing to do" in out
    assert re.search(r"^pi1\s+unchanged\b", out, re.M)
    link_after = (pi.bundles / "current").lstat()
    assert (link_after.st_ino, link_after.st_mtime_ns) == (link_before.st_ino, link_before.st_mtime_ns)
    frames = pi.health()["frames"]
    wait_for("the daemon's loop to go round a few times", lambda: pi.health()["frames"] > frames + 5)
    assert pi.log.read_text().count("SIGHUP") == reloads_before  # a stray reload would have been logged by now


def test_status_rollback_and_pruning_with_user_host_port_and_ssh_options(make_pi, sshd, capsys, small_cnn_bundles):
    """Without the ssh config file: root@127.0.0.1:PORT and the key and known-hosts file as -o options."""
    pi = make_pi()
    host = f"root@127.0.0.1:{sshd['port']}"
    ssh = ["-o", f"IdentityFile={sshd['folder']}/client_key", "-o", "StrictHostKeyChecking=no",
           "-o", f"UserKnownHostsFile={sshd['folder']}/known_hosts", "-o", "LogLevel=ERROR"]
    first, second, third = (bundle_id(small_cnn_bundles[mode]) for mode in ("int8", "float16", "float32"))
    for mode in ("float16", "float32"):
        assert main(["deploy", str(small_cnn_bundles[mode]), host, "--keep", "2", *ssh, *pi.service_options()]) == 0
    out = capsys.readouterr().out
    assert f"removed old bundles {first} (keeping 2)" in out
    assert sorted(p.name for p in pi.bundles.iterdir() if not p.is_symlink()) == sorted([second, third])

    assert main(["deploy", "--status", host, *ssh, *pi.service_options()]) == 0
    out = capsys.readouterr().out
    assert f"current {third}, previous {second}" in out
    assert re.search(rf"{third}  uploaded .* \(current\)", out) and re.search(rf"{second}  uploaded .* \(previous\)", out)
    assert f"/healthz: ok, model {third}" in out

    assert main(["deploy", "--rollback", host, *ssh, *pi.service_options()]) == 0
    out = capsys.readouterr().out
    assert pi.link("current") == second and pi.link("previous") == third
    assert pi.health()["model"] == second
    assert re.search(rf"^{re.escape(host)}\s+rolled back\s+{second}\b", out, re.M)


@pytest.fixture
def healthz_answering(tmp_path):
    """answering(body): a URL whose /healthz answers body (bytes), as a broken or hostile service might."""
    servers = []

    def answering(body: bytes) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        servers.append(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        threading.Thread(target=servers[-1].serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{servers[-1].server_address[1]}/healthz"

    yield answering
    for server in servers:
        server.shutdown()


@pytest.mark.parametrize("answer, shown", [
    (b'{"ok": true, "model": "0123456789ab", "source": {"state": "failed", "error": ["a", "list"]}}',
     'unreachable (/healthz answered with source.error = ["a", "list"], not str)'),
    (b'{"ok": "yes", "model": "0123456789ab"}', 'unreachable (/healthz answered with ok = "yes", not bool)'),
    (b"[" * 400_000, "/healthz: not a /healthz answer (maximum recursion depth exceeded"),
    (b'{"ok": true, "fps": ' + b"9" * 5000 + b"}", "/healthz: not a /healthz answer (Exceeds the limit"),
])
def test_status_against_a_malformed_healthz_says_so_in_its_row(deploy, tmp_path, healthz_answering, answer, shown):
    (tmp_path / "pi" / "bundles").mkdir(parents=True)

    code, out, err = deploy("--status", "pi1", "--remote-dir", str(tmp_path / "pi"),
                            "--health-url", healthz_answering(answer))

    assert code == 1 and "Traceback" not in err
    assert re.search(rf"^pi1\s+UNHEALTHY\s+-\s+(unreachable \(http://127\.0\.0\.1:\d+)?{re.escape(shown)}", out, re.M), out


def test_a_damaged_copy_on_the_host_is_uploaded_again(make_pi, deploy, small_cnn_bundles):
    """A bundle left on the Pi from an earlier deploy whose file changed there (an SD card error) is not reused."""
    pi = make_pi()
    new = bundle_id(small_cnn_bundles["float16"])
    assert deploy(str(small_cnn_bundles["float16"]), "pi1", *pi.service_options())[0] == 0
    assert deploy("--rollback", "pi1", *pi.service_options())[0] == 0
    with open(pi.bundles / new / "labels.txt", "a") as labels:
        labels.write("glass\n")

    code, out, err = deploy(str(small_cnn_bundles["float16"]), "pi1", *pi.service_options())

    assert code == 0, err
    assert f"pi1: {pi.bundles}/{new} does not match its checksums (labels.txt); uploading it again" in out
    assert (pi.bundles / new / "labels.txt").read_bytes() == (small_cnn_bundles["float16"] / "labels.txt").read_bytes()
    assert pi.health()["model"] == new


def test_an_interrupted_upload_leaves_the_old_bundle_active_and_adopts_nothing(make_pi, deploy, sshd, small_cnn_bundles):
    """The connection drops mid-upload (a relay cuts it, as a lost Wi-Fi link would); a later deploy starts afresh."""
    pi = make_pi()
    old, new = bundle_id(small_cnn_bundles["int8"]), bundle_id(small_cnn_bundles["float32"])
    dropped_before = sshd["proxy"].dropped

    code, out, err = deploy(str(small_cnn_bundles["float32"]), "flaky", *pi.service_options())

    assert code == 1
    assert sshd["proxy"].dropped > dropped_before
    assert err == "binbot deploy: error: flaky: upload failed, nothing switched: ssh: the connection was lost\n"
    assert pi.link("current") == old and pi.link("previous") is None
    assert not (pi.bundles / new).exists()
    assert pi.health()["model"] == old and "SIGHUP" not in pi.log.read_text()

    code, out, err = deploy(str(small_cnn_bundles["float32"]), "pi1", *pi.service_options())
    assert code == 0, err
    assert "uploading" in out and pi.link("current") == new and pi.health()["model"] == new
    assert not (pi.bundles / f"{new}.partial").exists()


@pytest.fixture
def bundle_from_a_newer_binbot(small_cnn_bundles, tmp_path, monkeypatch):
    """The float16 bundle in a bundle format (2) that this workstation reads but the Pi's binbot does not.

    A real way a bundle passes every check here and is refused on the target: the workstation's
    binbot was upgraded and its converter writes a newer format, the Pi's was not. The test
    process plays the newer binbot (it accepts versions 1 and 2); the daemon, a separate process,
    is the older one on the Pi. The Pi's own loader refuses the bundle, as it would one failing its
    self-test there, and the daemon keeps serving its old model while deploy rolls `current` back.
    """
    bundle = shutil.copytree(small_cnn_bundles["float16"], tmp_path / "format2")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["format_version"] = 2
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    monkeypatch.setattr("binbot.device.bundle.SUPPORTED_FORMAT_VERSIONS", (1, 2))
    return bundle


def test_a_bundle_the_target_refuses_is_rolled_back(make_pi, deploy, bundle_from_a_newer_binbot, small_cnn_bundles):
    pi = make_pi()
    assert deploy(str(small_cnn_bundles["float32"]), "pi1", *pi.service_options())[0] == 0
    old, earlier = bundle_id(small_cnn_bundles["float32"]), bundle_id(small_cnn_bundles["int8"])
    refused = bundle_id(bundle_from_a_newer_binbot)

    code, out, err = deploy(str(bundle_from_a_newer_binbot), "pi1", *pi.service_options())

    assert code == 1
    assert f"current -> {refused}" in out  # it really was switched, then switched back
    assert pi.link("current") == old and pi.link("previous") == earlier
    assert pi.health()["model"] == old and pi.health()["ok"]
    line = err.strip().splitlines()[-1]
    assert line.startswith("binbot deploy: error: pi1: the service refused it: ")
    assert "bundle format version 2 is not supported" in line and line.endswith(f"rolled back to {old}")
    assert re.search(rf"^pi1\s+FAILED\s+{old}\b", out, re.M)


def test_several_hosts_deploy_in_parallel_and_an_unreachable_one_fails_alone(make_pi, deploy, small_cnn_bundles,
                                                                              tmp_path):
    """Two Pis (each its own folder and service, so they go in a hosts file) and one that does not answer."""
    kitchen, garage = make_pi("kitchen"), make_pi("garage")
    hosts = tmp_path / "pis.toml"
    hosts.write_text(kitchen.hosts_file_entry("kitchen", "pi1") + garage.hosts_file_entry("garage", "pi2")
                     + '[shed]\nhost = "down"\n')
    new = bundle_id(small_cnn_bundles["float16"])

    code, out, err = deploy(str(small_cnn_bundles["float16"]), "--hosts", str(hosts))

    assert code == 1
    for name, pi in (("kitchen", kitchen), ("garage", garage)):
        assert pi.link("current") == new and pi.health()["model"] == new
        assert f"{name}: serving {new}" in out
        assert re.search(rf"^{name}\s+deployed\s+{new}\s", out, re.M), out
    assert re.search(r"^shed\s+FAILED\s+-\s+ssh: connect to host 127\.0\.0\.1 port \d+: Connection refused$", out, re.M), out
    assert re.fullmatch(r"binbot deploy: error: shed: ssh: connect to host 127\.0\.0\.1 port \d+: Connection refused\n", err)
    progress = [line for line in out.splitlines() if line.startswith(("kitchen:", "garage:", "shed:"))]
    assert len(progress) >= 10 and all(line.startswith(("kitchen: ", "garage: ")) for line in progress)


def test_unreachable_and_refused_hosts_are_one_line_errors(deploy):
    code, out, err = deploy("--status", "down", "nosuchuser@pi1")

    assert code == 1
    errors = err.strip().splitlines()
    assert len(errors) == 2
    assert any(re.fullmatch(r"binbot deploy: error: down: ssh: connect to host 127\.0\.0\.1 port \d+: Connection refused", e)
               for e in errors), errors
    assert "binbot deploy: error: nosuchuser@pi1: ssh: permission denied for nosuchuser; install your public key" \
        in err, err


def test_sudo_always_on_a_host_without_sudo_says_so(make_pi, deploy):
    if shutil.which("sudo"):
        pytest.skip("sudo is installed here")
    pi = make_pi()
    code, _, err = deploy("--status", "pi1", "--sudo", "always", *pi.service_options())
    assert code == 1
    assert err == "binbot deploy: error: pi1: sudo is not installed (with --sudo never, root changes the files itself)\n"


def test_rollback_without_a_previous_bundle_is_refused(make_pi, deploy, small_cnn_bundles):
    pi = make_pi()
    code, _, err = deploy("--rollback", "pi1", *pi.service_options())
    assert code == 1
    assert err == ("binbot deploy: error: pi1: no previous bundle to roll back to "
                   "(nothing was deployed before the current one)\n")
    assert pi.link("current") == bundle_id(small_cnn_bundles["int8"])


def test_a_bad_bundle_is_refused_before_any_connection(deploy, small_cnn_bundles, tmp_path, sshd):
    broken = shutil.copytree(small_cnn_bundles["int8"], tmp_path / "broken")
    with open(broken / "model.tflite", "r+b") as model:
        model.seek(100)
        model.write(b"\x00\x01\x02")
    log_before = (sshd["folder"] / "sshd.log").read_text().count("Accepted publickey")

    code, out, err = deploy(str(broken), "pi1", "--remote-dir", str(tmp_path / "pi"))

    assert code == 1
    assert err.strip() == (f"binbot deploy: error: {broken / 'model.tflite'}: corrupt or changed since conversion "
                           "(sha256 does not match bundle.json); copy the bundle again")
    assert not (tmp_path / "pi").exists()
    assert (sshd["folder"] / "sshd.log").read_text().count("Accepted publickey") == log_before


@pytest.mark.parametrize("spec, expected", [
    ("pi", HostSpec("pi", "pi")),
    ("pi@binbot.local", HostSpec("pi@binbot.local", "binbot.local", user="pi")),
    ("pi@10.0.0.7:2222", HostSpec("pi@10.0.0.7:2222", "10.0.0.7", user="pi", port=2222)),
    ("root@[::1]:22", HostSpec("root@[::1]:22", "::1", user="root", port=22)),
])
def test_host_specs(spec, expected):
    assert parse_host(spec) == expected


@pytest.mark.parametrize("spec", ["pi:ssh", "pi:70000", "@pi", "-oProxyCommand=x", "", "[::1", "pi/var/lib"])
def test_bad_host_specs_are_refused(spec):
    with pytest.raises(BinbotError, match=re.escape(f"host {spec!r}")):
        parse_host(spec)


def test_a_hosts_file_overrides_settings_per_host_and_refuses_unknown_keys(tmp_path):
    hosts = tmp_path / "pis.toml"
    hosts.write_text('[kitchen]\nhost = "pi@kitchen.local"\n\n[garage]\nhost = "pi@10.0.0.9:2222"\nremote_dir = "/srv/binbot"\n')
    defaults = Settings(health_url="http://127.0.0.1:9000/healthz")

    (kitchen, kitchen_settings), (garage, garage_settings) = read_hosts_file(hosts, defaults)

    assert kitchen == HostSpec("kitchen", "kitchen.local", user="pi") and kitchen_settings == defaults
    assert garage == HostSpec("garage", "10.0.0.9", user="pi", port=2222)
    assert garage_settings.remote_dir == "/srv/binbot" and garage_settings.health_url == defaults.health_url
    hosts.write_text('[kitchen]\nhost = "pi@kitchen.local"\nremotedir = "/srv"\n')
    with pytest.raises(BinbotError, match=re.escape(f"{hosts}: [kitchen] unknown key 'remotedir' (known: host, ")):
        read_hosts_file(hosts, defaults)
    for table, problem in (('remote_dir = "/srv"', "[kitchen] needs host"), ('host = ""', "host = '': should be a "
                           "non-empty string"), ('host = "pi"\nhealth_url = 8080', "health_url should be a string")):
        hosts.write_text(f"[kitchen]\n{table}\n")
        with pytest.raises(BinbotError, match=re.escape(problem)):
            read_hosts_file(hosts, defaults)


def test_a_bundle_with_a_forged_id_is_refused_before_any_connection(deploy, small_cnn_bundles, tmp_path, sshd):
    """bundle.json re-checksummed with an id that would be a path outside the bundles folder on the Pi."""
    forged = shutil.copytree(small_cnn_bundles["int8"], tmp_path / "forged")
    manifest = json.loads((forged / MANIFEST).read_text())
    manifest["id"] = "/../../../victim"
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (forged / MANIFEST).write_text(json.dumps(manifest))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("still here")
    log_before = (sshd["folder"] / "sshd.log").read_text().count("Accepted publickey")

    code, out, err = deploy(str(forged), "pi1", "--remote-dir", str(tmp_path / "pi"))

    assert code == 1
    assert err.strip() == (f"binbot deploy: error: {forged / MANIFEST}: id '/../../../victim' is not a bundle id "
                           "(12 hex digits); this bundle was not made by binbot convert")
    assert (victim / "keep.txt").read_text() == "still here" and not (tmp_path / "pi").exists()
    assert (sshd["folder"] / "sshd.log").read_text().count("Accepted publickey") == log_before


@pytest.mark.parametrize("script, args", [
    (deploy_steps.UPLOAD_SCRIPT, ["../victim", ""]),
    (deploy_steps.VERIFY_SCRIPT, ["../victim", ""]),
    (deploy_steps.SWITCH_SCRIPT, ["../victim", ""]),
    (deploy_steps.SWITCH_SCRIPT, ["0123456789ab", "/tmp"]),
    (deploy_steps.PRUNE_SCRIPT, ["0123456789ab", "../victim"]),
    (deploy_steps.PRUNE_SCRIPT, ["."]),
])
def test_the_scripts_on_the_pi_refuse_anything_but_a_bundle_id(sshd, tmp_path, script, args):
    """Called directly, as a tampered or buggy workstation might: nothing outside the bundles folder is touched."""
    bundles = tmp_path / "pi" / "bundles"
    (bundles / "0123456789ab").mkdir(parents=True)
    victim = tmp_path / "pi" / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("still here")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    with Remote(HostSpec("pi1", "pi1"), SshSettings(config=sshd["config"])) as remote:
        with pytest.raises(RemoteError, match=r"pi1: refusing '[^']*': not a bundle id \(12 hex digits\)"):
            remote.run(script, str(bundles), *args, privileged=True)

    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert (victim / "keep.txt").read_text() == "still here"


@pytest.mark.parametrize("links", ["absolute", "relative"])
def test_a_bundle_made_of_symlinks_is_deployed_as_the_files_they_point_to(make_pi, deploy, small_cnn_bundles,
                                                                          tmp_path, links):
    pi = make_pi()
    real = small_cnn_bundles["float16"]
    linked = tmp_path / "linked"
    linked.mkdir()
    for name in [*FILES, MANIFEST]:
        target = real / name if links == "absolute" else Path(os.path.relpath(real / name, linked))
        (linked / name).symlink_to(target)
    new = bundle_id(real)

    code, out, err = deploy(str(linked), "pi1", *pi.service_options())

    assert code == 0, err
    for name in [*FILES, MANIFEST]:
        installed = pi.bundles / new / name
        assert not installed.is_symlink() and installed.read_bytes() == (real / name).read_bytes()
    assert pi.health()["model"] == new


def test_an_upload_holding_a_link_is_refused_on_the_pi_and_nothing_is_installed(sshd, small_cnn_bundles, tmp_path):
    bundle = small_cnn_bundles["int8"]
    bundles = tmp_path / "pi" / "bundles"
    checksums = deploy_steps.check_local(bundle, 1, lambda line: None)

    def tar_with_a_link(stream):
        with tarfile.open(fileobj=stream, mode="w|") as tar:
            for name in checksums.sha256:
                if name == "labels.txt":
                    info = tarfile.TarInfo(name)
                    info.type, info.linkname = tarfile.SYMTYPE, str(bundle / name)
                    tar.addfile(info)
                else:
                    tar.add(bundle / name, arcname=name)

    with Remote(HostSpec("pi1", "pi1"), SshSettings(config=sshd["config"])) as remote:
        with pytest.raises(RemoteError, match="the upload's labels.txt is not a regular file"):
            remote.run(deploy_steps.UPLOAD_SCRIPT, str(bundles), checksums.id, checksums.checksum_lines(),
                       send=tar_with_a_link)

    assert list(bundles.iterdir()) == []


def test_the_upload_extracts_only_the_bundles_files():
    tar_line = next(line for line in remote_script("upload.sh").splitlines() if line.startswith("tar -x"))
    assert tar_line.split(" -- ")[1].split() == sorted({*FILES, MANIFEST})


@pytest.mark.parametrize("name", sorted(path.name for path in SCRIPTS.iterdir() if path.name.endswith(".sh")))
def test_every_shell_script_for_the_pi_passes_shellcheck_alone_and_as_sent(name, tmp_path):
    """POSIX sh, since the Pi user's login shell runs them with `sh -c`; as sent, lib.sh's functions come first."""
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed")
    checked = [SCRIPTS / name]
    if name not in ("lib.sh", "privileges.sh"):  # the one goes in front of the others, the other is sent as it is
        checked.append(tmp_path / name)
        checked[-1].write_text(remote_script(name))

    result = subprocess.run(["shellcheck", "-s", "sh", *map(str, checked)], capture_output=True, text=True)

    assert result.returncode == 0, result.stdout


def test_a_current_link_to_something_other_than_a_bundle_is_replaced_by_one_to_an_id(make_pi, deploy, small_cnn_bundles):
    pi = make_pi()
    new = bundle_id(small_cnn_bundles["float16"])
    old = pi.link("current")
    (pi.bundles / "current").unlink()
    (pi.bundles / "current").symlink_to(pi.bundles / old / ".." / old)  # absolute, with a detour: still names old
    (pi.bundles / "previous").symlink_to("../..")

    code, out, err = deploy(str(small_cnn_bundles["float16"]), "pi1", *pi.service_options())

    assert code == 0, err
    assert "pi1: `previous` points at '../..', not at a bundle; it will be replaced" in out
    assert pi.link("current") == new and pi.link("previous") == old
