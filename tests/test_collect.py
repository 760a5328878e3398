"""`binbot collect` against a real OpenSSH server on 127.0.0.1 (tests/sshd.py).

Each "Pi" is a folder on this machine (its --remote-dir) whose kept/ is filled here the way the
service fills it: a JPEG, then its sidecar (device/kept.py). The field folder is another folder.
"""

import hashlib
import io
import json
import re
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from binbot.cli import main
from binbot.deploy import collect as collect_steps
from binbot.deploy.remote import HostSpec, Remote, RemoteError, SshSettings
from binbot.device.kept import KeptFrame, new_id, sidecar
from helpers import names

START = datetime(2026, 11, 30, 14, 42, tzinfo=timezone.utc)


def keep_frame(kept: Path, n: int) -> str:
    """Keep a frame in kept as the service does (a random JPEG, then its sidecar); returns its id."""
    pixels = np.random.default_rng(n).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels)
    assert ok
    data = encoded.tobytes()
    frame_id = new_id(START + timedelta(seconds=n))
    (kept / f"{frame_id}.jpg").write_bytes(data)
    frame = KeptFrame(id=frame_id, time=(START + timedelta(seconds=n)).isoformat(), model="0123456789ab",
                      label="can", confidence=0.41, scores={"bottle": 0.3, "can": 0.41, "paper": 0.29}, item=None,
                      reasons=["low-confidence"], width=32, height=24,
                      jpeg_sha256=hashlib.sha256(data).hexdigest(), jpeg_size=len(data))
    (kept / f"{frame_id}.json").write_text(json.dumps(sidecar(frame)))
    return frame_id


def pair(frame_id: str) -> list[str]:
    return [f"{frame_id}.jpg", f"{frame_id}.json"]


def everything(folder: Path) -> list[str]:
    """Every path under folder, relative to it, links not followed."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.fixture
def pi(tmp_path) -> Path:
    """A Pi's state folder with an empty kept/, private to the service as the installer makes it."""
    (tmp_path / "pi" / "kept").mkdir(parents=True, mode=0o750)
    return tmp_path / "pi"


@pytest.fixture
def field(tmp_path) -> Path:
    return tmp_path / "field"


@pytest.fixture
def collect(sshd, capsys, pi, field):
    """Runs `binbot collect pi1 --out FIELD --remote-dir PI ARGS -F <the test ssh config>`: (exit status, stdout, stderr)."""

    def run(*args: str, hosts: tuple[str, ...] = ("pi1", "--remote-dir", str(pi))) -> tuple[int, str, str]:
        code = main(["collect", *hosts, "--out", str(field), *args, "-F", str(sshd["config"])])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def summary(out: str, host: str = "pi1") -> list[str]:
    """The host's row of the summary table: result, new, already here, failed, deleted."""
    row = re.search(rf"^{host}  +(ok|FAILED|BAD FRAMES) +(\S+) +(\S+) +(\S+) +(\S+)$", out, re.M)
    assert row, out
    return list(row.groups())


def test_the_first_collect_copies_every_complete_frame_and_the_second_copies_nothing(pi, field, collect):
    kept = pi / "kept"
    complete = [keep_frame(kept, n) for n in range(3)]
    no_sidecar = keep_frame(kept, 3)
    (kept / f"{no_sidecar}.json").unlink()
    half_written = keep_frame(kept, 4)  # its sidecar still has the temporary name it is written under
    (kept / f"{half_written}.json").rename(kept / f".{half_written}.json.k3j2x9.partial")
    (kept / "notes.txt").write_text("not a frame")
    on_the_pi = everything(pi)

    code, out, err = collect()

    assert code == 0, err
    assert names(field) == ["unlabelled"]  # no copy under way left behind
    assert names(field / "unlabelled") == sorted(name for frame_id in complete for name in pair(frame_id))
    for name in names(field / "unlabelled"):
        assert (field / "unlabelled" / name).read_bytes() == (kept / name).read_bytes()
    assert everything(pi) == on_the_pi
    assert "pi1: 3 kept frame(s) in" in out and ": 3 new, 0 here already" in out
    assert summary(out) == ["ok", "3", "0", "0", "0"]
    assert f"3 new frame(s) in {field / 'unlabelled'}; next, label them: binbot label {field}" in out
    files = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in (field / "unlabelled").iterdir()}

    code, out, err = collect()

    assert code == 0, err
    assert "pi1: nothing new to copy" in out and out.rstrip().endswith("no new frames")
    assert summary(out) == ["ok", "0", "3", "0", "0"]
    assert {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in (field / "unlabelled").iterdir()} == files
    assert names(field) == ["unlabelled"]


def test_a_frame_labelled_or_discarded_is_not_copied_again(pi, field, collect):
    kept = pi / "kept"
    first, second, third = (keep_frame(kept, n) for n in range(3))
    assert collect()[0] == 0
    for frame_id, folder in ((first, "glass"), (second, "discarded")):  # as binbot label files them
        (field / folder).mkdir()
        for name in pair(frame_id):
            (field / "unlabelled" / name).rename(field / folder / name)
    fourth = keep_frame(kept, 3)

    code, out, err = collect()

    assert code == 0, err
    assert names(field / "unlabelled") == sorted(pair(third) + pair(fourth))
    assert names(field / "glass") == sorted(pair(first)) and names(field / "discarded") == sorted(pair(second))
    assert summary(out) == ["ok", "1", "3", "0", "0"]


def test_a_stray_file_of_a_frames_name_in_unlabelled_is_not_overwritten_and_the_frame_stays_on_the_pi(pi, field,
                                                                                                     collect):
    """A JPEG left without its sidecar (a move by hand cut short) is not a frame here, so the frame is copied;
    filing it would replace that file, so it is refused instead, reported, and not deleted on the Pi."""
    kept = pi / "kept"
    frame, other = keep_frame(kept, 0), keep_frame(kept, 1)
    (field / "unlabelled").mkdir(parents=True)
    (field / "unlabelled" / f"{frame}.jpg").write_bytes(b"a picture by hand")

    code, out, err = collect("--delete")

    assert code == 1
    assert err == (f"binbot collect: error: pi1: 1 frame(s) failed their check here, so they were not kept and stay "
                   f"on the Pi ({frame}: unlabelled/{frame}.jpg exists already; nothing moved (compare the two and "
                   "remove one by hand))\n")
    assert (field / "unlabelled" / f"{frame}.jpg").read_bytes() == b"a picture by hand"
    assert names(field / "unlabelled") == sorted([f"{frame}.jpg", *pair(other)])
    assert names(kept) == sorted(pair(frame))
    assert summary(out) == ["BAD FRAMES", "1", "0", "1", "1"]
    assert names(field) == ["unlabelled"]  # no copy under way left behind


def test_delete_removes_on_the_pi_exactly_the_frames_here_and_checked(pi, field, collect):
    """Frames copied now and frames copied by an earlier run go; a frame still incomplete stays."""
    kept = pi / "kept"
    earlier = [keep_frame(kept, n) for n in range(2)]
    assert collect()[0] == 0
    (field / "glass").mkdir()
    for name in pair(earlier[0]):
        (field / "unlabelled" / name).rename(field / "glass" / name)
    new = [keep_frame(kept, n) for n in range(2, 5)]
    incomplete = keep_frame(kept, 5)
    (kept / f"{incomplete}.json").unlink()

    code, out, err = collect("--delete")

    assert code == 0, err
    assert names(kept) == [f"{incomplete}.jpg"]
    assert names(field / "unlabelled") == sorted(name for frame_id in [earlier[1], *new] for name in pair(frame_id))
    assert summary(out) == ["ok", "3", "2", "0", "5"]
    assert "pi1: deleted 5 frame(s) on the Pi, each one here and checked" in out


def test_a_corrupted_jpeg_on_the_pi_is_reported_not_kept_and_not_deleted(pi, field, collect):
    kept = pi / "kept"
    good = [keep_frame(kept, n) for n in range(3)]
    damaged = keep_frame(kept, 3)
    jpeg = bytearray((kept / f"{damaged}.jpg").read_bytes())
    jpeg[len(jpeg) // 2] ^= 0xFF  # one byte flipped by a failing SD card: same size, another sha256
    (kept / f"{damaged}.jpg").write_bytes(jpeg)

    code, out, err = collect("--delete")

    assert code == 1
    assert err == (f"binbot collect: error: pi1: 1 frame(s) failed their check here, so they were not kept and stay "
                   f"on the Pi ({damaged}: its JPEG on the Pi does not match the size and sha256 in its sidecar: it was "
                   "damaged there (look at it, and delete it there if it is beyond use))\n")
    assert f"pi1: {damaged}: its JPEG on the Pi does not match" in out
    assert names(field / "unlabelled") == sorted(name for frame_id in good for name in pair(frame_id))
    assert names(field) == ["unlabelled"]
    assert names(kept) == sorted(pair(damaged)) and (kept / f"{damaged}.jpg").read_bytes() == jpeg
    assert summary(out) == ["BAD FRAMES", "3", "0", "1", "3"]


def test_links_and_odd_names_on_the_pi_are_neither_followed_nor_copied(pi, field, collect, tmp_path):
    kept = pi / "kept"
    outside = tmp_path / "outside"
    outside.mkdir()
    elsewhere = keep_frame(outside, 0)  # a complete frame outside kept/, which links point at
    linked = new_id(START)
    for name, target in zip(pair(linked), pair(elsewhere)):
        (kept / name).symlink_to(outside / target)
    jpeg_linked = keep_frame(kept, 1)  # a real sidecar, its JPEG a link to an identical file outside
    (kept / f"{jpeg_linked}.jpg").rename(outside / "moved.jpg")
    (kept / f"{jpeg_linked}.jpg").symlink_to(outside / "moved.jpg")
    folder_jpeg = keep_frame(kept, 2)  # a folder where the JPEG should be
    (kept / f"{folder_jpeg}.jpg").unlink()
    (kept / f"{folder_jpeg}.jpg").mkdir()
    odd = keep_frame(kept, 3)
    for name in ("..json", ".json", f"{odd}\n.json", f"{odd}.JSON", f"x{odd}.json"):
        (kept / name).write_text((kept / f"{odd}.json").read_text())
    (kept / f"{odd}.json").unlink()
    good = keep_frame(kept, 4)
    outside_before = {path.name: path.read_bytes() for path in outside.iterdir()}

    code, out, err = collect("--delete")

    assert code == 0, err
    assert everything(field) == ["unlabelled", *(f"unlabelled/{name}" for name in sorted(pair(good)))]
    assert summary(out) == ["ok", "1", "0", "0", "1"]
    assert {path.name: path.read_bytes() for path in outside.iterdir()} == outside_before
    assert (kept / f"{jpeg_linked}.jpg").is_symlink() and (kept / f"{linked}.json").is_symlink()


@pytest.fixture
def hostile_pi(pi, monkeypatch, tmp_path):
    """A Pi whose send script is replaced by one that writes the tar given (a tampered or broken Pi)."""

    def answer_with(archive: bytes) -> None:
        (tmp_path / "answer.tar").write_bytes(archive)
        monkeypatch.setattr(collect_steps, "SEND_SCRIPT", f"cat {tmp_path / 'answer.tar'}")

    return answer_with


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_a_tar_from_the_pi_with_anything_but_the_frames_asked_for_is_refused(pi, field, collect, hostile_pi, tmp_path):
    kept = pi / "kept"
    asked = [keep_frame(kept, n) for n in range(3)]
    unasked = new_id(START)
    files = {name: (kept / name).read_bytes() for frame_id in asked for name in pair(frame_id)}
    jpeg, side = pair(asked[0])
    hostile_pi(tar_of(
        (entry(f"../{jpeg}"), b"escape"), (entry(f"/tmp/{side}"), b"absolute"),
        (entry(jpeg), files[jpeg]), (entry(side), files[side]),
        (entry(jpeg), b"a second copy"),
        (entry(f"{unasked}.jpg"), b"not asked for"),
        (entry(pair(asked[1])[0], tarfile.SYMTYPE, "/etc/passwd"), b""),
        (entry(pair(asked[1])[1], tarfile.LNKTYPE, "/etc/passwd"), b""),
        (entry(pair(asked[2])[0]), files[pair(asked[2])[0]] + b"longer than the Pi listed it"),
        (entry(pair(asked[2])[1]), files[pair(asked[2])[1]]),
    ))
    around = [path for path in everything(tmp_path) if not path.startswith("field")]

    code, out, err = collect()

    assert code == 1
    assert names(field / "unlabelled") == sorted(pair(asked[0]))
    assert (field / "unlabelled" / jpeg).read_bytes() == files[jpeg]
    assert names(field) == ["unlabelled"]
    assert [path for path in everything(tmp_path) if not path.startswith("field")] == around
    assert not Path(f"/tmp/{side}").exists()
    refused = [f"../{jpeg}", f"/tmp/{side}", jpeg, f"{unasked}.jpg", pair(asked[1])[0]]
    assert f"pi1: refused 7 file(s) the Pi was not asked for: {', '.join(map(repr, refused))}" in out
    assert f"pi1: {asked[1]}: only its JPEG came from the Pi" not in out  # a link is not a JPEG
    assert f"pi1: {asked[1]}: not in what the Pi sent (deleted there since it was listed?); skipped" in out
    assert f"pi1: {asked[2]}: only its sidecar came from the Pi; not kept" in out
    assert err.startswith(f"binbot collect: error: pi1: 1 frame(s) failed their check here, so they were not kept "
                          f"and stay on the Pi ({asked[2]}: only its sidecar came from the Pi); the Pi sent 7 file(s) "
                          "it was not asked for, refused (")
    assert err.endswith(", ...); has someone tampered with it?\n")
    assert summary(out) == ["BAD FRAMES", "1", "0", "1", "0"]


def test_a_transfer_cut_off_leaves_nothing_behind(pi, field, collect, hostile_pi):
    kept = pi / "kept"
    asked = [keep_frame(kept, n) for n in range(3)]
    whole = tar_of(*((entry(name), (kept / name).read_bytes()) for frame_id in asked for name in pair(frame_id)))
    hostile_pi(whole[:tarfile.BLOCKSIZE + 100])  # the first JPEG's header, and the start of its bytes

    code, out, err = collect("--delete")

    assert code == 1
    assert re.fullmatch(r"binbot collect: error: pi1: the frames came back as a damaged tar \(.+\); collect again\n", err)
    assert everything(field) == ["unlabelled"]
    assert names(kept) == sorted(name for frame_id in asked for name in pair(frame_id))
    assert summary(out) == ["FAILED", "0", "0", "0", "0"]


def test_a_pi_that_sends_more_than_it_listed_is_cut_off_and_nothing_is_kept_or_deleted(pi, field, collect,
                                                                                     monkeypatch, tmp_path):
    kept = pi / "kept"
    asked = [keep_frame(kept, n) for n in range(2)]
    whole = tar_of(*((entry(name), (kept / name).read_bytes()) for frame_id in asked for name in pair(frame_id)))
    (tmp_path / "answer.tar").write_bytes(whole)
    # The frames asked for, whole, and then 300 MB more than the listing announced.
    monkeypatch.setattr(collect_steps, "SEND_SCRIPT", f"cat {tmp_path / 'answer.tar'}; head -c 300000000 /dev/zero")
    listed = collect_steps.tar_size([collect_steps.Listed(i, (kept / f"{i}.jpg").stat().st_size, None,
                                                          (kept / f"{i}.json").stat().st_size) for i in asked])

    code, out, err = collect("--delete")

    assert code == 1
    assert err == (f"binbot collect: error: pi1: sent more than the {listed:,} bytes expected of it; cut off and "
                   "refused (has someone tampered with it?)\n")
    assert everything(field) == ["unlabelled"]
    assert names(kept) == sorted(name for frame_id in asked for name in pair(frame_id))
    assert summary(out) == ["FAILED", "0", "0", "0", "0"]


def test_a_remote_answer_is_read_no_further_than_its_limit(sshd, tmp_path):
    with Remote(HostSpec("pi1", "pi1"), SshSettings(config=sshd["config"])) as remote:
        with open(tmp_path / "answer", "wb") as into, pytest.raises(RemoteError, match="more than the 1,000,000 bytes"):
            remote.run("head -c 300000000 /dev/zero", into=into, limit=1_000_000)
        with pytest.raises(RemoteError, match="more than the 16,777,216 bytes"):
            remote.run("yes")  # a text answer without end
        assert remote.run("echo still here") == "still here\n"  # the shared connection survives the cut

    assert (tmp_path / "answer").stat().st_size <= 1_000_000


@pytest.mark.parametrize("hostile", [b"[" * 400_000, b'{"format": ' + b"9" * 5000 + b"}"])
def test_a_hostile_sidecar_on_one_pi_fails_that_frame_and_the_other_pis_are_collected(field, collect, tmp_path,
                                                                                      hostile):
    kitchen, garage = tmp_path / "kitchen", tmp_path / "garage"
    for folder in (kitchen, garage):
        (folder / "kept").mkdir(parents=True)
    good = keep_frame(kitchen / "kept", 0)
    bad = keep_frame(kitchen / "kept", 1)
    (kitchen / "kept" / f"{bad}.json").write_bytes(hostile)
    others = [keep_frame(garage / "kept", n) for n in range(2, 4)]
    hosts = tmp_path / "pis.toml"
    hosts.write_text(f'[kitchen]\nhost = "pi1"\nremote_dir = "{kitchen}"\n\n[garage]\nhost = "pi2"\nremote_dir = "{garage}"\n')

    code, out, err = collect(hosts=("--hosts", str(hosts)))

    assert code == 1 and "Traceback" not in err
    assert err.startswith(f"binbot collect: error: kitchen: 1 frame(s) failed their check here, so they were not kept "
                          f"and stay on the Pi ({bad}: its sidecar is not one binbot reads (")
    assert names(field / "unlabelled") == sorted(name for frame_id in [good, *others] for name in pair(frame_id))
    assert summary(out, "kitchen") == ["BAD FRAMES", "1", "0", "1", "0"]
    assert summary(out, "garage") == ["ok", "2", "0", "0", "0"]


@pytest.mark.parametrize("script", ["SEND_SCRIPT", "DELETE_SCRIPT"])
@pytest.mark.parametrize("bad", ["../victim", "20261130T144223123Z-3fa2b1c9/../../victim", "*", "", "-rf",
                                 "20261130T144223123Z-3FA2B1C9", "20261130T144223123Z-3fa2b1c9\n",
                                 "٢٠٢٦١١٣٠T144223123Z-3fa2b1c9"])
def test_the_scripts_on_the_pi_refuse_anything_but_a_kept_frame_id(sshd, pi, tmp_path, script, bad):
    """Called directly, as a tampered or buggy workstation might: nothing is sent, nothing is deleted."""
    kept = pi / "kept"
    good = keep_frame(kept, 0)
    (pi / "victim.jpg").write_text("still here")
    (pi / "victim.json").write_text("still here")
    before = everything(pi)

    with Remote(HostSpec("pi1", "pi1"), SshSettings(config=sshd["config"])) as remote, \
            open(tmp_path / "sent", "w+b") as sent:
        with pytest.raises(RemoteError, match=r"^pi1: refusing '") as refusal:
            remote.run(getattr(collect_steps, script), str(kept), good, bad, privileged=True, into=sent)
        assert sent.tell() == 0

    # The Pi's one-line message, up to the first line break: a newline in the id ends it there.
    refused = f"pi1: refusing '{bad}': not a kept-frame id (like 20261130T144223123Z-3fa2b1c9)"
    assert str(refusal.value) == refused.split("\n")[0]

    assert everything(pi) == before and (pi / "victim.jpg").read_text() == "still here"


def test_an_unreachable_host_fails_alone_and_the_others_are_collected(field, collect, tmp_path):
    kitchen, garage = tmp_path / "kitchen", tmp_path / "garage"
    frames = {}
    for n, folder in enumerate((kitchen, garage)):
        (folder / "kept").mkdir(parents=True)
        frames[folder.name] = [keep_frame(folder / "kept", 10 * n + k) for k in range(2)]
    hosts = tmp_path / "pis.toml"
    hosts.write_text(f'[kitchen]\nhost = "pi1"\nremote_dir = "{kitchen}"\n\n'
                     f'[garage]\nhost = "pi2"\nremote_dir = "{garage}"\n\n[shed]\nhost = "down"\n')

    code, out, err = collect(hosts=("--hosts", str(hosts)))

    assert code == 1
    assert re.fullmatch(r"binbot collect: error: shed: ssh: connect to host 127\.0\.0\.1 port \d+: Connection refused\n", err)
    assert names(field / "unlabelled") == sorted(name for ids in frames.values() for frame_id in ids for name in pair(frame_id))
    assert summary(out, "kitchen") == summary(out, "garage") == ["ok", "2", "0", "0", "0"]
    assert summary(out, "shed") == ["FAILED", "-", "-", "-", "-"]
    assert "4 new frame(s) in" in out


def test_many_frames_go_in_batches(pi, field, collect, monkeypatch):
    monkeypatch.setattr(collect_steps, "BATCH", 4)
    kept = pi / "kept"
    ids = [keep_frame(kept, n) for n in range(10)]

    code, out, err = collect("--delete")

    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("pi1: copied")] == [
        f"pi1: copied {n} of 10: {n - previous} checked and put in {field / 'unlabelled'}"
        for previous, n in ((0, 4), (4, 8), (8, 10))]
    assert names(field / "unlabelled") == sorted(name for frame_id in ids for name in pair(frame_id))
    assert names(kept) == []
    assert summary(out) == ["ok", "10", "0", "0", "10"]


def test_a_field_folder_that_fills_up_keeps_only_whole_checked_frames(pi, small_disk, sshd, capsys, monkeypatch):
    """The field folder on a 64 KiB tmpfs, and more frames on the Pi than fit: those that fit are whole, the rest stay."""
    monkeypatch.setattr(collect_steps, "BATCH", 4)
    kept = pi / "kept"
    ids = [keep_frame(kept, n) for n in range(40)]
    originals = {path.name: path.read_bytes() for path in kept.iterdir()}

    code = main(["collect", "pi1", "--out", str(small_disk), "--remote-dir", str(pi), "--delete", "-F", str(sshd["config"])])
    out, err = capsys.readouterr()

    assert code == 1
    assert re.fullmatch(rf"binbot collect: error: pi1: {small_disk}(/\S+)?: No space left on device; "
                        r"no frame was left half-written; collect again once that is put right\n", err), err
    assert names(small_disk) == ["unlabelled"]
    filed = [name[:-5] for name in names(small_disk / "unlabelled") if name.endswith(".json")]
    assert 0 < len(filed) < len(ids)
    assert names(small_disk / "unlabelled") == sorted(name for frame_id in filed for name in pair(frame_id))
    assert all(originals[path.name] == path.read_bytes() for path in (small_disk / "unlabelled").iterdir())
    assert names(kept) == sorted(name for frame_id in ids if frame_id not in filed for name in pair(frame_id))
    assert summary(out) == ["FAILED", str(len(filed)), "0", "0", str(len(filed))]


def test_a_pi_that_has_kept_nothing_yet_says_so(tmp_path, field, collect):
    code, out, err = collect(hosts=("pi1", "--remote-dir", str(tmp_path / "fresh")))

    assert code == 0, err
    assert f"pi1: {tmp_path / 'fresh'}/kept is not there: the service has kept no frames" in out
    assert summary(out) == ["ok", "0", "0", "0", "0"]


def test_sudo_always_on_a_host_without_sudo_says_so(pi, collect):
    import shutil

    if shutil.which("sudo"):
        pytest.skip("sudo is installed here")
    code, _, err = collect("--sudo", "always")
    assert code == 1
    assert err.startswith("binbot collect: error: pi1: sudo is not installed")


def test_a_field_folder_that_is_a_file_is_refused_before_any_connection(field, collect, sshd):
    field.write_text("not a folder")
    log_before = (sshd["folder"] / "sshd.log").read_text().count("Accepted publickey")

    code, _, err = collect()

    assert code == 1
    assert err == (f"binbot collect: error: {field}: exists and is not a folder (give --out the field folder "
                   "frames are collected into)\n")
    assert (sshd["folder"] / "sshd.log").read_text().count("Accepted publickey") == log_before


def test_help_explains_the_field_folder_and_what_comes_next(capsys):
    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    text = capsys.readouterr().out
    for line in ("FIELD/unlabelled/", "FIELD/<class>/", "FIELD/discarded/", "`binbot label FIELD`", "--delete"):
        assert line in text
