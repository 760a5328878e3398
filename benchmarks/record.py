"""The project's performance record on this machine: a Markdown file with the date and the machine.

    python benchmarks/record.py [--bundles DIR] [--references A.tflite ...] [--photos DIR] [--out FILE]

Measures, all at 1 and 2 interpreter threads:
  1. the four modes of a bundle (DIR/int8, float16, dynamic, float32) and the reference models,
     side by side in one `binbot bench --compare` run (the models take turns frame by frame), on the
     int8 bundle's self-test frames (already at the input size, as a camera's lores stream is);
  2. the int8 bundle's per-frame path on photos, which are decoded and resized, in a second run;
  3. the daemon's sustained fps against the bare invoke rate (reusing daemon_trashnet.py): on
     frames from memory (the daemon's own overhead) and on JPEG photos (decoding included);
  4. how long `binbot run` takes from its start to sd_notify READY=1, through a real notify socket.
Then writes the tables, the performance targets and published Raspberry Pi figures (not measured
here, marked so). Timing is measured here, never asserted in tests. Run it on a quiet machine:
other work slows the figures, and the report shows the load average before and after.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from daemon_trashnet import bare_invoke_rate, daemon_sustained  # the sibling benchmark, not duplicated here

from binbot.device.bundle import MODEL
from binbot.files import write_text

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODES = ("int8", "float16", "dynamic", "float32")
PTQ_REFERENCE = "tf2_mobilenet_v2_1.0_224_ptq"  # the int8 target compares with this one
THREADS = (1, 2)
# The console script, as systemd starts it; else the same command through the interpreter.
SCRIPT = Path(sys.executable).parent / "binbot"
BINBOT = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "binbot"]

PUBLISHED = """\
## Raspberry Pi 4 and 5: published figures, not measured here

None of these was measured by this script or on a Raspberry Pi by this project. They come from
other people's setups (other models, runtimes, clocks and threads), so they give an order of
magnitude for a Pi, not a prediction of BinBot's figures on one.

| board | what was measured, as published | latency | source |
|---|---|---:|---|
| Raspberry Pi 4 (overclocked to 1950 MHz, 64-bit OS) | quantized MobileNet V2 classification, 224x224, TensorFlow Lite C++ app | 45.5 fps (about 22 ms a frame) | Q-engineering, github.com/Qengineering/TensorFlow_Lite_Classification_RPi_64-bits (README, "Benchmark") — not measured here |
| Raspberry Pi 4 | MobileNet v2 SSD detector (COCO, 300x300), TensorFlow Lite | 112.6 ms | A. Allan, github.com/aallan/benchmarking-ml-on-the-edge (README table) — not measured here |
| Raspberry Pi 5 | the same MobileNet v2 SSD detector and script, TensorFlow Lite | 23.5 ms | A. Allan, same table; article "Benchmarking TensorFlow and TensorFlow Lite on Raspberry Pi 5", hackster.io (2024) — not measured here |

The detector does more work than BinBot's classifier (300x300 input, detection head), and its
precision is not stated there; the Pi 5 ran it 4.8x faster than the Pi 4 in the same benchmark.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", type=Path, default=REPO.parent / "runs" / "bundles" / "best",
                        help="folder holding the int8, float16, dynamic and float32 bundles (default: %(default)s)")
    parser.add_argument("--references", type=Path, nargs="*",
                        default=sorted((SHARED / "models").glob("*.tflite")),
                        help="plain .tflite models to compare with (default: the .tflite files in ../shared/models)")
    parser.add_argument("--photos", type=Path, default=SHARED / "data" / "trashnet",
                        help="folder of photos to replay (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RECORD.md", help="the Markdown record")
    parser.add_argument("--runs", type=int, default=300, help="timed frames per model and thread count")
    parser.add_argument("--daemon-frames", type=int, default=3000, help="frames of each sustained daemon run")
    parser.add_argument("--ready-starts", type=int, default=5, help="daemon starts timed to READY=1")
    args = parser.parse_args()
    bundles = [args.bundles / mode for mode in MODES]
    int8 = bundles[0]
    for path in (*bundles, *args.references, args.photos):
        if not path.exists():
            raise SystemExit(f"record: {path}: not found")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="binbot-record-") as scratch:
        scratch = Path(scratch)
        models = bench([*bundles], args.references, "", args.runs, scratch / "models.json")
        photos = bench([int8], [], f"replay:{args.photos}", args.runs, scratch / "photos.json")
        daemon = {threads: daemon_figures(int8, args.photos, threads, args.daemon_frames, scratch) for threads in THREADS}
        ready = ready_seconds(int8, args.ready_starts, scratch)
    load_after = os.getloadavg()

    record = markdown(models, photos, daemon, ready, operators([*(b / MODEL for b in bundles), *args.references]),
                      (load_before, load_after), args)
    write_text(args.out, record)
    print(record)
    print(f"wrote {args.out}", file=sys.stderr)


def bench(bundles: list[Path], references: list[Path], source: str, runs: int, out: Path) -> dict:
    """`binbot bench --compare` at 1 and 2 threads; its JSON report."""
    command = [*BINBOT, "bench", *map(str, bundles), "--threads", ",".join(map(str, THREADS)), "--compare",
               "--runs", str(runs), "--warmup", "30", "--json", str(out)]
    for reference in references:
        command += ["--reference", str(reference)]
    if source:
        command += ["--source", source]
    print("$", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def daemon_figures(bundle: Path, photos: Path, threads: int, frames: int, scratch: Path) -> dict:
    """Bare invoke rate (before and after, averaged) and the daemon's sustained fps from memory and on photos."""
    print(f"daemon at {threads} thread(s): bare invokes, then {frames} frames from memory and from photos",
          file=sys.stderr, flush=True)
    before = bare_invoke_rate(bundle, threads)
    memory = daemon_sustained(bundle, None, threads, frames, scratch / f"memory{threads}.log")
    jpeg = daemon_sustained(bundle, photos, threads, frames, scratch / f"photos{threads}.log")
    after = bare_invoke_rate(bundle, threads)
    return {"bare": (before + after) / 2, "bare_before": before, "bare_after": after, "memory": memory, "photos": jpeg}


def ready_seconds(bundle: Path, starts: int, scratch: Path) -> list[float]:
    """Seconds from starting `binbot run` to its READY=1, once per start, through a notify socket as systemd's."""
    folder = Path(tempfile.mkdtemp(prefix="binbot-notify-"))  # short: unix socket paths are limited to 108 bytes
    try:
        times = []
        for n in range(starts):
            print(f"daemon start {n + 1} of {starts}: time to READY=1", file=sys.stderr, flush=True)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
                path = folder / f"notify{n}"
                notify.bind(str(path))
                notify.settimeout(0.2)
                log = scratch / f"ready{n}.log"
                with open(log, "w") as log_file:
                    started = time.monotonic()
                    process = subprocess.Popen([*BINBOT, "run", "--bundle", str(bundle), "--http", "off",
                                                "--events", os.devnull], stdout=subprocess.DEVNULL, stderr=log_file,
                                               env={**os.environ, "NOTIFY_SOCKET": str(path)})
                try:
                    times.append(wait_for_ready(notify, process, log) - started)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
        return times
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_ready(notify: socket.socket, process: subprocess.Popen, log: Path, timeout: float = 60) -> float:
    """time.monotonic() when READY=1 arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = notify.recv(4096).decode()
        except socket.timeout:
            if process.poll() is not None:
                raise SystemExit(f"binbot run exited before READY=1:\n{log.read_text()}") from None
            continue
        if "READY=1" in message.splitlines():
            return time.monotonic()
    raise SystemExit(f"binbot run sent no READY=1 within {timeout:g} s:\n{log.read_text()}")


def operators(models: list[Path]) -> dict[str, collections.Counter]:
    """Each model's operators by kind, as written in the file (before any delegate takes them)."""
    from binbot.device.runtime import load_interpreter

    counts = {}
    for path in models:
        interpreter = load_interpreter(path, threads=1)
        ops = [op["op_name"] for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
        counts[name_of(path)] = collections.Counter(ops)
    return counts


def name_of(path: Path) -> str:
    return path.parent.name if path.name == MODEL else path.stem


def results_by(report: dict) -> dict[tuple[str, int], dict]:
    return {(r["model"], r["threads"]): r for r in report["results"]}


def markdown(models: dict, photos: dict, daemon: dict, ready: list[float], ops: dict, load: tuple, args) -> str:
    box = models["machine"]
    by = results_by(models)
    names = list(dict.fromkeys(r["model"] for r in models["results"]))
    photo = results_by(photos)
    lines = [
        "# BinBot performance record",
        "",
        f"Measured {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `benchmarks/record.py` on "
        f"{box['cpu']}, {box['cores']} cores{', ' + box['board'] if box['board'] else ''}, {box['system']}; "
        f"{models['runtime']}, Python {box['python']}. Load average (1 min) {load[0][0]:.2f} before, "
        f"{load[1][0]:.2f} after. Bundles from `{args.bundles}`.",
        "",
        "## Performance targets, measured side by side on this machine",
        "",
        "| target | 1 thread | 2 threads | goal |",
        "|---|---:|---:|---|",
    ]

    def both(value, fmt) -> list[str]:
        return [fmt(value(t)) for t in THREADS]

    ratio = lambda a, b, t: by[(a, t)]["stages_ms"]["invoke"]["p50"] / by[(b, t)]["stages_ms"]["invoke"]["p50"]
    if PTQ_REFERENCE in names:
        lines.append("| int8 invoke / reference PTQ model invoke (p50) | " + " | ".join(
            both(lambda t: ratio("int8", PTQ_REFERENCE, t), lambda v: f"{v:.2f}x")) + " | <= 0.90x |")
    frame_ratio = lambda results, t: (results[("int8", t)]["stages_ms"]["frame"]["p50"]
                                      / results[("int8", t)]["stages_ms"]["invoke"]["p50"])
    lines += [
        "| int8 per-frame path / bare invoke (p50), frames at input size | " + " | ".join(
            both(lambda t: frame_ratio(by, t), lambda v: f"{v:.2f}x")) + " | <= 1.10x |",
        "| int8 per-frame path / bare invoke (p50), photos resized | " + " | ".join(
            both(lambda t: frame_ratio(photo, t), lambda v: f"{v:.2f}x")) + " | <= 1.10x |",
        "| daemon sustained fps / bare invoke rate, frames from memory | " + " | ".join(
            both(lambda t: daemon[t]["memory"]["fps"] / daemon[t]["bare"], lambda v: f"{v:.0%}")) + " | >= 90% |",
        "| daemon sustained fps / bare invoke rate, JPEG photos decoded | " + " | ".join(
            both(lambda t: daemon[t]["photos"]["fps"] / daemon[t]["bare"], lambda v: f"{v:.0%}")) + " | >= 90% |",
        "| float32 invoke / int8 invoke (p50) | " + " | ".join(
            both(lambda t: ratio("float32", "int8", t), lambda v: f"{v:.2f}x")) + " | >= 2x |",
        f"| `binbot run` start to READY=1 (first start; median of {len(ready)}) | {ready[0]:.2f} s; "
        f"{statistics.median(ready):.2f} s | | <= 2 s |",
        "",
        f"## Latency: every model in one run, taking turns frame by frame ({models['runs']} frames each)",
        "",
        f"Frames: {models['source']}. Invoke is `interpreter.invoke()`; the per-frame path adds preprocess "
        "(resize, copy into the input tensor) and postprocess (dequantize, smooth, top-k). Peak RSS is of a "
        "process serving that model alone.",
        "",
        "| model | file | XNNPACK | threads | invoke p50 | p90 | p99 | max | frame p50 | fps | CPU | peak RSS | load |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for threads in THREADS:
        for name in names:
            r = by[(name, threads)]
            invoke, frame = r["stages_ms"]["invoke"], r["stages_ms"]["frame"]
            size = Path(r["path"]).stat().st_size if r["kind"] == "reference" else (Path(r["path"]) / MODEL).stat().st_size
            xnn = r["xnnpack"]
            lines.append(
                f"| {name} | {size / 1e6:.2f} MB | {xnn['ops']}/{xnn['of']} ops | {threads} | {invoke['p50']:.2f} ms | "
                f"{invoke['p90']:.2f} | {invoke['p99']:.2f} | {invoke['max']:.2f} | {frame['p50']:.2f} ms | "
                f"{r['fps']:.0f} | {100 * r['cpu_use']:.0f}% | {r['peak_rss_mb']:.0f} MB | {r['load_ms']:.0f} ms |")
    lines += [
        "",
        f"## The int8 per-frame path on photos ({photos['runs']} frames; {photos['source']})",
        "",
        "| threads | capture (read, decode) | preprocess (resize) | invoke | postprocess | frame | frame / invoke |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for threads in THREADS:
        s = photo[("int8", threads)]["stages_ms"]
        lines.append(f"| {threads} | " + " | ".join(f"{s[k]['p50']:.3f} ms" for k in ("capture", "preprocess", "invoke",
                                                                                         "postprocess", "frame"))
                     + f" | {s['frame']['p50'] / s['invoke']['p50']:.2f}x |")
    lines += [
        "",
        f"## The daemon: sustained fps against the bare invoke rate (frames 100 to {args.daemon_frames})",
        "",
        "Bare: `interpreter.invoke()` in a loop on one frame, measured before and after the daemon runs. From "
        "memory: the bundle's self-test frames, already at the input size (no decoding, no resizing, as with a "
        "camera's lores stream), so this is the daemon's own overhead. JPEG photos: the replay decodes and "
        "resizes each photo on the capture thread, which competes for the same cores.",
        "",
        "| threads | bare invoke rate (before / after) | daemon, frames from memory | daemon, JPEG photos | RSS after 100 / all frames |",
        "|---:|---:|---:|---:|---:|",
    ]
    for threads in THREADS:
        d = daemon[threads]
        lines.append(
            f"| {threads} | {d['bare']:.0f} /s ({d['bare_before']:.0f} / {d['bare_after']:.0f}) | "
            f"{d['memory']['fps']:.0f} fps ({d['memory']['fps'] / d['bare']:.0%}) | "
            f"{d['photos']['fps']:.0f} fps ({d['photos']['fps'] / d['bare']:.0%}) | "
            f"{d['memory']['rss_100']:.0f} / {d['memory']['rss_end']:.0f} MB |")
    lines += [
        "",
        f"## Start to READY=1: `binbot run --bundle int8`, {len(ready)} starts",
        "",
        "From the process's start (Python, imports, bundle verification and self-test, first frame "
        "classified) to the READY=1 datagram on a unix socket given as NOTIFY_SOCKET: "
        + ", ".join(f"{t:.2f} s" for t in ready) + ".",
        "",
        "## Operators in each model (as written in the file)",
        "",
        "| model | operators | by kind |",
        "|---|---:|---|",
    ]
    for name, counts in ops.items():
        lines.append(f"| {name} | {sum(counts.values())} | "
                     + ", ".join(f"{kind} {n}" for kind, n in counts.most_common()) + " |")
    lines += ["", PUBLISHED]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
