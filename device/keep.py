"""The keep output: field frames the model is unsure of, kept on the Pi for `binbot collect` and `binbot label`.

A frame is kept when its top-1 confidence falls in a band (by default below the run's threshold),
when the smoothed item and the frame's own label disagree, for each item event (that item's best
frame, once), or by a small random sample of all frames (an unbiased view). Low-confidence and
disagreeing frames are coalesced: a window runs until the item in view changes or `interval`
seconds pass, and only the least confident frame of each kind in it is kept. The Selector here
decides; binbot.device.kept_store writes what it chose, within the limits, the quota and the room
the disk has.

The loop only hands each frame's record to a small bounded Handoff; selection, JPEG encoding and
writing happen on the output's own thread. Sources hand over a fresh array with each frame
(OpenCV's and picamera2's conversions make one; a replay's frames are never written to), so a
reference is kept, not a copy.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from binbot import schema
from binbot.device import paths
from binbot.device.kept import REASONS
from binbot.device.kept_store import KeptStore
from binbot.device.metrics import Metrics
from binbot.device.outputs import FrameRecord, Handoff, Output, OutputKind
from binbot.errors import BinbotError
from binbot.schema import setting

if TYPE_CHECKING:
    from binbot.device.config import RunConfig

log = logging.getLogger("binbot.keep")

DEFAULT_DIR = paths.KEPT_DIR  # under the unit's StateDirectory: the only place the service may write
QUEUE = 8  # frames waiting for the keeper's thread before the oldest is dropped (and counted)


@dataclass(frozen=True)
class KeepSettings:
    dir: str = setting(DEFAULT_DIR, f"the folder frames are kept in (the service can write only under "
                       f"{paths.STATE_DIR})", pattern=r".+", shape="a folder's path")
    band_low: float = setting(0.0, "low-confidence frames: band_low <= top-1 confidence < band_high", low=0.0,
                              high=1.0)
    band_high: float | None = setting(None, "the band's top; default: the threshold", low=0.0, high=1.0,
                                      shown_default="threshold")
    disagreement: bool = setting(True, "keep frames whose own label is not the item in view")
    sample: float = setting(0.01, "the chance that any frame is kept, for an unbiased view", low=0.0, high=1.0)
    events: bool = setting(True, "for each item event, keep that item's best frame once, when it leaves")
    interval: float = setting(10.0, "seconds, at most, over which low-confidence and disagreeing frames are "
                              "coalesced (or until the item changes)", low=0.1, high=86400.0)
    per_hour: int = setting(60, "frames kept at most in any hour; more are skipped and counted", low=1,
                            high=100_000)
    per_day: int = setting(500, "frames kept at most in any day", low=1, high=100_000)
    quota_mb: float = setting(500.0, "megabytes (10^6 bytes) of kept frames; beyond it the oldest are deleted",
                              low=0.001, high=1_000_000.0)
    # journald's default SystemKeepFree, so the journal never stops for frames.
    min_free_percent: float = setting(15.0, "of the filesystem, always left free for the journal and the events",
                                      low=0.0, high=90.0)
    jpeg_quality: int = setting(90, "JPEG quality of the kept frames", low=1, high=100)


def read_settings(table: dict, where: str, threshold: float) -> KeepSettings:
    """The [keep] table of the file at where, checked, with band_high at the threshold unless it says otherwise."""
    return with_threshold(schema.read(KeepSettings, table, where, "keep"), where, threshold)


def settle(settings: KeepSettings, config: RunConfig) -> KeepSettings:
    return with_threshold(settings, config.config_file or "command line", config.threshold)


def with_threshold(settings: KeepSettings, where: str, threshold: float) -> KeepSettings:
    """settings with band_high given (the threshold by default), refused if band_low is above it."""
    if settings.band_high is None:
        settings = replace(settings, band_high=threshold)
    if settings.band_low > settings.band_high:
        raise BinbotError(f"{where}: [keep] band_low = {settings.band_low:g} is above band_high = "
                          f"{settings.band_high:g} (band_high defaults to the threshold, {threshold:g})")
    return settings


KIND = OutputKind(KeepSettings, lambda settings, config, metrics: KeepOutput(settings, metrics), settle=settle)


@dataclass
class Seen:
    """One classified frame as the selector holds it: its record (with the frame), and its time."""

    record: FrameRecord
    when: datetime  # the record's time
    kept: bool = False  # already chosen, so a second reason does not keep it twice

    @property
    def label(self) -> str:
        return self.record.label

    @property
    def confidence(self) -> float:
        return self.record.confidence

    @property
    def item(self) -> str | None:
        return self.record.item


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
        own = last if last and last.record.frame == event.get("frame") and last.item == event["label"] else None
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
        return seen.record.scores.get(self.stay.label, 0.0)

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


class KeepOutput(Output):
    """Keeps the frames its Selector chooses, in its KeptStore."""

    name = "keep"
    wants_frames = True

    def __init__(self, settings: KeepSettings, metrics: Metrics, rng: random.Random | None = None,
                 store: KeptStore | None = None):
        self.settings = settings
        self.selector = Selector(settings, rng or random.Random())
        self.store = store or KeptStore(settings, metrics)
        log.info("keep: keeping unsure frames in %s (at most %d an hour, %d a day, %g MB)", settings.dir,
                 settings.per_hour, settings.per_day, settings.quota_mb)
        self._handoff: Handoff[tuple] = Handoff(self.name, self._work, QUEUE, metrics)

    def frame(self, record: FrameRecord) -> None:
        if record.rgb is not None:
            self._handoff.put(("frame", record))

    def event(self, event: dict) -> None:
        self._handoff.put(("event", event))

    def health(self) -> dict:
        return self.store.health()

    def close(self, until: float) -> None:
        self._handoff.put(("flush",))
        self._handoff.close(until)

    def _work(self, item: tuple) -> None:
        if item[0] == "frame":
            record = item[1]
            picks = self.selector.frame(Seen(record, datetime.fromisoformat(record.time)))
        elif item[0] == "event":
            picks = self.selector.event(item[1])
        else:
            picks = self.selector.flush()
        for seen, reasons in picks:
            self.store.keep(seen.record, reasons)
