"""`binbot bench`: time each stage of the daemon's per-frame path for bundles and plain .tflite models.

Each model is loaded once per thread count (load timed; its memory measured in a process of its
own), warmed up, then run frame by frame: capture from the source, preprocess (resize to the input
size and copy into the input tensor), invoke, post-process (dequantize, smooth, top-k), the same
calls the daemon makes. All models are loaded before any is timed, then run one after another, or
in turn frame by frame (compare), so that a busy machine slows them all alike.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from binbot.device.bench.system import peak_resident_mb
from binbot.device.bundle import MODEL, load_bundle
from binbot.device.config import RunConfig
from binbot.device.frame_step import FrameStep
from binbot.device.frames import RESIZE_POLICY
from binbot.device.metrics import STAGES
from binbot.device.runtime import Classifier
from binbot.device.smoothing import Smoother
from binbot.device.source import Source, SourceError
from binbot.errors import BinbotError

FRAME = "frame"  # preprocess + invoke + postprocess: one frame's work once it has been captured
PERCENTILES = (50, 90, 99)
SETTINGS = RunConfig()  # the daemon's smoothing window, threshold and top-k


class PlainModel(Classifier):
    """A .tflite from elsewhere: its input takes the pixels spread over the tensor's whole range,
    as image classifiers such as Google's MobileNets expect (uint8 as they are, int8 shifted by
    128, float scaled to [-1, 1]), not pixel values as BinBot's bundles do."""

    def set_input(self, frame: np.ndarray) -> None:
        self.check_frame(frame)
        tensor = self._input_tensor()[0]
        if self.input.dtype == np.uint8:
            tensor[...] = frame
        elif self.input.dtype == np.int8:
            np.subtract(frame, 128, out=tensor, dtype=np.int16, casting="unsafe")
        else:
            np.multiply(frame, 1 / 127.5, out=tensor, casting="unsafe")
            tensor -= 1


@dataclass
class Target:
    """One model at one thread count, and what was measured of it."""

    name: str
    path: Path
    kind: str  # "bundle" or "reference"
    threads: int
    classifier: Classifier | None = None
    class_names: list[str] = field(default_factory=list)
    step: FrameStep | None = None
    resize_policy: str = RESIZE_POLICY  # a bundle's own; plain models are resized as BinBot's are
    load_seconds: float = 0.0
    verify_seconds: float | None = None  # bundles only: load_bundle's checks, model load and self-test
    peak_rss_mb: float = 0.0
    delegated: tuple[int, int] | None = None
    seconds: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in (*STAGES, FRAME)})
    cpu_seconds: float = 0.0

    def load(self) -> None:
        """Load the model and time it; a bundle is first verified as the daemon does (also timed)."""
        if self.kind == "bundle":
            started = time.perf_counter()
            loaded = load_bundle(self.path, self.threads)  # checksums, labels, self-test: refuses a broken bundle
            self.verify_seconds = time.perf_counter() - started
            self.class_names = loaded.bundle.class_names
            self.resize_policy = loaded.bundle.resize_policy
            del loaded
            gc.collect()
            started = time.perf_counter()
            self.classifier = Classifier(self.path / MODEL, self.threads)
        else:
            started = time.perf_counter()
            self.classifier = PlainModel(self.path, self.threads)
            self.class_names = [str(n) for n in range(self.classifier.n_classes)]
        self.load_seconds = time.perf_counter() - started
        self.delegated = self.classifier.delegated_ops()
        self.step = FrameStep(self.classifier, self.class_names, SETTINGS.top_k,
                              Smoother(SETTINGS.window, SETTINGS.threshold), self.resize_policy)

    def frame(self, source: Source, timed: bool = True) -> None:
        """Capture one frame and run the daemon's frame step on it, timing each stage."""
        start = time.perf_counter()
        frame = source.read()
        if frame is None:
            raise BinbotError(f"source {source.describe()}: ended")
        captured = time.perf_counter()
        cpu_start = time.process_time()
        step = self.step(frame.rgb)
        cpu = time.process_time() - cpu_start
        if timed:
            self.seconds["capture"].append(captured - start)
            for stage, seconds in step.seconds.items():
                self.seconds[stage].append(seconds)
            self.seconds[FRAME].append(sum(step.seconds.values()))
            self.cpu_seconds += cpu

    def summary(self) -> dict:
        """The figures for the report: milliseconds per stage, frames per second, CPU use, memory."""
        frame_total = sum(self.seconds[FRAME])
        stages = {}
        for stage, values in self.seconds.items():
            ms = 1000 * np.array(values)
            stages[stage] = {**{f"p{p}": float(np.percentile(ms, p)) for p in PERCENTILES},
                             "max": float(ms.max()), "mean": float(ms.mean())}
        delegated = self.delegated
        return {
            "model": self.name, "path": str(self.path), "kind": self.kind, "threads": self.threads,
            "runtime": self.classifier.runtime,
            "input": f"{self.classifier.height}x{self.classifier.width} {self.classifier.input.dtype.name}",
            "load_ms": 1000 * self.load_seconds,
            "verify_ms": None if self.verify_seconds is None else 1000 * self.verify_seconds,
            "xnnpack": None if delegated is None else {"applied": delegated[0] > 0, "ops": delegated[0], "of": delegated[1]},
            "fps": len(self.seconds[FRAME]) / frame_total,
            "cpu_use": self.cpu_seconds / frame_total,  # 1.0 = one core busy for the whole frame
            "peak_rss_mb": self.peak_rss_mb,
            "stages_ms": stages,
        }


def peak_rss_alone(target: Target, frames: int) -> float:
    """Peak resident memory (MB) of a fresh process that loads only this model, as the daemon
    would, and classifies frames with it: one process's peak says nothing of each of many models."""
    command = [sys.executable, "-c", "import sys; from binbot.device.bench.measure import serve_alone; "
               "print(serve_alone(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))",
               target.kind, str(target.path), str(target.threads), str(frames)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise BinbotError(f"{target.path}: measuring its memory failed: {lines[-1]}")
    return float(result.stdout.split()[-1])


def serve_alone(kind: str, path: str, threads: int, frames: int) -> float:
    """In the child of peak_rss_alone: load, classify frames of zeros, return the peak RSS in MB."""
    if kind == "bundle":
        classifier = load_bundle(path, threads).classifier
    else:
        classifier = PlainModel(path, threads)
    frame = np.zeros((classifier.height, classifier.width, 3), np.uint8)
    for _ in range(frames):
        classifier.classify(frame)
    return peak_resident_mb()


def targets_for(bundles: list[Path], references: list[Path], threads: list[int]) -> list[Target]:
    """One target per model and thread count, named by folder (bundles) or file stem (references)."""
    models = [(path, "bundle") for path in bundles] + [(path, "reference") for path in references]
    short = [path.name if kind == "bundle" else path.stem for path, kind in models]
    names = [f"{path.parent.name}/{name}" if short.count(name) > 1 else name for name, (path, _) in zip(short, models)]
    return [Target(name, path, kind, count) for count in threads for name, (path, kind) in zip(names, models)]


Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what is happening)


def silent(done: int, total: int, what: str) -> None:
    pass


def run(targets: list[Target], source: Source, runs: int, warmup: int, compare: bool,
        progress: Progress = silent) -> None:
    """Open the source (so a bad one fails first), prepare, then measure, with one progress count over both."""
    loading = 2 * len(targets)
    total = loading + len(targets) * (warmup + runs)
    with opened(source):
        prepare(targets, warmup, lambda done, _, what: progress(done, total, what))
        measure(targets, source, runs, warmup, compare, lambda done, _, what: progress(loading + done, total, what))


@contextmanager
def opened(source: Source) -> Iterator[Source]:
    """The source, open; a failure to open or read it is a BinbotError."""
    try:
        source.open()
        yield source
    except SourceError as error:
        raise BinbotError(f"source: {error}") from None
    finally:
        source.close()


def prepare(targets: list[Target], warmup: int, progress: Progress = silent) -> None:
    """Load every target (all stay loaded), and measure each one's memory in a process of its own."""
    total = 2 * len(targets)
    for n, target in enumerate(targets):
        progress(2 * n, total, f"loading {target.name}, {target.threads} thread(s)")
        target.load()
        progress(2 * n + 1, total, f"memory of {target.name} alone, {target.threads} thread(s)")
        target.peak_rss_mb = peak_rss_alone(target, warmup + 1)


def measure(targets: list[Target], source: Source, runs: int, warmup: int, compare: bool,
            progress: Progress = silent) -> None:
    """Warm each loaded target up, then time runs frames of each from the open source: in turn (compare)
    or one after another."""
    total, done = len(targets) * (warmup + runs), 0
    for target in targets:
        progress(done, total, f"warming up {target.name}, {target.threads} thread(s)")
        for _ in range(warmup):
            target.frame(source, timed=False)
        done += warmup
    if compare:
        for _ in range(runs):
            progress(done, total, "timing the models in turn, frame by frame")
            for target in targets:
                target.frame(source)
            done += len(targets)
    else:
        for target in targets:
            for n in range(runs):
                progress(done + n, total, f"timing {target.name}, {target.threads} thread(s)")
                target.frame(source)
            done += runs
    progress(total, total, "done")
