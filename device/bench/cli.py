"""`binbot bench`: per-stage latency, fps, CPU and memory of bundles (and plain .tflite models) on this device."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from binbot.device.config import MAX_THREADS, RunConfig, range_problem
from binbot.errors import BinbotError
from binbot.helpformat import DefaultsFormatter, epilog

DEFAULTS = RunConfig()
TFLITE_IDENTIFIER = b"TFL3"  # a FlatBuffer's file identifier sits at bytes 4..8
EPILOG = epilog(
    ("binbot bench bundles/int8 bundles/float32 --threads 1,2,4 --compare", "which mode, how many threads"),
    ("binbot bench bundles/int8 --source picamera2 --json bench.json", "the whole path from the Pi camera"),
    ("binbot bench bundles/int8 --reference mobilenet_v2_1.0_224_quant.tflite", "beside any plain .tflite"),
)


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="measure bundles' latency, fps, CPU and memory (workstation, Pi)",
        description="For each bundle (and --reference model) at each thread count: load it, warm it up, then time "
        "--runs frames through the daemon's per-frame path, stage by stage (capture from --source; preprocess: "
        "resize and copy into the input tensor; invoke; postprocess: dequantize, smooth, top-k). Prints p50, p90, "
        "p99 and max of each stage and of the whole frame, fps, CPU use, peak memory, load time, the runtime, "
        "the machine and whether XNNPACK runs the model.",
        epilog=EPILOG, formatter_class=DefaultsFormatter,
    )
    bench.add_argument("bundles", type=Path, nargs="+", metavar="BUNDLE", help="bundle folders made by binbot convert")
    models = bench.add_argument_group("models")
    models.add_argument("--threads", help="interpreter thread counts to measure, comma-separated, e.g. 1,2,4 "
                        f"(default: all cores, {DEFAULTS.threads} here)")
    models.add_argument("--reference", type=Path, action="append", metavar="FILE.tflite",
                        help="also measure this plain .tflite model (fed pixels over its input's range); repeatable")
    models.add_argument("--compare", action="store_true",
                        help="run the models in turn, frame by frame (A B A B ...), so a busy machine slows all alike")
    frames = bench.add_argument_group("frames")
    frames.add_argument("--runs", type=int, default=200, help="timed frames per model and thread count")
    frames.add_argument("--warmup", type=int, default=20, help="untimed frames first (the first invokes pack weights)")
    frames.add_argument("--source",
                        help="frames from picamera2, opencv:INDEX|PATH|URL or replay:PATH, as for binbot run (default: "
                        "the first bundle's self-test frames, from memory, already at the input size)")
    bench.add_argument("--json", type=Path, metavar="FILE", help="also write every figure to this JSON file")
    bench.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from binbot.device.bench import measure, report as bench_report
    from binbot.device.bundle import read_bundle
    from binbot.device.source import open_source

    threads = parse_threads(args.threads or str(DEFAULTS.threads))
    references = args.reference or []
    check_counts(args.runs, args.warmup)
    bundles = [read_bundle(path) for path in args.bundles]  # a missing or broken bundle fails before any work
    for reference in references:
        check_tflite(reference)
    if args.json:
        check_writable(args.json)
    first = bundles[0]
    source = open_source(args.source or DEFAULTS.source, first.height, first.width, bundle=first.path)
    described = source.describe()
    targets = measure.targets_for(args.bundles, references, threads)
    with ProgressBar() as progress:
        measure.run(targets, source, args.runs, args.warmup, args.compare, progress)
    report = bench_report.document(targets, described, args.runs, args.warmup, args.compare)
    print(bench_report.tables(report))
    if args.json:
        write_json_atomically(args.json, report)
        print(f"\nwrote {args.json}")
    return 0


def parse_threads(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and not range_problem("threads", int(part)) for part in parts):
        raise BinbotError(f"--threads {text!r}: give thread counts from 1 to {MAX_THREADS}, comma-separated, e.g. 1,2,4")
    return list(dict.fromkeys(int(part) for part in parts))


def check_counts(runs: int, warmup: int) -> None:
    if runs < 1:
        raise BinbotError(f"--runs {runs}: must be at least 1")
    if warmup < 0:
        raise BinbotError(f"--warmup {warmup}: must not be negative")


def check_tflite(path: Path) -> None:
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except IsADirectoryError:
        raise BinbotError(f"{path}: a folder, not a .tflite model (bundles are given without --reference)") from None
    except OSError as error:
        raise BinbotError(f"{path}: cannot read ({error.strerror})") from None
    if head[4:8] != TFLITE_IDENTIFIER:
        raise BinbotError(f"{path}: not a TFLite model (no {TFLITE_IDENTIFIER.decode()} identifier)")


def check_writable(path: Path) -> None:
    if path.is_dir():
        raise BinbotError(f"--json {path}: is a folder")
    if not path.parent.is_dir():
        raise BinbotError(f"--json {path}: folder {path.parent} does not exist")


def write_json_atomically(path: Path, report: dict) -> None:
    from binbot.files import write_json

    try:
        write_json(path, report)
    except OSError as error:
        raise BinbotError(f"--json {path}: cannot write ({error.strerror})") from None


class ProgressBar:
    """A redrawn bar on a terminal's stderr; elsewhere (a log, a pipe) one line per phase."""

    WIDTH = 30

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty = stream, stream.isatty()
        self.last_what, self.last_drawn = "", 0.0

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.tty and self.last_drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def __call__(self, done: int, total: int, what: str) -> None:
        fraction = done / total if total else 1.0
        if not self.tty:
            if what != self.last_what:
                self.stream.write(f"bench: {fraction:4.0%} {what}\n")
                self.stream.flush()
            self.last_what = what
            return
        now = time.monotonic()
        if now - self.last_drawn < 0.1 and done < total:
            return
        filled = round(self.WIDTH * fraction)
        self.stream.write(f"\r\033[K[{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%} {what}")
        self.stream.flush()
        self.last_drawn = now
