"""The training recipes and their default int8 bundles, measured on TrashNet runs.

For each `binbot train` run folder given: its recipe and class weight (config.json), validation
accuracy, per-class F1 and training time (metrics.json); then `binbot convert` with no flags (mixed
int8 when full int8 drops past the gate) and with `--no-mixed --allow-drop` (the full-integer model,
for comparison), each bundle's accuracy drop and float layers (bundle.json), and `binbot bench
--compare` of the two at 1 and 2 threads (invoke p50; the models alternate frame by frame, so a
busy machine slows both alike).

    python benchmarks/recipes_trashnet.py /work/runs/seed /work/runs/finetune --work /tmp/recipes \\
        --markdown benchmarks/RECIPES.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

BINBOT = str(Path(sys.executable).with_name("binbot"))
COMMANDS: list[str] = []


def run(*args) -> None:
    COMMANDS.append(" ".join(str(a) for a in args))
    print(f"$ {COMMANDS[-1]}", flush=True)
    subprocess.run([str(a) for a in args], check=True)


def convert(run_folder: Path, out: Path, *flags: str) -> dict:
    if not (out / "bundle.json").exists():
        run(BINBOT, "convert", run_folder / "model.keras", "--out", out, "--force", *flags)
    return json.loads((out / "bundle.json").read_text())


def invoke_p50(bench: dict, path: Path, threads: int) -> float:
    return next(r["stages_ms"]["invoke"]["p50"] for r in bench["results"]
                if Path(r["path"]) == path and r["threads"] == threads)


def measure(run_folder: Path, work: Path, runs: int) -> dict:
    config = json.loads((run_folder / "config.json").read_text())
    metrics = json.loads((run_folder / "metrics.json").read_text())
    mixed_path, full_path = work / f"{run_folder.name}-default", work / f"{run_folder.name}-full-int8"
    mixed = convert(run_folder, mixed_path)
    full = convert(run_folder, full_path, "--no-mixed", "--allow-drop")
    bench_json = work / f"{run_folder.name}-bench.json"
    run(BINBOT, "bench", mixed_path, full_path, "--compare", "--threads", "1,2", "--runs", runs, "--json", bench_json)
    bench = json.loads(bench_json.read_text())
    return {
        "run": run_folder.name, "recipe": config.get("recipe", "?"), "class_weight": config.get("class_weight", "none"),
        "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
        "f1": {name: figures["f1"] for name, figures in metrics["per_class"].items()},
        "minutes": metrics["training_seconds"] / 60,
        "default": mixed["validation"], "float_layers": [layer["name"] for layer in mixed["quantization"].get("float_layers", [])],
        "full": full["validation"],
        "invoke": {threads: (invoke_p50(bench, mixed_path, threads), invoke_p50(bench, full_path, threads))
                   for threads in (1, 2)},
    }


def render(rows: list[dict]) -> str:
    classes = list(rows[0]["f1"])
    lines = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmarks/recipes_trashnet.py` "
        "on TrashNet (../shared/data/trashnet, 404 validation photos), 2 cores.",
        "",
        "| run | recipe | class weight | Keras accuracy | macro F1 | " + " | ".join(f"F1 {c}" for c in classes)
        + " | training |",
        "|---|---|---|---:|---:|" + "---:|" * len(classes) + "---:|",
    ]
    for r in rows:
        lines.append(f"| {r['run']} | {r['recipe']} | {r['class_weight']} | {r['accuracy']:.2%} | {r['macro_f1']:.3f} | "
                     + " | ".join(f"{r['f1'][c]:.3f}" for c in classes) + f" | {r['minutes']:.1f} min |")
    lines += [
        "",
        "`binbot convert` with no flags, against the full-integer model (`--no-mixed --allow-drop`):",
        "",
        "| run | full int8 drop | default bundle | float layers | drop | invoke p50, 1 thread (full int8) | "
        "ratio | invoke p50, 2 threads (full int8) | ratio |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        (one, one_full), (two, two_full) = r["invoke"][1], r["invoke"][2]
        kind = f"int8, {len(r['float_layers'])} in float" if r["float_layers"] else "int8"
        lines.append(f"| {r['run']} | {r['full']['accuracy_drop_points']:.2f} | {kind} | "
                     f"{', '.join(r['float_layers']) or '-'} | {r['default']['accuracy_drop_points']:.2f} | "
                     f"{one:.2f} ms ({one_full:.2f}) | {one / one_full:.2f}x | {two:.2f} ms ({two_full:.2f}) | "
                     f"{two / two_full:.2f}x |")
    lines += ["", "Commands:", "", *[f"    {command}" for command in COMMANDS]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="binbot train run folders")
    parser.add_argument("--work", type=Path, required=True, help="folder for the bundles and bench figures")
    parser.add_argument("--bench-runs", type=int, default=300, help="timed frames per model and thread count")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [measure(folder, args.work, args.bench_runs) for folder in args.runs]
    report = render(rows)
    print(report)
    if args.markdown:
        args.markdown.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
