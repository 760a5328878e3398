"""The daemon on real photos: accuracy, sustained speed and memory of `binbot run`.

Replays a run's validation photos (its split.json) through `binbot run` as a subprocess and reports:
  - accuracy of the daemon's per-frame results against `binbot classify` on the same photos;
  - sustained fps of the daemon against the bare interpreter's invoke rate at the same threads
    (target: at least 90%);
  - the daemon's resident memory after 100 frames and after --frames frames (target: under 100 MB,
    no growth).
Prints a Markdown table; timing is measured here, never asserted in tests.

    python benchmarks/daemon_trashnet.py [--bundle B] [--split S] [--threads N] [--frames 10000]

Defaults are the sibling runs folder of the repository (../runs): the best run's split and its
int8 bundle, or the seed bundle if the best one has not been converted yet.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from daemon_process import BINBOT, running_daemon  # benchmarks/daemon_process.py, beside this script

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO.parent / "runs"


def default_bundle() -> Path:
    best = RUNS / "bundles" / "best" / "int8"
    return best if best.is_dir() else RUNS / "bundles" / "seed" / "int8"


def replay_folder(split: Path, folder: Path) -> dict[str, str]:
    """Symlinks to the validation photos, named so replay's name order is the split's; {link: true class}."""
    data = json.loads(split.read_text())
    truth = {}
    for n, example in enumerate(data["validation"]):
        source = Path(example["path"])
        link = folder / f"{n:05d}{source.suffix.lower()}"
        link.symlink_to(source)
        truth[str(link)] = data["class_names"][example["label"]]
    return truth


def classify_accuracy(bundle: Path, folder: Path, truth: dict[str, str], threads: int, out: Path) -> dict[str, str]:
    subprocess.run([*BINBOT, "classify", str(bundle), str(folder), "--threads", str(threads), "--json", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return {r["image"]: r["label"] for r in json.loads(out.read_text())["results"]}


def daemon_once(bundle: Path, folder: Path, threads: int, results: Path) -> dict[str, str]:
    """Every photo once through the daemon; {photo: label} from its per-frame results."""
    subprocess.run([*BINBOT, "run", "--bundle", str(bundle), "--source", f"replay:{folder}", "--once", "--http", "off",
                    "--threads", str(threads), "--results", str(results), "--events", os.devnull],
                   check=True, stderr=subprocess.DEVNULL)
    return {r["origin"]: r["label"] for r in map(json.loads, results.read_text().splitlines())}


def bare_invoke_rate(bundle: Path, threads: int, seconds: float = 5.0) -> float:
    from binbot.device.bundle import load_bundle, read_selftest_inputs

    loaded = load_bundle(bundle, threads)
    classifier = loaded.classifier
    classifier.set_input(read_selftest_inputs(loaded.bundle)[0])
    for _ in range(20):
        classifier.invoke()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        classifier.invoke()
        count += 1
    return count / (time.perf_counter() - start)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def frames_classified(url: str) -> int:
    """The daemon's frame count from /healthz, which answers 503 (with the same JSON) until frames flow."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            return json.loads(response.read())["frames"]
    except urllib.error.HTTPError as error:
        return json.loads(error.read())["frames"]


def daemon_sustained(bundle: Path, folder: Path | None, threads: int, frames: int, log: Path) -> dict:
    """The daemon looping over the photos (or, folder None, the bundle's in-memory self-test frames):
    fps between frame 100 and `frames`, RSS at both."""
    source = ["--source", f"replay:{folder}"] if folder else []
    with running_daemon(["--bundle", str(bundle), *source, "--threads", str(threads)], log) as (process, url):
        marks = {}
        for target in (100, frames):
            while True:
                count = frames_classified(url)
                if count >= target:
                    marks[target] = (count, time.monotonic(), rss_mb(process.pid))
                    break
                time.sleep(0.02 if target == 100 else 0.2)
    (n0, t0, rss0), (n1, t1, rss1) = marks[100], marks[frames]
    return {"fps": (n1 - n0) / (t1 - t0), "rss_100": rss0, "rss_end": rss1, "frames": n1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=default_bundle(), help="int8 bundle (default: %(default)s)")
    parser.add_argument("--split", type=Path, default=RUNS / "best" / "split.json",
                        help="split.json whose validation photos are replayed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="interpreter threads (default: all cores)")
    parser.add_argument("--frames", type=int, default=10_000, help="frames for the speed and memory run")
    args = parser.parse_args()
    if args.frames // 4 <= 100:  # both runs measure from frame 100 on; the in-memory one runs a quarter as long
        parser.error("--frames must be at least 404")

    with tempfile.TemporaryDirectory(prefix="binbot-bench-") as scratch:
        scratch = Path(scratch)
        folder = scratch / "photos"
        folder.mkdir()
        truth = replay_folder(args.split, folder)
        by_classify = classify_accuracy(args.bundle, folder, truth, args.threads, scratch / "classify.json")
        by_daemon = daemon_once(args.bundle, folder, args.threads, scratch / "results.jsonl")
        bare = bare_invoke_rate(args.bundle, args.threads)
        sustained = daemon_sustained(args.bundle, folder, args.threads, args.frames, scratch / "daemon.log")
        # Without JPEG decoding, which a Pi camera's lores stream does not need either.
        in_memory = daemon_sustained(args.bundle, None, args.threads, args.frames // 4, scratch / "memory.log")

    def accuracy(labels: dict[str, str]) -> float:
        return sum(labels.get(photo) == label for photo, label in truth.items()) / len(truth)

    agree = sum(by_classify.get(p) == by_daemon.get(p) for p in truth) / len(truth)
    print(f"bundle {args.bundle}, {len(truth)} validation photos from {args.split}, {args.threads} thread(s)\n")
    print("| measure | value | target |\n|---|---|---|")
    print(f"| accuracy, `binbot classify` | {accuracy(by_classify):.2%} | |")
    print(f"| accuracy, `binbot run` per-frame results | {accuracy(by_daemon):.2%} | equal to classify |")
    print(f"| photos where daemon and classify agree | {agree:.2%} ({len(by_daemon)} of {len(truth)} classified) | 100% |")
    print(f"| bare interpreter invoke rate | {bare:.1f} /s | |")
    print(f"| daemon sustained fps (frames 100..{sustained['frames']}) | {sustained['fps']:.1f} "
          f"({sustained['fps'] / bare:.0%} of bare) | >= 90% |")
    print(f"| daemon fps on in-memory frames, no decoding (frames 100..{in_memory['frames']}) | "
          f"{in_memory['fps']:.1f} ({in_memory['fps'] / bare:.0%} of bare) | >= 90% |")
    print(f"| daemon RSS after 100 frames | {sustained['rss_100']:.1f} MB | < 100 MB |")
    print(f"| daemon RSS after {sustained['frames']} frames | {sustained['rss_end']:.1f} MB "
          f"({sustained['rss_end'] - sustained['rss_100']:+.1f} MB) | < 100 MB, no growth |")


if __name__ == "__main__":
    main()
