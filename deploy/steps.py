"""Deploying a bundle to one Pi: upload beside the live ones, verify, switch, reload, check, roll back.

On the Pi, <remote-dir>/bundles holds:

    <id>/          a bundle whose checksums were verified there, named by its id
    <id>.partial/  an upload under way (or cut off); never served, replaced by the next upload
    current        relative symlink to the bundle the service serves
    previous       relative symlink to the one before it, where --rollback goes

Both links change by renaming a new symlink over the old one, so the service never sees `current`
missing or half-made. Nothing here imports TensorFlow; the local check is the device's own loader.
"""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from binbot.deploy.healthz import describe_health, parse_health, serving, why_not_serving
from binbot.device.bundle import FILES, ID_PATTERN, MANIFEST, load_bundle, sha256_file
from binbot.deploy.remote import Remote, RemoteError, remote_script
from binbot.deploy.settings import Settings

Say = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """What happened on one host, for the summary table."""

    host: str
    result: str  # deployed, unchanged, rolled back, ok, unhealthy, failed
    model: str  # the model /healthz reports afterwards, "" if unknown
    detail: str
    ok: bool


@dataclass(frozen=True)
class LocalBundle:
    path: Path
    id: str
    sha256: dict[str, str]  # file name -> checksum, bundle.json included
    size: int

    def checksum_lines(self) -> str:
        """The files' checksums in the format `sha256sum --check` reads."""
        return "".join(f"{digest}  {name}\n" for name, digest in self.sha256.items())


@dataclass
class HostState:
    """The bundles folder and /healthz of one Pi, as read at one moment."""

    user: str = ""
    current: str = ""  # the id `current` points at ("" if there is no link, or it names no bundle)
    previous: str = ""
    bundles: dict[str, int] = field(default_factory=dict)  # id -> modification time
    partials: list[str] = field(default_factory=list)
    health: dict = field(default_factory=dict)
    odd_links: list[str] = field(default_factory=list)  # links that point at something other than a bundle id


def check_local(path: Path, threads: int, say: Say) -> LocalBundle:
    """Verify the bundle here as the Pi will (checksums, labels, self-test), before any network."""
    loaded = load_bundle(path, threads, report=lambda line: say(f"  ok  {line}"))
    listed = loaded.bundle.manifest["files"]
    sha256 = {name: listed[name]["sha256"] for name in FILES}
    sha256[MANIFEST] = sha256_file(path / MANIFEST)
    return LocalBundle(path, loaded.bundle.id, sha256, sum((path / name).stat().st_size for name in sha256))


# --- what runs on the Pi: the files in scripts/ ----------------------------------------------------

HEALTH_PROGRAM = remote_script("health.py")
STATE_SCRIPT = remote_script("state.sh")
HEALTH_SCRIPT = remote_script("health.sh")
UPLOAD_SCRIPT = remote_script("upload.sh")
VERIFY_SCRIPT = remote_script("verify.sh")
SWITCH_SCRIPT = remote_script("switch.sh")
PRUNE_SCRIPT = remote_script("prune.sh")


# --- steps ---------------------------------------------------------------------------------------

def read_state(remote: Remote, settings: Settings) -> HostState:
    output = remote.run(STATE_SCRIPT, settings.bundles_dir, HEALTH_PROGRAM, settings.health_url,
                        privileged=True)
    state = HostState()
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        if key == "user":
            state.user = value
        elif key in ("current", "previous"):
            # Only a link to a bundle id is followed; a new link is always made from an id again.
            if ID_PATTERN.fullmatch(Path(value).name):
                setattr(state, key, Path(value).name)
            else:
                state.odd_links.append(f"`{key}` points at {value!r}, not at a bundle")
        elif key == "dir":
            mtime, _, name = value.partition(" ")
            if ID_PATTERN.fullmatch(name):
                state.bundles[name] = int(mtime)
            elif name.endswith(".partial"):
                state.partials.append(name)
        elif key == "health":
            state.health = parse_health(value)
    return state


def put_bundle(remote: Remote, bundle: LocalBundle, settings: Settings, state: HostState, say: Say) -> None:
    """Make bundles/<id> a verified copy of bundle: reuse one that verifies, else upload."""
    folder = settings.bundles_dir
    if bundle.id in state.bundles:
        try:
            remote.run(VERIFY_SCRIPT, folder, bundle.id, bundle.checksum_lines(), privileged=True)
            say(f"{folder}/{bundle.id} is there already and matches its checksums")
            return
        except RemoteError as error:
            say(f"{error.problem}; uploading it again")
    say(f"uploading {bundle.id} ({len(bundle.sha256)} files, {bundle.size / 1024:.0f} KiB) to {folder}/{bundle.id}.partial")
    try:
        remote.run(UPLOAD_SCRIPT, folder, bundle.id, bundle.checksum_lines(), privileged=True,
                   timeout=120 + bundle.size / 50_000, send=lambda stream: write_tar(stream, bundle))
    except RemoteError as error:
        raise RemoteError(remote.name, f"upload failed, nothing switched: {error.problem}") from None
    say(f"checksums verified on the host; {folder}/{bundle.id} in place")


def write_tar(stream: BinaryIO, bundle: LocalBundle) -> None:
    """The bundle's files as a tar stream of regular files, owned by root and readable by the service's user.

    Each file's content goes, read through any symlink here: the Pi gets the bytes that were verified,
    never a link that points elsewhere (or nowhere) on it.
    """
    with tarfile.open(fileobj=stream, mode="w|") as tar:
        for name in bundle.sha256:
            with open(bundle.path / name, "rb") as file:
                info = tarfile.TarInfo(name)
                info.size = os.fstat(file.fileno()).st_size
                info.mtime = int(time.time())
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = 0o644
                tar.addfile(info, file)


def switch(remote: Remote, settings: Settings, current: str, previous: str) -> None:
    remote.run(SWITCH_SCRIPT, settings.bundles_dir, current, previous, privileged=True)


def reload_and_wait(remote: Remote, settings: Settings, want: str, error_before: str) -> tuple[dict, str]:
    """Run the reload command and wait for /healthz to report want and ok: (health, "") or (health, why not)."""
    try:
        remote.run(settings.reload_command, privileged=True)
    except RemoteError as error:
        return {}, f"reload command `{settings.reload_command}` failed: {error.problem}"
    output = remote.run(HEALTH_SCRIPT, HEALTH_PROGRAM, settings.health_url, want, error_before, str(settings.timeout),
                        timeout=settings.timeout + 60)
    health = parse_health(output)
    return health, why_not_serving(health, want, error_before, settings.timeout)


def prune(remote: Remote, settings: Settings, state: HostState, keep_ids: set[str], say: Say) -> None:
    """Delete all but the newest settings.keep bundles (keep_ids, current and previous, always stay) and stale uploads."""
    others = sorted((b for b in state.bundles if b not in keep_ids), key=state.bundles.get, reverse=True)
    doomed = others[max(0, settings.keep - len(keep_ids)):]
    if not doomed and not state.partials:
        return
    try:
        remote.run(PRUNE_SCRIPT, settings.bundles_dir, *doomed, privileged=True)
        if doomed:
            say(f"removed old bundles {', '.join(doomed)} (keeping {settings.keep})")
    except RemoteError as error:
        say(f"could not remove old bundles: {error.problem}")


def activate(remote: Remote, settings: Settings, state: HostState, target_id: str, result: str, say: Say) -> Outcome:
    """Point current at target_id, reload, and wait for it; on failure put both links back, reload again."""
    new_previous = state.current or state.previous
    switch(remote, settings, target_id, new_previous)
    say(f"current -> {target_id} (previous: {new_previous or 'none'}); reloading: {settings.reload_command}")
    error_before = state.health.get("reload_error") or ""
    health, reason = reload_and_wait(remote, settings, target_id, error_before)
    if not reason:
        say(f"serving {target_id}: {describe_health(health)}")
        return Outcome(remote.name, result, target_id, describe_health(health), ok=True)

    if state.current and not serving(state.health, state.current):
        reason += f" (and before the switch /healthz was not ok with {state.current} either)"
    say(f"{target_id} is not serving: {reason}; switching back to {state.current or 'no bundle'}")
    try:
        switch(remote, settings, state.current, state.previous)
        if not state.current:
            return Outcome(remote.name, "failed", "", f"{reason}; there was no bundle before, so `current` was removed",
                           ok=False)
        back, back_reason = reload_and_wait(remote, settings, state.current, health.get("reload_error") or "")
    except RemoteError as error:
        return Outcome(remote.name, "failed", "", f"{reason}; switching back failed too: {error.problem}", ok=False)
    if back_reason:
        return Outcome(remote.name, "failed", back.get("model", ""),
                       f"{reason}; rolled back to {state.current}, but it is not serving either: {back_reason}", ok=False)
    return Outcome(remote.name, "failed", state.current, f"{reason}; rolled back to {state.current}", ok=False)


# --- the three commands, for one host ------------------------------------------------------------

def deploy(remote: Remote, settings: Settings, bundle: LocalBundle, say: Say) -> Outcome:
    state = read_state(remote, settings)
    say(f"connected as {state.user}; current {state.current or 'none'}, /healthz: {describe_health(state.health)}")
    for odd in state.odd_links:
        say(f"{odd}; it will be replaced")
    if state.current == bundle.id and serving(state.health, bundle.id):
        return Outcome(remote.name, "unchanged", bundle.id, f"{bundle.id} is already current and serving; nothing to do",
                       ok=True)
    started = time.monotonic()
    put_bundle(remote, bundle, settings, state, say)
    if state.current == bundle.id:
        # The files were right but the service is not serving them: a reload is all it takes.
        say(f"current is {bundle.id} already but the service does not serve it; reloading: {settings.reload_command}")
        health, reason = reload_and_wait(remote, settings, bundle.id, state.health.get("reload_error") or "")
        outcome = Outcome(remote.name, "deployed" if not reason else "failed", health.get("model", ""),
                          reason or describe_health(health), ok=not reason)
    else:
        outcome = activate(remote, settings, state, bundle.id, "deployed", say)
    if outcome.ok:
        state.bundles.setdefault(bundle.id, int(time.time()))
        now_previous = state.previous if state.current in ("", bundle.id) else state.current
        prune(remote, settings, state, {bundle.id, now_previous} - {""}, say)
        say(f"done in {time.monotonic() - started:.1f} s")
    return outcome


def rollback(remote: Remote, settings: Settings, say: Say) -> Outcome:
    state = read_state(remote, settings)
    if not state.previous:
        raise RemoteError(remote.name, "no previous bundle to roll back to (nothing was deployed before the current one)")
    if state.previous not in state.bundles:
        raise RemoteError(remote.name, f"the previous bundle {state.previous} is no longer there")
    say(f"rolling back from {state.current or 'none'} to {state.previous}")
    return activate(remote, settings, state, state.previous, "rolled back", say)


def status(remote: Remote, settings: Settings, say: Say) -> Outcome:
    state = read_state(remote, settings)
    folder = settings.bundles_dir
    say(f"{folder}: current {state.current or 'none'}, previous {state.previous or 'none'}")
    for bundle_id, mtime in sorted(state.bundles.items(), key=lambda item: item[1], reverse=True):
        role = {state.current: " (current)", state.previous: " (previous)"}.get(bundle_id, "")
        say(f"  {bundle_id}  uploaded {time.strftime('%Y-%m-%d %H:%M', time.localtime(mtime))}{role}")
    if state.partials:
        say(f"  unfinished uploads (never served): {', '.join(state.partials)}")
    say(f"/healthz: {describe_health(state.health)}")
    healthy = serving(state.health, state.current)
    detail = describe_health(state.health)
    if not healthy and state.health.get("model") and state.health.get("model") != state.current:
        detail = f"serves {state.health['model']} but current is {state.current or 'missing'}; {detail}"
    return Outcome(remote.name, "ok" if healthy else "unhealthy", state.health.get("model", ""), detail, ok=healthy)


