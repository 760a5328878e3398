"""A "field" image set that is not TrashNet's studio look, made reproducibly from TrashNet's photos.

TrashNet shows each item on white or light grey board under even light. A camera over a real bin
sees other backgrounds, light and colour. This script cuts each item out of its photo (its
background is light and plain, so a distance from the border's colour finds it), puts it on a
generated background (wood, a dark bin, concrete, a conveyor belt, clutter, fabric) at another scale
and place, and changes the light (colour cast, gamma, brightness, vignette, blur, sensor noise).
Photos whose item fills the frame are shrunk whole onto the background instead. Everything is seeded
by the file's name, so the same photo always gives the same field image.

    python benchmarks/field_set.py ../shared/data/trashnet /tmp/field-all          # <class>/<name>.jpg
    python benchmarks/field_set.py ../shared/data/trashnet /tmp/field-all --limit 5  # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 512, 384  # TrashNet's own size
BACKGROUNDS = ("wood", "bin", "concrete", "conveyor", "clutter", "fabric")


def rng_for(name: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Noise in 0..1 with features about 1/cells of the frame wide."""
    small = rng.random((max(2, cells * HEIGHT // WIDTH), cells)).astype(np.float32)
    return cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def background(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A WIDTHxHEIGHT BGR float image in 0..255 of the given kind."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    if kind == "wood":
        angle = rng.uniform(-0.3, 0.3)
        along = x * np.cos(angle) + y * np.sin(angle)
        grain = np.sin(along / rng.uniform(4, 12) + 6 * smooth_noise(rng, 6)) * 0.5 + 0.5
        base = np.array(rng.uniform([30, 60, 100], [70, 110, 170]), np.float32)  # browns (BGR)
        image = base * (0.7 + 0.5 * grain[..., None])
    elif kind == "bin":
        base = np.array(rng.choice([[40, 40, 40], [40, 70, 30], [80, 50, 20], [30, 30, 90]]), np.float32)
        shade = 0.6 + 0.8 * smooth_noise(rng, 3)
        image = base * shade[..., None]
    elif kind == "concrete":
        grey = rng.uniform(90, 170)
        texture = 0.5 * smooth_noise(rng, 40) + 0.3 * smooth_noise(rng, 12) + 0.2 * smooth_noise(rng, 4)
        image = np.repeat((grey * (0.6 + 0.8 * texture))[..., None], 3, axis=2)
    elif kind == "conveyor":
        ribs = (np.sin(y / rng.uniform(3, 9)) > 0.6).astype(np.float32)
        grey = rng.uniform(25, 70)
        image = np.repeat((grey * (1 + 0.5 * ribs) * (0.8 + 0.4 * smooth_noise(rng, 8)))[..., None], 3, axis=2)
    elif kind == "clutter":
        image = np.full((HEIGHT, WIDTH, 3), rng.uniform(60, 160, 3), np.float32)
        for _ in range(rng.integers(15, 40)):
            centre = (int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT)))
            axes = (int(rng.integers(10, 120)), int(rng.integers(10, 80)))
            cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, rng.uniform(0, 255, 3).tolist(), -1)
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(2, 6))
    elif kind == "fabric":
        period = rng.uniform(8, 30)
        checks = ((np.floor(x / period) + np.floor(y / period)) % 2)[..., None]
        a, b = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
        image = a * checks + b * (1 - checks)
        image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.5)
    else:
        raise ValueError(f"unknown background {kind}")
    return image.astype(np.float32)


def item_mask(bgr: np.ndarray) -> np.ndarray | None:
    """A 0..1 mask of the item in a TrashNet photo, or None when the item fills the frame."""
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
    border = np.concatenate([lab[:8].reshape(-1, 3), lab[-8:].reshape(-1, 3),
                             lab[:, :8].reshape(-1, 3), lab[:, -8:].reshape(-1, 3)])
    board = np.median(border, axis=0)
    light_and_plain = board[0] > 140 and abs(board[1] - 128) < 12 and abs(board[2] - 128) < 14
    if not light_and_plain:
        return None
    # Shadows on the board are darker but as grey as it: lightness counts for less than colour.
    difference = lab - board
    distance = np.sqrt((0.35 * difference[..., 0]) ** 2 + difference[..., 1] ** 2 + difference[..., 2] ** 2)
    mask = ((distance > 14) | (difference[..., 0] < -70)).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel, iterations=2)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] > 0.01 * mask.size]
    mask = np.isin(labels, keep).astype(np.uint8)
    outside = mask.copy()  # fill holes: what the border's flood fill cannot reach is inside the item
    flood = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.uint8)
    cv2.floodFill(outside, flood, (0, 0), 1)
    mask = mask | (1 - outside)
    share = mask.mean()
    if not 0.04 < share < 0.9:
        return None
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.0)


def field_image(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo's item on a generated background under other light; BGR uint8, WIDTHxHEIGHT."""
    bgr = cv2.resize(bgr, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    scene = background(str(rng.choice(BACKGROUNDS)), rng)
    mask = item_mask(bgr)
    if mask is None:  # the item fills the photo: the whole photo, smaller, lies on the background
        mask = np.ones(bgr.shape[:2], np.float32)
        mask[:4], mask[-4:], mask[:, :4], mask[:, -4:] = 0, 0, 0, 0
        mask = cv2.GaussianBlur(mask, (0, 0), 2.0)
        scale = rng.uniform(0.55, 0.8)
    else:
        scale = rng.uniform(0.65, 1.0)
    w, h = int(WIDTH * scale), int(HEIGHT * scale)
    item = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)[..., None]
    if rng.random() < 0.5:
        item, alpha = item[:, ::-1], alpha[:, ::-1]
    left, top = int(rng.integers(0, WIDTH - w + 1)), int(rng.integers(0, HEIGHT - h + 1))
    region = scene[top:top + h, left:left + w]
    scene[top:top + h, left:left + w] = alpha * item + (1 - alpha) * region
    return relight(scene, rng)


def relight(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another light: colour cast, gamma, brightness, vignette, sometimes blur, sensor noise."""
    image = image * rng.uniform(0.75, 1.25, 3).astype(np.float32)  # colour cast, per channel
    image = 255.0 * (image.clip(0, 255) / 255.0) ** rng.uniform(0.7, 1.4)
    image *= rng.uniform(0.6, 1.15)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    radius = np.hypot((x - WIDTH / 2) / WIDTH, (y - HEIGHT / 2) / HEIGHT)
    image *= (1 - rng.uniform(0, 0.8) * radius ** 2)[..., None]
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 1.6))
    image += rng.normal(0, rng.uniform(1, 7), image.shape).astype(np.float32)
    return image.clip(0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="a folder of <class>/<image> photos (TrashNet)")
    parser.add_argument("out", type=Path, help="folder to write <class>/<name>.jpg into")
    parser.add_argument("--seed", type=int, default=15, help="changes every field image")
    parser.add_argument("--limit", type=int, default=0, help="at most this many photos per class (0: all)")
    args = parser.parse_args(argv)
    classes = sorted(p.name for p in args.photos.iterdir() if p.is_dir())
    written = 0
    for name in classes:
        photos = sorted((args.photos / name).glob("*.jpg"))[: args.limit or None]
        (args.out / name).mkdir(parents=True, exist_ok=True)
        for photo in photos:
            bgr = cv2.imread(str(photo))
            if bgr is None:
                print(f"warning: skipping {photo}: not readable", file=sys.stderr)
                continue
            image = field_image(bgr, rng_for(f"{name}/{photo.name}", args.seed))
            cv2.imwrite(str(args.out / name / photo.name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            written += 1
        print(f"{name}: {len(photos)} field image(s)", flush=True)
    print(f"{written} field images in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
