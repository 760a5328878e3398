"""A small made-up waste photo set, so the demo and the tests need no download.

Each class is drawn with its own shape and colour on a random background, at a
random place, size and angle, with sensor-like noise: easy, but not trivial.

    python -m binbot.train.synthetic OUT_DIR [--per-class N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("bottle", "can", "paper")


def draw(kind: str, rng: np.random.Generator, width: int = 160, height: int = 120) -> np.ndarray:
    """One RGB uint8 picture of a bottle, can or paper."""
    background = rng.integers(60, 200, size=3)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = background
    centre = (int(rng.uniform(0.35, 0.65) * width), int(rng.uniform(0.35, 0.65) * height))
    scale = rng.uniform(0.25, 0.4) * height
    angle = rng.uniform(-30, 30)
    if kind == "bottle":  # green glass: a tall body and a neck
        colour = (int(rng.integers(20, 60)), int(rng.integers(130, 200)), int(rng.integers(40, 90)))
        body = cv2.boxPoints((centre, (scale * 0.8, scale * 1.6), angle))
        tilt = np.radians(angle)  # the neck sits on the body's axis, above it
        neck_centre = (centre[0] + scale * np.sin(tilt), centre[1] - scale * np.cos(tilt))
        neck = cv2.boxPoints((neck_centre, (scale * 0.3, scale * 0.8), angle))
        for part in (body, neck):
            cv2.fillPoly(image, [part.astype(np.int32)], colour)
    elif kind == "can":  # metal: a grey disc with a bright rim
        grey = int(rng.integers(150, 210))
        cv2.circle(image, centre, int(scale * 0.7), (grey, grey, grey + 20 if grey < 235 else 255), -1)
        cv2.circle(image, centre, int(scale * 0.7), (250, 250, 250), max(2, int(scale * 0.08)))
    elif kind == "paper":  # a white sheet with dark lines of text
        sheet = cv2.boxPoints((centre, (scale * 1.5, scale * 1.1), angle)).astype(np.int32)
        cv2.fillPoly(image, [sheet], (245, 245, 235))
        for row in range(4):
            y = int(centre[1] - scale * 0.35 + row * scale * 0.22)
            cv2.line(image, (int(centre[0] - scale * 0.5), y), (int(centre[0] + scale * 0.5), y), (40, 40, 60), 2)
    else:
        raise ValueError(f"unknown synthetic class {kind!r}; choose from {CLASSES}")
    noise = rng.normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def write_dataset(out: str | Path, per_class: int = 30, classes: tuple[str, ...] = CLASSES, seed: int = 0,
                  width: int = 160, height: int = 120) -> Path:
    """Write out/<class>/<n>.jpg and return out."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    for kind in classes:
        (out / kind).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            rgb = draw(kind, rng, width, height)
            cv2.imwrite(str(out / kind / f"{kind}_{n:03d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a small synthetic <class>/<image>.jpg set.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_dataset(args.out, args.per_class, seed=args.seed)
    print(f"wrote {args.per_class} images each of {', '.join(CLASSES)} to {args.out}/")


if __name__ == "__main__":
    main()
