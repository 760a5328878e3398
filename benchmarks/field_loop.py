"""One turn of the field loop, measured: keep -> collect -> label -> train --init -> convert.

The "field" is TrashNet's items on other backgrounds under other light (benchmarks/field_set.py).
The camera replays the field images of TrashNet's training photos; the field images of its validation
photos are held back for measuring. Every step is the user's own command:

1. `binbot convert` the base run to an int8 bundle; `binbot classify` it on the held-back field
   images and on TrashNet's validation photos.
2. `binbot run` with a [keep] table on the camera replay, as a Pi would: it keeps the frames it is
   unsure of, and a random sample, into a "Pi" folder.
3. `binbot collect` over ssh (a real sshd on loopback, as the deploy tests use) into FIELD/unlabelled.
4. `binbot label`'s HTTP API files each frame into FIELD/<class>, with the generator's label standing
   in for a person's (the class is in the replayed file's name, which the sidecar's origin keeps).
5. `binbot train --data PHOTOS --data FIELD --init BASE/model.keras`, then convert and classify again.

    python benchmarks/field_loop.py --base /work/runs/base --photos ../shared/data/trashnet --work /work/loop

It prints a table and each command it ran; --markdown FILE also writes them as a report.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the loopback sshd the deploy tests use

BINBOT = str(Path(sys.executable).with_name("binbot"))
SEED = 1337  # binbot train's default: the photos' validation split is the one the base run held out
COMMANDS: list[str] = []


def run(*args: str, **options) -> subprocess.CompletedProcess:
    shown = " ".join(str(a) for a in args)
    COMMANDS.append(shown)
    print(f"$ {shown}", flush=True)
    return subprocess.run([str(a) for a in args], check=True, **options)


def prepare_images(photos: Path, work: Path) -> tuple[Path, Path, Path]:
    """The camera's replay folder, the held-back field images and TrashNet's validation photos."""
    sys.path.insert(0, str(HERE))
    import field_set
    from binbot.device.imagefolder import scan
    from binbot.train.folder import stratified_split

    every_field = work / "field-all"
    if not (every_field / ".complete").exists():
        field_set.main([str(photos), str(every_field)])
        (every_field / ".complete").touch()
    images = scan(photos)
    train, val = stratified_split(images.examples, 0.2, SEED)
    camera, heldback, photos_val = work / "camera", work / "heldback", work / "photos-val"
    for folder in (camera, heldback, photos_val):
        shutil.rmtree(folder, ignore_errors=True)
    order = list(train)
    random.Random(SEED).shuffle(order)  # items come to a bin in no order
    camera.mkdir(parents=True)
    for n, example in enumerate(order):
        name = images.class_names[example.label]
        os.symlink(every_field / name / example.path.name, camera / f"{n:05d}-{name}-{example.path.name}")
    for example in val:
        name = images.class_names[example.label]
        for folder, source in ((heldback, every_field / name / example.path.name), (photos_val, example.path)):
            (folder / name).mkdir(parents=True, exist_ok=True)
            os.symlink(source, folder / name / example.path.name)
    return camera, heldback, photos_val


def accuracy(bundle: Path, images: Path, work: Path) -> float:
    """Top-1 accuracy of bundle on a <class>/<image> folder, from `binbot classify --json`."""
    out = work / f"classify-{bundle.name}-{images.name}.json"
    run(BINBOT, "classify", bundle, images, "--json", out, stdout=subprocess.DEVNULL)
    results = json.loads(out.read_text())["results"]
    return sum(Path(r["image"]).parent.name == r["label"] for r in results) / len(results)


def keep_on_the_pi(bundle: Path, camera: Path, pi: Path, fps: float, keep: dict, work: Path) -> int:
    """`binbot run` over the camera replay once, keeping frames into PI/kept; the number kept."""
    config = work / "keep.toml"
    config.write_text(f"""\
bundle = "{bundle}"
source = "replay:{camera}"
loop = false
fps = {fps}
http = "off"

[events]
file = "{work / 'events.jsonl'}"

[keep]
dir = "{pi / 'kept'}"
""" + "".join(f"{key} = {value}\n" for key, value in keep.items()))
    shutil.rmtree(pi, ignore_errors=True)
    pi.mkdir(parents=True)
    run(BINBOT, "run", "--config", config)
    return len(list((pi / "kept").glob("*.json")))


def collect(pi: Path, field: Path, work: Path) -> None:
    """`binbot collect` from the "Pi" over a real sshd on loopback."""
    from sshd import running_sshd  # tests/sshd.py

    shutil.rmtree(field, ignore_errors=True)
    shutil.rmtree(work / "sshd", ignore_errors=True)
    with running_sshd(work / "sshd") as server:
        run(BINBOT, "collect", "pi1", "-F", server["config"], "--remote-dir", pi, "--out", field)


def label_by_origin(field: Path) -> dict[str, int]:
    """File every collected frame through `binbot label`'s HTTP API, by the class in its origin's name."""
    process = subprocess.Popen([BINBOT, "label", str(field), "--http", "127.0.0.1:0"], stdout=subprocess.PIPE,
                               text=True)
    COMMANDS.append(f"binbot label {field} --http 127.0.0.1:0   (then POST /api/file per frame)")
    try:
        url = None
        for line in process.stdout:
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found:
                url = found.group(0)
                break
        if url is None:
            raise SystemExit("binbot label did not print its address")
        frames = json.load(urllib.request.urlopen(f"{url}/api/frames"))["frames"]
        filed: dict[str, int] = {}
        for frame in frames:
            name = Path(frame["origin"]).name.split("-")[1]  # 00042-glass-glass17.jpg
            request = urllib.request.Request(f"{url}/api/file", data=json.dumps({"id": frame["id"], "class": name}).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
            urllib.request.urlopen(request).read()
            filed[name] = filed.get(name, 0) + 1
        return filed
    finally:
        process.terminate()
        process.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="a `binbot train` run folder trained on --photos")
    parser.add_argument("--photos", type=Path, required=True, help="TrashNet: <class>/<image>")
    parser.add_argument("--work", type=Path, required=True, help="folder for everything the loop makes")
    parser.add_argument("--fps", type=float, default=20.0, help="the camera replay's frame rate")
    parser.add_argument("--interval", type=float, default=0.5, help="[keep] interval: seconds over which unsure "
                        "frames are coalesced (the camera replay shows a new item every frame)")
    parser.add_argument("--sample", type=float, default=0.1, help="[keep] sample: the share of frames kept at random")
    parser.add_argument("--train-args", default="--recipe finetune --epochs 2 --fine-tune-epochs 4 --class-weight none",
                        help="what else the retraining gets")
    parser.add_argument("--control", action="store_true",
                        help="also retrain the same way on the photos alone, to tell what the field frames gave "
                        "from what the retraining itself gave")
    parser.add_argument("--markdown", type=Path, help="also write the table and commands here")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    camera, heldback, photos_val = prepare_images(args.photos.resolve(), work)
    before = work / "base-bundle"
    if not before.exists():
        run(BINBOT, "convert", args.base / "model.keras", "--out", before, "--allow-drop")
    figures = {"before": (accuracy(before, heldback, work), accuracy(before, photos_val, work))}

    # No hourly or daily limit: the replay is a day's worth of items in minutes.
    keep = {"interval": args.interval, "sample": args.sample, "per_hour": 100_000, "per_day": 100_000}
    kept = keep_on_the_pi(before, camera, work / "pi", args.fps, keep, work)
    field = work / "field"
    collect(work / "pi", field, work)
    filed = label_by_origin(field)

    training_minutes = retrain(args, [args.photos, field], "after", figures, heldback, photos_val, work)
    if args.control:
        retrain(args, [args.photos], "control", figures, heldback, photos_val, work)

    report = render(figures, kept, filed, training_minutes, len(list(camera.iterdir())))
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    return 0


def retrain(args: argparse.Namespace, data: list[Path], name: str, figures: dict, heldback: Path, photos_val: Path,
            work: Path) -> float:
    """`binbot train --init` the base on data, convert, and add the bundle's accuracies to figures as name;
    the training's minutes."""
    run_folder, bundle = work / f"{name}-run", work / f"{name}-bundle"
    started = time.monotonic()
    run(BINBOT, "train", *[arg for folder in data for arg in ("--data", folder)], "--init", args.base / "model.keras",
        "--out", run_folder, "--force", *args.train_args.split())
    minutes = (time.monotonic() - started) / 60
    run(BINBOT, "convert", run_folder / "model.keras", "--out", bundle, "--allow-drop", "--force")
    figures[name] = (accuracy(bundle, heldback, work), accuracy(bundle, photos_val, work))
    return minutes


def render(figures: dict, kept: int, filed: dict[str, int], training_minutes: float, camera_frames: int) -> str:
    (field_before, photos_before), (field_after, photos_after) = figures["before"], figures["after"]
    control = []
    if "control" in figures:
        field_control, photos_control = figures["control"]
        control = [f"| control: the same retraining on the photos alone | {field_control:.2%} | {photos_control:.2%} |"]
    lines = [
        f"camera replay: {camera_frames} field frames; kept on the 'Pi': {kept}; labelled: "
        + ", ".join(f"{name} {n}" for name, n in sorted(filed.items())),
        f"retraining took {training_minutes:.1f} min",
        "",
        "| int8 bundle | held-back field images | TrashNet validation photos |",
        "|---|---:|---:|",
        f"| before (base run) | {field_before:.2%} | {photos_before:.2%} |",
        f"| after one loop | {field_after:.2%} | {photos_after:.2%} |",
        f"| change | {100 * (field_after - field_before):+.2f} points | {100 * (photos_after - photos_before):+.2f} points |",
        *control,
        "",
        "Commands:",
        "",
        *[f"    {command}" for command in COMMANDS],
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
