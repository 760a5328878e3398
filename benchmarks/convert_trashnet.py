"""Convert a checkpoint in every mode and compare size, accuracy and invoke latency with a reference model.

    python benchmarks/convert_trashnet.py RUN/model.keras               # bundles in RUN/bundles/<mode>/
    python benchmarks/convert_trashnet.py RUN/model.keras --out DIR
    python benchmarks/convert_trashnet.py RUN/model.keras --reuse       # measure existing bundles again, convert none

Each mode is converted by `binbot convert` in its own process, one after another (with --allow-drop,
so every row is filled; the drop is in the table). The accuracy figures are the ones each bundle
records: the checkpoint and the .tflite on the run's validation split. Latency is the median time
of interpreter.invoke() for one image with the LiteRT interpreter, at 1 and 2 threads; the models
take turns, round after round, so a busy machine slows them all alike. This script itself never
imports TensorFlow. It writes benchmark.json and benchmark.md beside the bundles.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from binbot.device.bundle import MODEL, MODES, load_bundle
from binbot.device.runtime import load_interpreter, runtime_name

# The team's shared folder sits beside the repository.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "models" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a model.keras from binbot train (with split.json beside it)")
    parser.add_argument("--out", type=Path, help="folder for the bundles (default: bundles/ beside the checkpoint)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="a .tflite to compare latency with")
    parser.add_argument("--rounds", type=int, default=200, help="timed invokes of each model per thread count")
    parser.add_argument("--reuse", action="store_true", help="do not convert; measure the bundles already in --out")
    args = parser.parse_args()
    out = args.out or args.checkpoint.resolve().parent / "bundles"

    if not args.reuse:
        for mode in args.modes:
            convert(args.checkpoint, out / mode, mode)
    rows = [describe(out / mode) for mode in args.modes]
    models = {row["mode"]: out / row["mode"] / MODEL for row in rows}
    if args.reference.is_file():
        models["reference"] = args.reference
    load_before = os.getloadavg()[0]  # other work on the machine slows every model; the ratios hold better
    for threads in (1, 2):
        for name, median in time_invokes(models, threads, args.rounds).items():
            row = next((r for r in rows if r["mode"] == name), None)
            if row is None:
                row = {"mode": name, "bytes": args.reference.stat().st_size}
                rows.append(row)
            row[f"invoke_ms_{threads}"] = median
    report = {
        "checkpoint": str(args.checkpoint.resolve()),
        "reference": str(args.reference) if args.reference.is_file() else None,
        "runtime": runtime_name(load_interpreter(next(iter(models.values())), threads=1)),
        "rounds": args.rounds,
        "load_average": round(load_before, 2),
        "rows": rows,
    }
    table = markdown(report)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "benchmark.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out}/benchmark.json and benchmark.md")


def convert(checkpoint: Path, bundle: Path, mode: str) -> None:
    binbot = Path(sys.executable).parent / "binbot"
    command = [str(binbot), "convert", str(checkpoint), "--out", str(bundle), "--mode", mode, "--force", "--allow-drop"]
    print("$", " ".join(command), flush=True)
    started = time.monotonic()
    subprocess.run(command, check=True)
    print(f"({mode} converted in {time.monotonic() - started:.0f} s)\n", flush=True)


def describe(bundle: Path) -> dict:
    """One table row from a bundle that verifies, with the figures it recorded."""
    loaded = load_bundle(bundle, threads=1)
    manifest = loaded.bundle.manifest
    validation = manifest["validation"]
    return {
        "mode": loaded.bundle.mode,
        "bundle": str(bundle),
        "id": loaded.bundle.id,
        "bytes": manifest["files"][MODEL]["bytes"],
        "images": validation["images"],
        "keras_accuracy": validation["keras_accuracy"],
        "tflite_accuracy": validation["tflite_accuracy"],
        "drop_points": validation["accuracy_drop_points"],
        "agreement": validation["agreement"],
        "max_probability_difference": validation["max_probability_difference"],
    }


def time_invokes(models: dict[str, Path], threads: int, rounds: int) -> dict[str, float]:
    """Median milliseconds of one invoke per model, the models taking turns each round."""
    interpreters = {name: load_interpreter(path, threads) for name, path in models.items()}
    rng = np.random.default_rng(0)
    for interpreter in interpreters.values():
        details = interpreter.get_input_details()[0]
        frame = rng.integers(0, 256, details["shape"]).astype(details["dtype"])
        interpreter.set_tensor(details["index"], frame)
        for _ in range(10):  # warm-up: first invokes pack weights and fill caches
            interpreter.invoke()
    times: dict[str, list[float]] = {name: [] for name in interpreters}
    for _ in range(rounds):
        for name, interpreter in interpreters.items():
            started = time.perf_counter()
            interpreter.invoke()
            times[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def markdown(report: dict) -> str:
    rows = report["rows"]
    reference = next((r for r in rows if r["mode"] == "reference"), None)
    lines = [
        f"Checkpoint `{report['checkpoint']}`; latency: {report['runtime']}, median of {report['rounds']} invokes "
        f"(machine load average {report['load_average']} when timing began).",
        "",
        "| mode | model.tflite | Keras acc. | TFLite acc. | drop (points) | top-1 agreement | invoke 1 thread | "
        "invoke 2 threads | vs reference (1 / 2 threads) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = "" if reference is None else (
            f"{row['invoke_ms_1'] / reference['invoke_ms_1']:.2f}x / {row['invoke_ms_2'] / reference['invoke_ms_2']:.2f}x"
        )
        accuracy = [f"{row['keras_accuracy']:.2%}", f"{row['tflite_accuracy']:.2%}", f"{row['drop_points']:+.2f}",
                    f"{row['agreement']:.2%}"] if "agreement" in row else ["", "", "", ""]
        cells = [row["mode"], f"{row['bytes'] / 1e6:.2f} MB", *accuracy,
                 f"{row['invoke_ms_1']:.2f} ms", f"{row['invoke_ms_2']:.2f} ms", ratio]
        lines.append("| " + " | ".join(cells) + " |")
    if rows and "images" in rows[0]:
        lines.append(f"\nAccuracy on the run's {rows[0]['images']} validation images; drop = Keras minus TFLite.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
