"""A kept field frame on disk: `<id>.jpg` (the camera's frame) and `<id>.json` (its sidecar).

The one contract between the daemon that keeps frames on the Pi, `binbot collect` that copies them
to the workstation, and `binbot label` that files them: all three name, read and check kept frames
here (the field folder they are filed in on the workstation is binbot.device.fieldfolder's). An id is the UTC time the frame was kept, to the millisecond, and 8 random hex digits, so ids
sort by age and never collide between Pis; it becomes a file name on both sides, so anything that is
not exactly such an id is refused. The sidecar is written after its JPEG, so a frame whose sidecar
exists is complete; the sidecar carries the JPEG's sha256 and size, checked after every copy.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from binbot import boundedfile, boundedjson
from binbot.errors import BinbotError

FORMAT = 1
KEPT_ID = re.compile(r"[0-9]{8}T[0-9]{9}Z-[0-9a-f]{8}")  # 20261130T144223123Z-3fa2b1c9
REASONS = ("low-confidence", "disagreement", "sample", "event")
MAX_SIDECAR = 1 << 20  # bytes; a sidecar is about 1 KB, so anything near this is not one
MAX_JPEG = 64 << 20  # bytes; a 12-megapixel frame at quality 100 is about 10 MB


def new_id(when: datetime | None = None) -> str:
    """A fresh kept-frame id for a frame kept at when (default: now)."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{when:%Y%m%dT%H%M%S}{when.microsecond // 1000:03d}Z-{secrets.token_hex(4)}"


def id_time(frame_id: str) -> datetime:
    """The UTC time a kept-frame id was made at."""
    return datetime.strptime(frame_id[:18] + "000", "%Y%m%dT%H%M%S%f").replace(tzinfo=timezone.utc)


def is_id(text: str) -> bool:
    return KEPT_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class KeptFrame:
    """A kept frame's sidecar, checked."""

    id: str
    time: str
    model: str
    label: str  # the frame's own top-1 class
    confidence: float
    scores: dict[str, float]  # every class of the model, in its order
    item: str | None  # the smoothed item in view when the frame was kept
    reasons: list[str]
    width: int
    height: int
    jpeg_sha256: str
    jpeg_size: int
    origin: str = ""  # the source's name for the frame (a replayed file's path), if it has one
    raw: dict | None = None  # the sidecar as read, extra keys included

    @property
    def classes(self) -> list[str]:
        return list(self.scores)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda pair: -pair[1])[:k]


def sidecar(frame: KeptFrame) -> dict:
    """The sidecar's JSON for frame (format, then the fields in a fixed order)."""
    return {
        "format": FORMAT, "id": frame.id, "time": frame.time, "model": frame.model, "label": frame.label,
        "confidence": frame.confidence, "scores": frame.scores, "item": frame.item, "reasons": frame.reasons,
        "width": frame.width, "height": frame.height, "origin": frame.origin,
        "jpeg": {"sha256": frame.jpeg_sha256, "size": frame.jpeg_size},
    }


def read_sidecar(path: Path) -> KeptFrame:
    """The kept frame whose sidecar is path (<id>.json), or a BinbotError naming the file and what is wrong."""
    path = Path(path)
    if path.suffix != ".json" or not is_id(path.stem):
        raise BinbotError(f"{path}: not a kept frame's sidecar (expected <id>.json, id like 20261130T144223123Z-3fa2b1c9)")
    try:
        data = boundedjson.read(path, MAX_SIDECAR)
    except OSError as error:
        raise BinbotError(f"{path}: cannot read ({error.strerror or error})") from None
    return check_sidecar(data, path)


def check_sidecar(data: object, path: Path) -> KeptFrame:
    def fail(problem: str):
        raise BinbotError(f"{path}: {problem}")

    if not isinstance(data, dict):
        fail("a sidecar should be a JSON object")
    if data.get("format") != FORMAT:
        fail(f"format {data.get('format')!r} is not one this binbot reads ({FORMAT})")
    if data.get("id") != path.stem:
        fail(f"id {data.get('id')!r} does not match the file name")
    for key, kind in (("time", str), ("model", str), ("label", str), ("width", int), ("height", int)):
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            fail(f"{key} should be a {kind.__name__}, not {data.get(key)!r}")
    if data["width"] < 1 or data["height"] < 1:
        fail(f"size {data['width']}x{data['height']} is not an image's")
    scores = data.get("scores")
    if not isinstance(scores, dict) or not scores or not all(
            isinstance(name, str) and name and _is_probability(p) for name, p in scores.items()):
        fail("scores should map each class name to a probability between 0 and 1")
    if data["label"] not in scores:
        fail(f"label {data['label']!r} is not one of the scored classes")
    if not _is_probability(data.get("confidence")):
        fail(f"confidence should be a probability, not {data.get('confidence')!r}")
    item = data.get("item")
    if item is not None and item not in scores:
        fail(f"item {item!r} is not one of the scored classes")
    reasons = data.get("reasons")
    if not isinstance(reasons, list) or not reasons or not all(reason in REASONS for reason in reasons):
        fail(f"reasons should be a non-empty list of {', '.join(REASONS)}")
    jpeg = data.get("jpeg")
    if not (isinstance(jpeg, dict) and isinstance(jpeg.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", jpeg["sha256"])
            and isinstance(jpeg.get("size"), int) and not isinstance(jpeg.get("size"), bool)
            and 0 < jpeg["size"] <= MAX_JPEG):
        fail(f"jpeg should give the image's sha256 (64 hex digits) and size in bytes (at most {MAX_JPEG:,})")
    origin = data.get("origin", "")
    if not isinstance(origin, str):
        fail(f"origin should be a string, not {origin!r}")
    return KeptFrame(id=data["id"], time=data["time"], model=data["model"], label=data["label"],
                     confidence=float(data["confidence"]), scores={k: float(v) for k, v in scores.items()},
                     item=item, reasons=list(reasons), width=data["width"], height=data["height"],
                     jpeg_sha256=jpeg["sha256"], jpeg_size=jpeg["size"], origin=origin, raw=data)


def _is_probability(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0.0 <= value <= 1.0)


def jpeg_matches(frame: KeptFrame, jpeg: Path) -> bool:
    """True if jpeg is the image frame's sidecar describes: its size and sha256."""
    return file_digest(jpeg) == (frame.jpeg_size, frame.jpeg_sha256)


def file_digest(path: Path) -> tuple[int, str] | None:
    """A kept JPEG's size and sha256 (hex), or None if it cannot be read as one (missing, too big, not a file)."""
    try:
        data = boundedfile.read(Path(path), MAX_JPEG, "a JPEG")
    except (OSError, BinbotError):
        return None
    return len(data), hashlib.sha256(data).hexdigest()


def kept_ids(folder: Path) -> list[str]:
    """The ids of the complete kept frames in folder (those with a sidecar), oldest first."""
    try:
        names = [entry.name for entry in Path(folder).iterdir()]
    except FileNotFoundError:
        return []
    return sorted(name[:-5] for name in names if name.endswith(".json") and is_id(name[:-5]))

