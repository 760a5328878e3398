"""The Python steps of tests/pi_check.sh, which runs them on this machine and in the emulated arm64 root.

    small-cnn IMAGES RUN            train the test suite's small CNN on IMAGES/<class>/ into RUN (x86 only)
    model-inputs BUNDLE IMAGES OUT  decode and resize every image under IMAGES as the bundle says, as PNGs in OUT
    same-pixels X86 ARM64 BUNDLE    check both sides' model-size inputs are identical, if the bundle's resize is exact
    compare WORK ROOT RUNTIME_TOLERANCE TOLERANCE
                                    compare x86's and arm64's classify results in WORK (arm64 paths under ROOT)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from binbot.device.bundle import read_bundle
from binbot.device.frames import IMAGE_SUFFIXES, load_model_input

SMALL_CNN_SIZE = 96
EXACT_POLICY = "stretch-area-exact"  # a literal: a bundle of this name must give identical pixels everywhere


def small_cnn(images: Path, run: Path) -> None:
    """MobileNetV2 without ImageNet weights gives every image the same scores, which would make the
    comparison pass whatever arm64 computes; this CNN of the same kinds of layers trains in seconds."""
    from conftest import train_small_cnn  # the test suite's, so pi-check and the tests share one model

    train_small_cnn(images, run, SMALL_CNN_SIZE)
    print(f"trained the test suite's small CNN at {SMALL_CNN_SIZE}x{SMALL_CNN_SIZE} on {images}")


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def model_inputs(bundle_path: Path, images: Path, out: Path) -> None:
    bundle = read_bundle(bundle_path)
    files = image_files(images)
    for path in files:
        saved = out / path.relative_to(images).with_suffix(".png")
        saved.parent.mkdir(parents=True, exist_ok=True)
        rgb = load_model_input(path, bundle.height, bundle.width, bundle.resize_policy)
        cv2.imwrite(str(saved), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    print(f"{len(files)} images resized to {bundle.height}x{bundle.width} by {bundle.resize_policy!r}, saved as PNG")


def same_pixels(x86: Path, arm: Path, bundle_path: Path) -> bool:
    """Whether decoding and resizing gave both sides the same pixels, as the bundle's policy promises."""
    policy = read_bundle(bundle_path).resize_policy
    files = image_files(x86)
    if [p.relative_to(x86) for p in files] != [p.relative_to(arm) for p in image_files(arm)]:
        sys.exit(f"pi_check.py: error: {x86} and {arm} hold different files")
    differing, largest = 0, 0
    for path in files:
        a, b = (cv2.imread(str(side / path.relative_to(x86)), cv2.IMREAD_UNCHANGED) for side in (x86, arm))
        difference = int(np.abs(a.astype(int) - b).max()) if a.shape == b.shape else 255
        differing += difference > 0
        largest = max(largest, difference)
    exact = policy == EXACT_POLICY
    ok = differing == 0 or not exact
    print(f"{'ok  ' if ok else 'FAIL'} decode and resize ({policy!r}): {len(files) - differing}/{len(files)} images "
          f"identical on x86 and arm64, largest difference {largest} level(s)"
          + ("" if exact else " (this policy is not bit-exact across CPUs; the image-file check below decides)"))
    return ok


def compare(work: Path, root: str, runtime_tolerance: float, tolerance: float) -> bool:
    """Print how far arm64's classify results are from x86's, for the model-size inputs and the files."""
    model = json.loads((work / "x86-files.json").read_text())["model"]
    print(f"model {model}")
    return all([
        _compare_results(work, root, "inputs", "the same model-size inputs (the runtime)", runtime_tolerance),
        _compare_results(work, root, "files", "the image files (decode, resize, runtime)", tolerance),
    ])


def _compare_results(work: Path, root: str, kind: str, what: str, limit: float) -> bool:
    x86, arm = (json.loads((work / f"{side}-{kind}.json").read_text()) for side in ("x86", "arm64"))
    if x86["model"] != arm["model"]:
        sys.exit(f"pi_check.py: error: model ids differ: x86 {x86['model']}, arm64 {arm['model']}")
    if not len(x86["results"]) == len(arm["results"]) > 0:
        sys.exit(f"pi_check.py: error: x86 and arm64 classified different {kind}")
    # Identical scores for every image would let a broken arm64 side match by chance: no proof.
    if len(x86["results"]) > 1 and len({r["top"][0]["p"] for r in x86["results"]}) == 1:
        sys.exit("pi_check.py: error: the model gives every image the same scores, so agreeing proves nothing: "
                 "use another bundle")
    agree, largest, differing = 0, 0.0, []
    for a, b in zip(x86["results"], arm["results"]):
        if a["image"].removeprefix(root) != b["image"]:
            sys.exit(f"pi_check.py: error: images differ: {a['image']} and {b['image']}")
        agree += a["label"] == b["label"]
        pa, pb = ({t["label"]: t["p"] for t in r["top"]} for r in (a, b))
        difference = max(abs(pa[k] - pb[k]) for k in pa)
        largest = max(largest, difference)
        if difference:
            differing.append(f"    {b['image'].removeprefix('/pi-check/')}: x86 {a['label']} {pa[a['label']]:.4f}, "
                             f"arm64 {b['label']} {pb[b['label']]:.4f} (largest difference {difference:.4f})")
    n = len(x86["results"])
    ok = agree == n and largest <= limit
    print(f"{'ok  ' if ok else 'FAIL'} {what}: labels agree on {agree}/{n}, largest probability difference "
          f"{largest:.4f} (tolerance {limit:g}), {len(differing)} differ at all")
    if differing:
        print("\n".join(differing[:10]))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(prog="pi_check.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("small-cnn").add_argument("paths", type=Path, nargs=2)
    steps.add_parser("model-inputs").add_argument("paths", type=Path, nargs=3)
    steps.add_parser("same-pixels").add_argument("paths", type=Path, nargs=3)
    step = steps.add_parser("compare")
    step.add_argument("work", type=Path)
    step.add_argument("root")
    step.add_argument("runtime_tolerance", type=float)
    step.add_argument("tolerance", type=float)
    args = parser.parse_args()
    if args.step == "small-cnn":
        small_cnn(*args.paths)
    elif args.step == "model-inputs":
        model_inputs(*args.paths)
    elif args.step == "same-pixels":
        return 0 if same_pixels(*args.paths) else 1
    elif not compare(args.work, args.root, args.runtime_tolerance, args.tolerance):
        print("pi_check.py: error: arm64 results differ from x86 beyond the tolerance", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
