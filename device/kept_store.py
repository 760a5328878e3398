"""Kept frames on the Pi's disk: written as binbot.device.kept says, within limits, a quota and a free margin.

Each frame is `<id>.jpg` at the source's resolution, then `<id>.json`, each through a temporary name
and a rename, so a frame whose sidecar is visible is complete. Limits per hour and per day (seeded
from the ids already on disk, so a restart cannot bypass them) and a disk quota (the oldest frames
evicted first) bound what is kept. Kept frames never take the last of their filesystem: the store
leaves min_free_percent of it free (by default 15%, what journald leaves by default, so the journal
and the events file on the same card are never starved), evicting its own oldest frames to stay
within it and skipping frames (counted as "disk") when even that would not. A failed write (a full
disk, a read-only folder) pauses keeping for a few seconds, never classifying. A crash's leftovers
(temporary files, a JPEG without its sidecar) are removed when the store starts.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from binbot.device import paths
from binbot.device.jpeg import encode_jpeg
from binbot.device.kept import REASONS, KeptFrame, id_time, is_id, kept_ids, new_id, sidecar
from binbot.device.metrics import Metrics
from binbot.device.outputs import FrameRecord
from binbot.files import PARTIAL, write_atomic  # a file ending in PARTIAL that a crash left is removed at start
from binbot.logs import Every

if TYPE_CHECKING:
    from binbot.device.keep import KeepSettings

log = logging.getLogger("binbot.keep")

RETRY = 5.0  # seconds keeping pauses after a failed write, before it tries again
LIMITS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
SKIPS = ("hour", "day", "disk", "failing")  # why a frame chosen for keeping was not kept


class Limits:
    """Rolling per-hour and per-day counts of the frames kept."""

    def __init__(self, per_hour: int, per_day: int, times: list[datetime]):
        self.most = {"day": per_day, "hour": per_hour}
        self.times: deque[datetime] = deque(sorted(times))

    def full(self, now: datetime) -> str | None:
        """"day" or "hour" if keeping one more now would exceed that limit, else None."""
        while self.times and self.times[0] <= now - LIMITS["day"]:
            self.times.popleft()
        for limit, span in LIMITS.items():
            if sum(1 for when in self.times if when > now - span) >= self.most[limit]:
                return limit
        return None

    def add(self, now: datetime) -> None:
        self.times.append(now)


class KeptStore:
    """The kept frames in settings.dir: keep() writes one, within the limits, the quota and the free margin."""

    def __init__(self, settings: KeepSettings, metrics: Metrics, now: Callable[[], datetime] | None = None,
                 clock: Callable[[], float] = time.monotonic, retry: float = RETRY):
        self.settings, self.folder = settings, Path(settings.dir)
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._clock, self._retry = clock, retry
        r = metrics.registry
        self._kept = Counter("binbot_kept_frames", "Frames kept, by reason (a frame kept for two counts under each)",
                             ["reason"], registry=r)
        self._skipped = Counter("binbot_kept_skipped", "Frames chosen for keeping but not kept: over a limit, "
                                "short of room, or while writing fails", ["limit"], registry=r)
        self._evicted = Counter("binbot_kept_evicted", "Kept frames deleted, oldest first, to stay within the quota "
                                "or leave the free margin", registry=r)
        self._failures = Counter("binbot_kept_write_failures", "Kept frames that could not be written", registry=r)
        self._bytes = Gauge("binbot_kept_bytes", "Bytes of kept frames in the keep folder", registry=r)
        self._failing = Gauge("binbot_kept_failing", "1 while kept frames cannot be written", registry=r)
        for reason in REASONS:
            self._kept.labels(reason)
        for limit in SKIPS:
            self._skipped.labels(limit)
        self.count, self.size = 0, 0
        self.error = ""
        self._paused_until = -float("inf")
        self._failures_logged = Every(clock=clock)
        self._limited: str | None = None  # the limit frames are being skipped for: hour, day or disk
        self._disk_note = ""
        self._skipped_since_error = 0
        self._prepared = False
        since = self._now() - LIMITS["day"]
        self.limits = Limits(settings.per_hour, settings.per_day,
                             [when for when in map(id_time, self._ids()) if when > since])
        self._prepare()

    def health(self) -> dict:
        return {"dir": str(self.folder), "kept": self.count, "bytes": self.size, "failing": bool(self.error),
                "error": self.error}

    def keep(self, record: FrameRecord, reasons: list[str]) -> bool:
        """Write record's frame as a kept frame for reasons, unless a limit, the disk or a failing write says not now."""
        now = self._now()
        limit = "failing" if self._clock() < self._paused_until else self.limits.full(now)
        if limit is not None:
            self._skip(limit)
            return False
        if not self._prepare():
            self._skip("failing")
            return False
        frame_id = new_id(now)
        data = encode_jpeg(record.rgb, self.settings.jpeg_quality)
        height, width = record.rgb.shape[:2]
        kept = KeptFrame(
            id=frame_id, time=record.time, model=record.model, label=record.label,
            confidence=float(record.confidence), scores={name: round(min(max(p, 0.0), 1.0), 6)
                                                         for name, p in record.scores.items()},
            item=record.item, reasons=reasons, width=int(width), height=int(height),
            jpeg_sha256=hashlib.sha256(data).hexdigest(), jpeg_size=len(data), origin=record.origin or "")
        text = (json.dumps(sidecar(kept), indent=1) + "\n").encode()
        jpeg_path = self.folder / f"{frame_id}.jpg"
        try:
            if not self._make_room(len(data), len(text)):
                self._skip("disk")
                return False
            write_atomic(jpeg_path, data, mode=0o600)  # frames of a home or shop: private
            try:
                write_atomic(self.folder / f"{frame_id}.json", text, mode=0o600)
            except OSError:
                jpeg_path.unlink(missing_ok=True)  # a JPEG without its sidecar is not a kept frame
                raise
        except OSError as error:
            self._failed(error)
            return False
        self.limits.add(now)
        self._within_quota()
        for reason in reasons:  # counted once on disk and in health(), so /metrics never runs ahead of either
            self._kept.labels(reason).inc()
        if self.error or self._limited:
            log.info("keep: keeping frames again in %s%s", self.folder,
                     f", after {self._skipped_since_error} skipped" if self._skipped_since_error else "")
            self.error, self._limited, self._skipped_since_error = "", None, 0
            self._failing.set(0)
        return True

    def _prepare(self) -> bool:
        """Make the folder and clear what a crash left (temporary files, a JPEG without its sidecar), once."""
        if self._prepared:
            return True
        try:
            try:
                self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # frames of a home or shop: private
            except FileExistsError:  # a file of that name
                raise NotADirectoryError(errno.ENOTDIR, "it exists and is not a folder") from None
            names = os.listdir(self.folder)
            complete = {name[:-5] for name in names if name.endswith(".json") and is_id(name[:-5])}
            for name in names:
                if (name.startswith(".") and name.endswith(PARTIAL)) or (
                        name.endswith(".jpg") and is_id(name[:-4]) and name[:-4] not in complete):
                    (self.folder / name).unlink(missing_ok=True)
        except OSError as error:
            self._failed(error)
            return False
        self._prepared = True
        self._scan()
        return True

    def _scan(self) -> list[tuple[str, int]]:
        """The complete kept frames on disk, oldest first, with their bytes (JPEG and sidecar); updates the gauges."""
        frames = []
        for frame_id in self._ids():
            size = 0
            for suffix in (".jpg", ".json"):
                try:
                    size += (self.folder / f"{frame_id}{suffix}").stat().st_size
                except FileNotFoundError:  # taken meanwhile (binbot collect, a person)
                    pass
            frames.append((frame_id, size))
        self.count, self.size = len(frames), sum(size for _, size in frames)
        self._bytes.set(self.size)
        return frames

    def _ids(self) -> list[str]:
        try:
            return kept_ids(self.folder)
        except OSError:  # not a folder, or not readable: _prepare says so, and writing fails and is counted
            return []

    def _make_room(self, *sizes: int) -> bool:
        """Whether files of sizes fit leaving the free margin, after evicting the oldest frames if need be."""
        filesystem = os.statvfs(self.folder)
        block = filesystem.f_frsize or 4096
        needed = sum(-(-size // block) * block for size in sizes)  # whole blocks, as the files will take
        margin = self.settings.min_free_percent / 100 * filesystem.f_blocks * block
        free = filesystem.f_bavail * block
        short = needed + margin - free
        doomed, freed = [], 0
        for frame_id, size in self._scan() if short > 0 else []:
            if freed >= short:
                break
            doomed.append(frame_id)
            freed += size
        if freed < short:  # not even by evicting every frame: none is evicted for nothing
            self._disk_note = (f"{free / 1e6:.1f} MB free where {self.folder} is, and keeping leaves "
                               f"{margin / 1e6:.1f} MB ({self.settings.min_free_percent:g}%, min_free_percent) for the journal and the events")
            return False
        self._evict(doomed)
        return True

    def _within_quota(self) -> None:
        frames = self._scan()
        excess = self.size - self.settings.quota_mb * 1e6
        doomed = []
        for frame_id, size in frames[:-1]:  # never the newest: a quota below one frame still keeps that one
            if excess <= 0:
                break
            doomed.append(frame_id)
            excess -= size
        self._evict(doomed)

    def _evict(self, frame_ids: list[str]) -> None:
        for frame_id in frame_ids:
            for suffix in (".json", ".jpg"):  # the sidecar first: a frame without one is incomplete, never a torso
                (self.folder / f"{frame_id}{suffix}").unlink(missing_ok=True)
            self._evicted.inc()
        if frame_ids:
            self._scan()

    def _skip(self, limit: str) -> None:
        self._skipped.labels(limit).inc()
        self._skipped_since_error += 1
        if limit in (*LIMITS, "disk") and self._limited != limit:
            self._limited = limit
            if limit == "disk":
                log.warning("keep: %s; frames are skipped and counted until there is room", self._disk_note)
            else:
                log.info("keep: %d frames kept in the last %s (per_%s); more are skipped and counted until the %s "
                         "rolls on", self.limits.most[limit], limit, limit, limit)

    def _failed(self, error: OSError) -> None:
        self._failures.inc()
        self._prepared = False  # the folder may have gone: make it again before the next write
        self._failing.set(1)
        self._paused_until = self._clock() + self._retry
        message = f"cannot write to {self.folder} ({error.strerror or error})"
        if self._failures_logged.due(message):
            hint = (f"; under systemd the service can write only under {paths.STATE_DIR}"
                    if error.errno in (errno.EROFS, errno.EACCES) else "")
            log.warning("keep: %s%s; classifying goes on, keeping pauses %g s and retries", message, hint, self._retry)
        self.error = message
