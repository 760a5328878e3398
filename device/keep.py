"""The keep output: field frames the model is unsure of, kept on the Pi for `binbot collect` and `binbot label`.

A frame is kept when its top-1 confidence falls in a band (by default below the run's threshold),
when the smoothed item and the frame's own label disagree, for each item event (that item's best
frame, once), or by a small random sample of all frames (an unbiased view). Low-confidence and
disagreeing frames are coalesced: a window runs until the item in view changes or `interval`
seconds pass, and only the least confident frame of each kind in it is kept.

The loop only hands each result, its frame and its scores to a small bounded Handoff; selection,
JPEG encoding and writing happen on the output's own thread. Sources hand over a fresh array with
each frame (OpenCV's and picamera2's conversions make one; a replay's frames are never written to),
so a reference is kept, not a copy. Each frame is written as in binbot.device.kept: `<id>.jpg` at
the source's resolution, then `<id>.json`, each through a temporary name and a rename, so a frame
whose sidecar is visible is complete. Limits per hour and per day (seeded from the ids already on
disk, so a restart cannot bypass them) and a disk quota (the oldest frames evicted first) bound
what is kept. Kept frames never take the last of their filesystem: keeping leaves min_free_percent of
it free (by default 15%, what journald leaves by default, so the journal and the events file on the
same card are never starved), evicting its own oldest frames to stay within it and skipping frames
(counted as "disk") when even that would not. A failed write (a full disk, a read-only folder) pauses
keeping for a few seconds, never classifying.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import Counter, Gauge

from binbot.device.config import RunConfig
from binbot.device.kept import REASONS, KeptFrame, is_id, kept_ids, id_time, new_id, sidecar
from binbot.device.metrics import Metrics
from binbot.device.outputs import Handoff, Output
from binbot.errors import BinbotError
from binbot.files import PARTIAL, write_atomic  # a file ending in PARTIAL that a crash left is removed at start

DEFAULT_DIR = "/var/lib/binbot/kept"  # under the unit's StateDirectory: the only place the service may write
QUEUE = 8  # frames waiting for the keeper's thread before the oldest is dropped (and counted)
RETRY = 5.0  # seconds keeping pauses after a failed write, before it tries again
LOG_EVERY = 60.0  # seconds between log lines about a failure that goes on
LIMITS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
SKIPS = ("hour", "day", "disk", "failing")  # why a frame chosen for keeping was not kept


@dataclass(frozen=True)
class KeepSettings:
    dir: str = DEFAULT_DIR
    band_low: float = 0.0
    band_high: float | None = None  # low-confidence: band_low <= top-1 confidence < band_high; None: the threshold
    disagreement: bool = True  # keep frames whose own label is not the smoothed item
    sample: float = 0.01  # the chance that any frame is kept, for an unbiased view
    events: bool = True  # for each item event, keep that item's best frame once
    interval: float = 10.0  # seconds, at most, over which low-confidence and disagreeing frames are coalesced
    per_hour: int = 60
    per_day: int = 500
    quota_mb: float = 500.0  # megabytes (10^6 bytes) of kept frames; beyond it the oldest are deleted
    # Of the filesystem, left free: journald's default SystemKeepFree, so the journal never stops for frames.
    min_free_percent: float = 15.0
    jpeg_quality: int = 90


TYPES = {"str": str, "float": float, "float | None": float, "bool": bool, "int": int}
BOUNDS = {"band_low": (0.0, 1.0), "band_high": (0.0, 1.0), "sample": (0.0, 1.0), "interval": (0.1, 86400.0),
          "per_hour": (1, 100_000), "per_day": (1, 100_000), "quota_mb": (0.001, 1_000_000.0), "min_free_percent": (0.0, 90.0), "jpeg_quality": (1, 100)}


def read_settings(table: dict, where: str, threshold: float) -> KeepSettings:
    """The [keep] table of the config file at where, checked strictly; band_high defaults to threshold."""
    kinds = {f.name: TYPES[f.type] for f in fields(KeepSettings)}
    values = {}
    for key, value in table.items():
        kind = kinds.get(key)
        if kind is None:
            raise BinbotError(f"{where}: [keep]: unknown key {key!r} (known: {', '.join(kinds)})")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise BinbotError(f"{where}: [keep]: {key} should be a {kind.__name__}, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BinbotError(f"{where}: [keep]: {key} = {value!r}: must be a finite number")
        low, high = BOUNDS.get(key, (None, None))
        if low is not None and not low <= value <= high:
            raise BinbotError(f"{where}: [keep]: {key} = {value!r}: must be between {_shown(low)} and {_shown(high)}")
        values[key] = value
    values.setdefault("band_high", threshold)
    settings = KeepSettings(**values)
    if not settings.dir:
        raise BinbotError(f"{where}: [keep]: dir should name the folder frames are kept in")
    if settings.band_low > settings.band_high:
        raise BinbotError(f"{where}: [keep]: band_low = {settings.band_low:g} is above band_high = "
                          f"{settings.band_high:g} (band_high defaults to the threshold, {threshold:g})")
    return settings


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def keep_output(config: RunConfig, metrics: Metrics, log: Callable[[str], None]) -> KeepOutput:
    """The output the config's [keep] table (or --keep-dir) asks for."""
    settings = read_settings(config.tables["keep"], config.config_file or "command line", config.threshold)
    return KeepOutput(settings, metrics, log)


@dataclass
class Seen:
    """One classified frame as the keeper holds it: its result, its RGB frame, every class's probability."""

    result: dict
    rgb: np.ndarray
    scores: dict[str, float]
    when: datetime  # the result's time
    kept: bool = False  # already chosen, so a second reason does not keep it twice

    @property
    def label(self) -> str:
        return self.result["label"]

    @property
    def confidence(self) -> float:
        return self.result["confidence"]

    @property
    def item(self) -> str | None:
        return self.result["item"]


@dataclass
class Window:
    """The frames since the item in view last changed (or interval passed): the best candidate per reason."""

    item: str | None
    start: datetime
    low: Seen | None = None
    disagreeing: Seen | None = None


@dataclass
class Stay:
    """An item's stay in view, from its event until the item changes: its best frame so far."""

    label: str
    best: Seen | None = None


class Selector:
    """Decides which frames to keep and why; each call returns the (frame, reasons) to keep now."""

    def __init__(self, settings: KeepSettings, rng: random.Random):
        self.settings, self.rng = settings, rng
        self.window: Window | None = None
        self.stay: Stay | None = None
        self.last: Seen | None = None

    def frame(self, seen: Seen) -> list[tuple[Seen, list[str]]]:
        picks: dict[int, tuple[Seen, list[str]]] = {}
        window, stay, interval = self.window, self.stay, timedelta(seconds=self.settings.interval)
        if window and (seen.item != window.item or seen.when - window.start >= interval):
            self._add_window(picks)
        if stay and seen.item != stay.label:
            self._add_stay(picks)
        if self.window is None:
            self.window = Window(seen.item, seen.when)
        self._offer(self.window, seen)
        if self.stay and (self.stay.best is None or self._score(seen) > self._score(self.stay.best)):
            self.stay.best = seen
        self.last = seen
        if self.rng.random() < self.settings.sample:
            self._add(picks, seen, "sample")
        return self._chosen(picks)

    def event(self, event: dict) -> list[tuple[Seen, list[str]]]:
        if not self.settings.events:
            return []
        picks: dict[int, tuple[Seen, list[str]]] = {}
        if self.stay:  # the frame that changed the item was dropped on the way: the stay ends here
            self._add_stay(picks)
        last = self.last
        own = last if last and last.result.get("frame") == event.get("frame") and last.item == event["label"] else None
        self.stay = Stay(event["label"], own)
        return self._chosen(picks)

    def flush(self) -> list[tuple[Seen, list[str]]]:
        """What the open window and stay would keep at their end: on shutdown."""
        picks: dict[int, tuple[Seen, list[str]]] = {}
        if self.window:
            self._add_window(picks)
        if self.stay:
            self._add_stay(picks)
        return self._chosen(picks)

    def _offer(self, window: Window, seen: Seen) -> None:
        settings, confidence = self.settings, seen.confidence
        if settings.band_low <= confidence < settings.band_high and (
                window.low is None or confidence < window.low.confidence):
            window.low = seen
        if settings.disagreement and seen.item is not None and seen.item != seen.label and (
                window.disagreeing is None or confidence < window.disagreeing.confidence):
            window.disagreeing = seen

    def _score(self, seen: Seen) -> float:
        return seen.scores.get(self.stay.label, 0.0)

    def _add_window(self, picks: dict) -> None:
        window, self.window = self.window, None
        if window.low:
            self._add(picks, window.low, "low-confidence")
        if window.disagreeing:
            self._add(picks, window.disagreeing, "disagreement")

    def _add_stay(self, picks: dict) -> None:
        stay, self.stay = self.stay, None
        if stay.best:
            self._add(picks, stay.best, "event")

    @staticmethod
    def _add(picks: dict, seen: Seen, reason: str) -> None:
        if not seen.kept:
            picks.setdefault(id(seen), (seen, []))[1].append(reason)

    @staticmethod
    def _chosen(picks: dict) -> list[tuple[Seen, list[str]]]:
        for seen, _ in picks.values():
            seen.kept = True
        return [(seen, sorted(reasons, key=REASONS.index)) for seen, reasons in picks.values()]


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


class KeepOutput(Output):
    """Keeps the frames its Selector chooses in settings.dir, within the limits and the quota."""

    name = "keep"
    wants_frames = True
    wants_scores = True

    def __init__(self, settings: KeepSettings, metrics: Metrics, log: Callable[[str], None],
                 rng: random.Random | None = None, now: Callable[[], datetime] | None = None,
                 clock: Callable[[], float] = time.monotonic, retry: float = RETRY):
        self.settings, self.folder, self._log = settings, Path(settings.dir), log
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._clock, self._retry = clock, retry
        self.selector = Selector(settings, rng or random.Random())
        r = metrics.registry
        self._kept = Counter("binbot_kept_frames", "Frames kept, by reason (a frame kept for two counts under each)",
                             ["reason"], registry=r)
        self._skipped = Counter("binbot_kept_skipped", "Frames chosen for keeping but not kept: over a limit, "
                                "or while writing fails", ["limit"], registry=r)
        self._evicted = Counter("binbot_kept_evicted", "Kept frames deleted, oldest first, to stay within the quota",
                                registry=r)
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
        self._logged_at = -float("inf")
        self._limited: str | None = None  # the limit frames are being skipped for: hour, day or disk
        self._disk_note = ""
        self._skipped_since_error = 0
        self._prepared = False
        since = self._now() - LIMITS["day"]
        self.limits = Limits(settings.per_hour, settings.per_day,
                             [when for when in map(id_time, self._ids()) if when > since])
        self._prepare()
        log(f"keep: keeping unsure frames in {self.folder} (at most {settings.per_hour} an hour, "
            f"{settings.per_day} a day, {settings.quota_mb:g} MB)")
        self._handoff: Handoff[tuple] = Handoff(self.name, self._work, QUEUE, metrics, log)

    def frame(self, result: dict, rgb: np.ndarray | None, scores: dict[str, float] | None = None) -> None:
        if rgb is not None and scores is not None:
            self._handoff.put(("frame", result, rgb, scores))

    def event(self, event: dict) -> None:
        self._handoff.put(("event", event))

    def health(self) -> dict:
        return {"dir": str(self.folder), "kept": self.count, "bytes": self.size, "failing": bool(self.error),
                "error": self.error}

    def close(self) -> None:
        self._handoff.put(("flush",))
        self._handoff.close()

    def _work(self, item: tuple) -> None:
        if item[0] == "frame":
            _, result, rgb, scores = item
            picks = self.selector.frame(Seen(result, rgb, scores, datetime.fromisoformat(result["time"])))
        elif item[0] == "event":
            picks = self.selector.event(item[1])
        else:
            picks = self.selector.flush()
        for seen, reasons in picks:
            self.keep(seen, reasons)

    def keep(self, seen: Seen, reasons: list[str]) -> bool:
        """Write seen as a kept frame for reasons, unless a limit or a failing disk says not now."""
        now = self._now()
        limit = "failing" if self._clock() < self._paused_until else self.limits.full(now)
        if limit is not None:
            self._skip(limit)
            return False
        if not self._prepare():
            self._skip("failing")
            return False
        frame_id = new_id(now)
        bgr = cv2.cvtColor(seen.rgb, cv2.COLOR_RGB2BGR)
        encoded, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality])
        if not encoded:
            raise ValueError(f"frame {seen.result.get('frame')}: OpenCV could not encode it as JPEG")
        data = jpeg.tobytes()
        height, width = seen.rgb.shape[:2]
        result = seen.result
        record = KeptFrame(
            id=frame_id, time=result["time"], model=result["model"], label=result["label"],
            confidence=float(result["confidence"]), scores={name: round(min(max(p, 0.0), 1.0), 6)
                                                            for name, p in seen.scores.items()},
            item=result["item"], reasons=reasons, width=int(width), height=int(height),
            jpeg_sha256=hashlib.sha256(data).hexdigest(), jpeg_size=len(data), origin=result.get("origin") or "")
        text = (json.dumps(sidecar(record), indent=1) + "\n").encode()
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
            self._log(f"keep: keeping frames again in {self.folder}"
                      + (f", after {self._skipped_since_error} skipped" if self._skipped_since_error else ""))
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
                self._log(f"keep: {self._disk_note}; frames are skipped and counted until there is room")
            else:
                self._log(f"keep: {self.limits.most[limit]} frames kept in the last {limit} (per_{limit}); more are "
                          f"skipped and counted until the {limit} rolls on")

    def _failed(self, error: OSError) -> None:
        self._failures.inc()
        self._prepared = False  # the folder may have gone: make it again before the next write
        self._failing.set(1)
        self._paused_until = self._clock() + self._retry
        message = f"cannot write to {self.folder} ({error.strerror or error})"
        now = self._clock()
        if message != self.error or now - self._logged_at >= LOG_EVERY:
            hint = ("; under systemd the service can write only under /var/lib/binbot"
                    if error.errno in (errno.EROFS, errno.EACCES) else "")
            self._log(f"keep: {message}{hint}; classifying goes on, keeping pauses {self._retry:g} s and retries")
            self._logged_at = now
        self.error = message
