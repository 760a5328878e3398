"""Collecting one Pi's kept frames into a field folder: list them, copy the new ones, check, file, delete.

On the Pi, <remote-dir>/kept/ holds the frames the service kept, each a pair <id>.jpg + <id>.json
(binbot.device.kept); the sidecar is written last, so only a frame that has one is taken. Here, the
field folder (binbot.device.fieldfolder) holds them in unlabelled/, <class>/ or discarded/, and a
copy under way in .collect-*/, removed when it ends.

A frame whose id is anywhere in the field folder is not copied again. The Pi is not trusted: it lists
its frames with each JPEG's size and sha256, sends those asked for as a tar, and only regular files
named exactly <id>.jpg and <id>.json for those ids, no bigger than listed, are taken from it; a tar
longer than the listed sizes allow is cut off and refused, so a Pi cannot fill this machine's disk.
Each copy is checked against its sidecar and against the Pi's checksum, then filed into unlabelled/
as the field folder moves a pair (the sidecar last, so a frame there with a sidecar is whole; never
over a frame already there). Only a frame that is here and checked is ever deleted on the Pi.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from binbot.deploy.remote import Remote, RemoteError, remote_script
from binbot.deploy.settings import Settings
from binbot.device.fieldfolder import UNLABELLED, FrameTaken, frames_here, move_pair
from binbot.device.kept import KEPT_ID, MAX_JPEG, MAX_SIDECAR, file_digest, is_id, read_sidecar
from binbot.errors import BinbotError

Say = Callable[[str], None]

BATCH = 200  # frames per transfer: the ids go on the Pi's command line, and each tar stays a few MB
LISTED = re.compile(r"frame (\S+) ([0-9]{1,12}) ([0-9a-f]{64}|-) ([0-9]{1,12})", re.ASCII)
# What a tar adds to its files: a 512-byte header and up to 511 bytes of padding each, then two zero
# blocks, the whole padded to GNU tar's 10240-byte record.
TAR_PER_FILE = 1024
TAR_END = 2 * 10240

LIST_PROGRAM = remote_script("collect_list.py")
LIST_SCRIPT = remote_script("collect_list.sh")
SEND_SCRIPT = remote_script("collect_send.sh")
DELETE_SCRIPT = remote_script("collect_delete.sh")


@dataclass(frozen=True)
class Listed:
    """A complete frame on the Pi, as its listing gave it."""

    id: str
    size: int  # the JPEG's, in bytes
    sha256: str | None  # the JPEG's, computed on the Pi; None where it was not asked for
    sidecar_size: int = 0  # the sidecar's, in bytes


@dataclass
class Collected:
    """What happened on one host, for the summary table."""

    host: str
    reached: bool = False  # whether the Pi's frames were listed
    new: int = 0  # frames copied, checked and filed in unlabelled/
    here: int = 0  # frames on the Pi that were here already
    deleted: int = 0  # frames deleted on the Pi
    problems: list[tuple[str, str]] = field(default_factory=list)  # (id, what is wrong) of frames not kept
    refused: list[str] = field(default_factory=list)  # names in the Pi's tar that were not asked for
    error: str = ""  # why the host could not be collected in full

    @property
    def ok(self) -> bool:
        return not (self.error or self.problems or self.refused)

    @property
    def detail(self) -> str:
        """Why the host is not ok, in one line."""
        parts = [self.error] if self.error else []
        if self.problems:
            shown = "; ".join(f"{frame_id}: {problem}" for frame_id, problem in self.problems[:3])
            more = f"; and {len(self.problems) - 3} more" if len(self.problems) > 3 else ""
            parts.append(f"{len(self.problems)} frame(s) failed their check here, so they were not kept and stay "
                         f"on the Pi ({shown}{more})")
        if self.refused:
            parts.append(f"the Pi sent {len(self.refused)} file(s) it was not asked for, refused "
                         f"({', '.join(map(repr, self.refused[:5]))}{', ...' if len(self.refused) > 5 else ''}); "
                         "has someone tampered with it?")
        return "; ".join(parts)


def oversized(listed: Listed) -> str:
    """Why the Pi's listing of a frame is bigger than any kept frame can be ("" if it is not)."""
    if listed.size > MAX_JPEG:
        return f"the Pi lists its JPEG as {listed.size:,} bytes, more than a kept frame's {MAX_JPEG:,}"
    if listed.sidecar_size > MAX_SIDECAR:
        return f"the Pi lists its sidecar as {listed.sidecar_size:,} bytes, more than a sidecar's {MAX_SIDECAR:,}"
    return ""


def is_kept_id(text: str) -> bool:
    # ASCII digits only: the Pi's scripts refuse any other, so one named otherwise could never be copied.
    return text.isascii() and is_id(text)


def list_kept(remote: Remote, kept_dir: str, unhashed: set[str]) -> list[Listed] | None:
    """The complete frames on the Pi, oldest first (None if kept_dir is not there); those in unhashed go without sha256."""
    output = remote.run(LIST_SCRIPT, LIST_PROGRAM, kept_dir, KEPT_ID.pattern, privileged=True, timeout=600,
                        send=lambda stream: stream.write("".join(f"{i}\n" for i in sorted(unhashed)).encode()))
    if output.strip() == "missing":
        return None
    frames = {}
    for line in output.splitlines():
        found = LISTED.fullmatch(line)
        if found and is_kept_id(found.group(1)):
            sha256 = None if found.group(3) == "-" else found.group(3)
            frames[found.group(1)] = Listed(found.group(1), int(found.group(2)), sha256, int(found.group(4)))
    return [frames[frame_id] for frame_id in sorted(frames)]


def fetch(remote: Remote, kept_dir: str, batch: list[Listed], into: Path) -> list[str]:
    """Copy batch's frames from the Pi into the folder into; returns the names in the Pi's tar that were refused."""
    size = tar_size(batch)
    with tempfile.TemporaryFile() as archive:  # not in the field folder, whose room goes to the frames
        remote.run(SEND_SCRIPT, kept_dir, *(listed.id for listed in batch), privileged=True,
                   timeout=120 + size / 50_000, into=archive, limit=size)
        if archive.tell() == 0:
            return []  # none of them was there any longer
        archive.seek(0)
        try:
            return unpack(archive, batch, into)
        except (tarfile.TarError, EOFError) as error:
            raise RemoteError(remote.name, f"the frames came back as a damaged tar ({error}); collect again") from None


def tar_size(batch: list[Listed]) -> int:
    """The most bytes a tar of batch's frames can take, as the Pi listed them."""
    return sum(listed.size + listed.sidecar_size + 2 * TAR_PER_FILE for listed in batch) + TAR_END


def unpack(archive: BinaryIO, wanted: list[Listed], into: Path) -> list[str]:
    """Write archive's <id>.jpg and <id>.json for the wanted frames into the folder into; returns the names refused.

    Only regular files named exactly so are written, each once, under a name made here (never the
    archive's path), each no bigger than the Pi listed it.
    """
    limits = {}
    for listed in wanted:
        limits[f"{listed.id}.jpg"] = listed.size
        limits[f"{listed.id}.json"] = listed.sidecar_size
    refused = []
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        for member in tar:
            name = member.name
            if name not in limits or not member.isreg() or member.size > limits[name] or (into / name).exists():
                refused.append(name)
                continue
            source = tar.extractfile(member)
            with source, open(into / name, "xb") as target:
                shutil.copyfileobj(source, target)
    return refused


def check_copy(folder: Path, listed: Listed) -> str:
    """"" if folder holds listed's frame as the Pi has it and its sidecar describes it; else what is wrong."""
    jpeg, sidecar = folder / f"{listed.id}.jpg", folder / f"{listed.id}.json"
    if not (jpeg.is_file() and sidecar.is_file()):
        return f"only its {'JPEG' if jpeg.is_file() else 'sidecar'} came from the Pi"
    try:
        frame = read_sidecar(sidecar)
    except BinbotError as error:
        return f"its sidecar is not one binbot reads ({str(error).removeprefix(f'{sidecar}: ')})"
    digest = file_digest(jpeg)
    if digest == (frame.jpeg_size, frame.jpeg_sha256):
        if (frame.jpeg_size, frame.jpeg_sha256) != (listed.size, listed.sha256):
            return "it changed on the Pi while it was being copied; collect again"
        return ""
    if digest == (listed.size, listed.sha256):
        return ("its JPEG on the Pi does not match the size and sha256 in its sidecar: it was damaged there "
                "(look at it, and delete it there if it is beyond use)")
    return "the copy does not match the checksum the Pi gave: it was damaged on the way; collect again"


def same_jpeg(path: Path, listed: Listed) -> bool:
    """True if path is the JPEG the Pi listed (size and sha256)."""
    return listed.sha256 is not None and file_digest(path) == (listed.size, listed.sha256)


def delete_on_pi(remote: Remote, kept_dir: str, ids: list[str]) -> int:
    for start in range(0, len(ids), BATCH):
        remote.run(DELETE_SCRIPT, kept_dir, *ids[start:start + BATCH], privileged=True)
    return len(ids)


def copy_batch(remote: Remote, kept_dir: str, batch: list[Listed], field_dir: Path, result: Collected,
               say: Say) -> list[str]:
    """Copy, check and file one batch of new frames; returns the ids filed. Problems go in result."""
    with tempfile.TemporaryDirectory(dir=field_dir, prefix=".collect-") as scratch:
        folder = Path(scratch)
        refused = fetch(remote, kept_dir, batch, folder)
        if refused:
            result.refused += refused
            say(f"refused {len(refused)} file(s) the Pi was not asked for: {', '.join(map(repr, refused[:5]))}")
        filed = []
        for listed in batch:
            if not (folder / f"{listed.id}.jpg").exists() and not (folder / f"{listed.id}.json").exists():
                say(f"{listed.id}: not in what the Pi sent (deleted there since it was listed?); skipped")
                continue
            problem = check_copy(folder, listed)
            if problem:
                result.problems.append((listed.id, problem))
                say(f"{listed.id}: {problem}; not kept, and left on the Pi")
                continue
            try:
                move_pair(listed.id, folder, field_dir / UNLABELLED)
            except FrameTaken as taken:  # filed meanwhile, by another collect into the same folder
                result.problems.append((listed.id, str(taken)))
                say(f"{listed.id}: {taken}; left on the Pi")
                continue
            filed.append(listed.id)
    return filed


def collect(remote: Remote, settings: Settings, field_dir: Path, delete: bool, say: Say) -> Collected:
    """Copy the Pi's new kept frames into field_dir/unlabelled/; with delete, delete those here and checked on the Pi."""
    result = Collected(remote.name)
    kept_dir = settings.kept_dir
    try:
        here = frames_here(field_dir)
        # Without --delete the frames here already need no checksum; with it, they are compared before going.
        listed = list_kept(remote, kept_dir, set() if delete else set(here))
        result.reached = True
        if listed is None:
            say(f"{kept_dir} is not there: the service has kept no frames (are kept frames turned on in its binbot.toml?)")
            return result
        new = [frame for frame in listed if frame.id not in here]
        result.here = len(listed) - len(new)
        say(f"{len(listed)} kept frame(s) in {kept_dir}: {len(new)} new, {result.here} here already")
        for frame in [frame for frame in new if oversized(frame)]:
            result.problems.append((frame.id, oversized(frame)))
            say(f"{frame.id}: {oversized(frame)}; not copied, and left on the Pi")
        new = [frame for frame in new if not oversized(frame)]
        if not new:
            say("nothing new to copy")
        (field_dir / UNLABELLED).mkdir(exist_ok=True)
        for start in range(0, len(new), BATCH):
            batch = new[start:start + BATCH]
            filed = copy_batch(remote, kept_dir, batch, field_dir, result, say)
            result.new += len(filed)
            say(f"copied {start + len(batch)} of {len(new)}: {len(filed)} checked and put in {field_dir / UNLABELLED}")
            if delete and filed:
                result.deleted += delete_on_pi(remote, kept_dir, filed)
        if delete:
            before = [frame for frame in listed if frame.id in here]
            checked = [frame.id for frame in before if same_jpeg(here[frame.id] / f"{frame.id}.jpg", frame)]
            if len(checked) < len(before):
                say(f"{len(before) - len(checked)} frame(s) here already do not match the Pi's copy (or their JPEG is "
                    "gone from here); left on the Pi")
            result.deleted += delete_on_pi(remote, kept_dir, checked)
            if result.deleted:
                say(f"deleted {result.deleted} frame(s) on the Pi, each one here and checked")
    except RemoteError as error:
        result.error = error.problem
    except BinbotError as error:  # a frame that could not be moved into unlabelled/
        result.error = str(error)
    except OSError as error:
        result.error = f"{error.filename or field_dir}: {error.strerror or error}; no frame was left half-written; collect again once that is put right"
    return result
