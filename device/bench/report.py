"""`binbot bench`'s results: one JSON document, and the same figures as tables a person can read."""

from __future__ import annotations

from binbot import __version__
from binbot.device.bench.measure import FRAME, PERCENTILES, Target
from binbot.device.bench.system import machine, peak_resident_mb
from binbot.device.frame_step import now_iso
from binbot.device.metrics import STAGES
from binbot.tables import aligned


def document(targets: list[Target], source: str, runs: int, warmup: int, compare: bool) -> dict:
    results = [target.summary() for target in targets]
    return {
        "binbot": __version__,
        "date": now_iso(),
        "machine": machine(),
        "runtime": results[0]["runtime"],
        "source": source,
        "runs": runs,
        "warmup": warmup,
        "compare": compare,
        "bench_peak_rss_mb": peak_resident_mb(),
        "results": results,
    }


def number(value: float) -> str:
    """Three significant figures, without an exponent: 0.00123, 4.21, 12.3, 1234."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def xnnpack(figure: dict | None) -> str:
    if figure is None:
        return "unknown"
    return f"{figure['ops']}/{figure['of']} ops" if figure["applied"] else "no"


def tables(report: dict) -> str:
    """The header, a table of each model's figures, and a table of each stage's percentiles."""
    box = report["machine"]
    board = f", board {box['board']}" if box["board"] else ""
    order = "the models in turn, frame by frame" if report["compare"] else "one model after another"
    lines = [
        f"binbot bench {report['date']}",
        f"machine  {box['cpu']}, {box['cores']} cores{board}, {box['system']}, Python {box['python']}",
        f"runtime  {report['runtime']}",
        f"frames   {report['source']}; {report['runs']} timed per model after {report['warmup']} warm-up, {order}",
        "",
    ]
    summary = [("model", "threads", "input", "XNNPACK", "load ms", "verify ms", "fps", "CPU", "peak RSS MB")]
    for r in report["results"]:
        summary.append((r["model"], str(r["threads"]), r["input"], xnnpack(r["xnnpack"]), number(r["load_ms"]),
                        "-" if r["verify_ms"] is None else number(r["verify_ms"]), number(r["fps"]),
                        f"{100 * r['cpu_use']:.0f}%", number(r["peak_rss_mb"])))
    lines += aligned(summary, left=4)
    lines.append("")
    stages = [("model", "threads", "stage", *(f"p{p} ms" for p in PERCENTILES), "max ms")]
    for r in report["results"]:
        for stage in (*STAGES, FRAME):
            figures = r["stages_ms"][stage]
            stages.append((r["model"], str(r["threads"]), stage,
                           *(number(figures[f"p{p}"]) for p in PERCENTILES), number(figures["max"])))
    lines += aligned(stages, left=3)
    lines += [
        "",
        "load: the model into an interpreter, delegate applied, tensors allocated; verify: a bundle's checksums, "
        "model load and self-test, as binbot run does before serving.",
        "fps = frames / time in frame; frame = preprocess (resize, into the input tensor) + invoke + postprocess "
        "(dequantize, smooth, top-k); CPU = process CPU time / wall time in frame (100% = one core); "
        "peak RSS of a process serving that model alone.",
    ]
    return "\n".join(lines)

