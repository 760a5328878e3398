"""What the live view costs the daemon: its fps and memory with no viewer, one and four, against --view off.

Replays photos already at the model's size from memory (an .npz, as a Pi camera's lores stream would
deliver them: no decoding, no resizing), unpaced, so the daemon classifies as fast as it can and any
CPU the view takes shows as lost fps. Each viewer is what a browser on the page opens: /stream.mjpg
and /events, read as fast as they come (here, on the same machine: a real viewer's reading costs the
Pi nothing). The configurations take turns over several rounds, so a busy machine slows them alike;
the table gives medians, and each configuration's fps against --view off's in the same round. On a
shared machine, whose neighbours' load swings the fps more than the view does, the daemon's CPU time
per frame says more, and so does the daemon's CPU with the replay paced as a camera is (--paced-fps),
which leaves the cores room. Targets: no viewer within 2% of --view off, one viewer within 10%, four
viewers' RSS under 20 MB above no viewer's.

    python benchmarks/live_view.py --bundle BUNDLE [--photos DIR] [--threads 2] [--seconds 20] [--rounds 3]
                                   [--view-fps 5] [--paced-fps 30]

Timing is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from daemon_process import running_daemon  # benchmarks/daemon_process.py, beside this script

REPO = Path(__file__).resolve().parents[1]
TRASHNET = REPO.parent / "shared" / "data" / "trashnet"
WARMUP_FRAMES = 50
SETTLE_SECONDS = 2.0  # after the viewers connect, before counting
CONFIGURATIONS = (("view off", "off", 0), ("no viewer", "on", 0), ("1 viewer", "on", 1), ("4 viewers", "on", 4))
# Also paced as a camera is, which leaves the cores room: the CPU the daemon uses is then the view's cost
# alone, without the interpreter threads' contention with every other thread on a saturated machine.
PACED = (("view off, paced", "off", 0), ("4 viewers, paced", "on", 4))


def model_size_frames(bundle: Path, photos: Path, count: int, out: Path) -> Path:
    """count photos (spread over the classes) resized to the bundle's input, as an .npz a replay reads."""
    from binbot.device.bundle import read_bundle
    from binbot.device.frames import IMAGE_SUFFIXES, load_model_input

    info = read_bundle(bundle)
    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    chosen = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).astype(int)]
    np.savez(out, inputs=np.stack([load_model_input(path, info.height, info.width) for path in chosen]))
    return out


def loop_cost_us(frames_file: Path, calls: int = 200_000) -> dict[str, float]:
    """Microseconds the inference loop's thread spends on the view: in frame(), every frame, and feeding a result
    to listening pages, view_fps times a second. Unlike fps, steady on a busy machine."""
    from binbot.device.metrics import Metrics
    from binbot.device.outputs import FrameRecord
    from binbot.device.view import LiveView, ViewSettings

    rgb = np.load(frames_file)["inputs"][0]
    record = FrameRecord(time="2026-01-01T00:00:00.000+00:00", frame=0, origin="", model="0123456789ab",
                         label="glass", confidence=0.9, top=[{"label": "glass", "p": 0.9}], item="glass",
                         scores={"glass": 0.9}, rgb=rgb)
    result = record.result
    view = LiveView(ViewSettings(), Metrics())
    start = time.perf_counter()
    for _ in range(calls):
        view.frame(record)
    each_frame = (time.perf_counter() - start) / calls * 1e6
    start = time.perf_counter()
    for _ in range(calls // 10):
        view.feed.publish("result", {**result, "fps": 0.0})  # what frame() adds while /events is open
    each_result = (time.perf_counter() - start) / (calls // 10) * 1e6
    view.close(time.monotonic() + 2.0)
    return {"frame": each_frame, "result": each_result}


class Viewer:
    """A browser on the page: the stream and the event feed, each read on its own thread and thrown away."""

    def __init__(self, port: int):
        self.received = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(port, path), daemon=True)
                         for path in ("/stream.mjpg", "/events")]
        for thread in self._threads:
            thread.start()

    def _read(self, port: int, path: str) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: binbot\r\n\r\n".encode())
            while not self._stop.is_set():
                try:
                    chunk = sock.recv(1 << 16)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                self.received += len(chunk)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)


def get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()
    except urllib.error.HTTPError as error:  # /healthz answers 503 (with the same JSON) until frames flow
        return error.read()


def frames(url: str) -> int:
    return json.loads(get(url + "/healthz"))["frames"]


def metric(url: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", get(url + "/metrics").decode(), re.M)
    return float(found.group(1)) if found else 0.0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far: unlike its fps, not slowed by other machines' load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def measure(bundle: Path, frames_file: Path, threads: int, view: str, viewers: int, seconds: float,
            view_fps: float, log: Path, pace: float = 0.0) -> dict:
    """One daemon: warmed up, then `viewers` connected, then its frames counted over `seconds`."""
    args = ["--bundle", str(bundle), "--source", f"replay:{frames_file}", "--threads", str(threads), "--view", view,
            "--view-fps", str(view_fps), "--view-clients", str(max(viewers, 1)), "--fps", str(pace)]
    watching: list[Viewer] = []
    with running_daemon(args, log) as (process, url):
        try:
            return measure_with_viewers(process, url, viewers, seconds, watching)
        finally:
            for viewer in watching:
                viewer.close()


def measure_with_viewers(process: subprocess.Popen, url: str, viewers: int, seconds: float,
                         watching: list[Viewer]) -> dict:
    """The daemon's figures once warmed up, with `viewers` connected (added to watching) for `seconds`."""
    while frames(url) < WARMUP_FRAMES:
        time.sleep(0.1)
    rss_before = rss_mb(process.pid)
    watching.extend(Viewer(int(url.rsplit(":", 1)[1])) for _ in range(viewers))
    time.sleep(SETTLE_SECONDS)
    count0, encoded0, start = frames(url), metric(url, "binbot_view_frames_encoded_total"), time.monotonic()
    cpu0 = cpu_seconds(process.pid)
    time.sleep(seconds)
    count1, encoded1, end = frames(url), metric(url, "binbot_view_frames_encoded_total"), time.monotonic()
    cpu1 = cpu_seconds(process.pid)
    encode_count = metric(url, "binbot_view_encode_seconds_count")
    encode_ms = 1000 * metric(url, "binbot_view_encode_seconds_sum") / encode_count if encode_count else None
    rss_after = rss_mb(process.pid)
    received = sum(viewer.received for viewer in watching)
    return {"fps": (count1 - count0) / (end - start), "encoded_per_s": (encoded1 - encoded0) / (end - start),
            "cpu_share": (cpu1 - cpu0) / (end - start),
            "cpu_ms": 1000 * (cpu1 - cpu0) / (count1 - count0),
            "encode_ms": encode_ms, "rss": rss_after, "rss_growth": rss_after - rss_before,
            "kb_per_viewer_s": received / 1024 / max(viewers, 1) / (end - start + SETTLE_SECONDS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="an int8 TrashNet bundle")
    parser.add_argument("--photos", type=Path, default=TRASHNET, help="photos to replay (default: %(default)s)")
    parser.add_argument("--count", type=int, default=200, help="photos replayed, in a loop (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="counting window per run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="turns each configuration gets (default: %(default)s)")
    parser.add_argument("--view-fps", type=float, default=5.0, help="the view's frame rate (default: %(default)s)")
    parser.add_argument("--paced-fps", type=float, default=30.0, help="a camera's rate (default: %(default)s)")
    args = parser.parse_args()

    runs: dict[str, list[dict]] = {name: [] for name, _, _ in CONFIGURATIONS + PACED}
    with tempfile.TemporaryDirectory(prefix="binbot-live-view-") as scratch:
        scratch = Path(scratch)
        frames_file = model_size_frames(args.bundle, args.photos, args.count, scratch / "frames.npz")
        loop_cost = loop_cost_us(frames_file)
        for round_number in range(args.rounds):
            for name, view, viewers in CONFIGURATIONS + PACED:
                pace = args.paced_fps if (name, view, viewers) in PACED else 0.0
                result = measure(args.bundle, frames_file, args.threads, view, viewers, args.seconds, args.view_fps,
                                 scratch / "daemon.log", pace)
                runs[name].append(result)
                print(f"round {round_number + 1}, {name}: {result['fps']:.1f} fps, {result['cpu_ms']:.2f} CPU ms "
                      f"a frame, RSS {result['rss']:.1f} MB",
                      file=sys.stderr, flush=True)

    def median(name: str, key: str) -> float | None:
        values = [run[key] for run in runs[name] if run[key] is not None]
        return statistics.median(values) if values else None

    def versus_view_off(name: str, key: str, sign: int = 1) -> str:
        """The change against --view off in the same round, as the median (and range) over the rounds; sign -1
        turns a cost per frame into the frame rate it allows."""
        changes = [(run[key] / off[key]) ** sign - 1 for run, off in zip(runs[name], runs["view off"])]
        return f"{statistics.median(changes):+.1%} ({min(changes):+.1%} to {max(changes):+.1%})"

    targets = {"no viewer": "within 2% of view off", "1 viewer": "within 10% of view off",
               "4 viewers": "RSS < 20 MB above no viewer"}
    print(f"bundle {args.bundle}, {args.threads} thread(s), {args.count} photos from {args.photos} at the model's "
          f"size, replayed from memory unpaced; view at {args.view_fps:g} fps; median of {args.rounds} runs of "
          f"{args.seconds:g} s on {os.cpu_count()} cores\n")
    print("| configuration | daemon fps | fps vs view off | CPU ms per frame | fps the CPU allows, vs view off "
          "| frames encoded/s | encode ms | KB/s per viewer | RSS MB | RSS growth in run | target |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, _, viewers in CONFIGURATIONS:
        fps, encode_ms = median(name, "fps"), median(name, "encode_ms")
        ratio = "" if name == "view off" else versus_view_off(name, "fps")
        cpu_ratio = "" if name == "view off" else versus_view_off(name, "cpu_ms", -1)
        per_viewer = f"{median(name, 'kb_per_viewer_s'):.0f}" if viewers else ""
        target = targets.get(name, "")
        if name == "4 viewers":
            target += f" ({median(name, 'rss') - median('no viewer', 'rss'):+.1f} MB)"
        print(f"| {name} | {fps:.1f} | {ratio} | {median(name, 'cpu_ms'):.2f} | {cpu_ratio} | "
              f"{median(name, 'encoded_per_s'):.1f} | "
              f"{'' if encode_ms is None else f'{encode_ms:.2f}'} | {per_viewer} | {median(name, 'rss'):.1f} | "
              f"{median(name, 'rss_growth'):+.1f} | {target} |")
    paced = [f"{name}: {median(name, 'cpu_share'):.1%} of a core" for name, _, _ in PACED]
    print(f"\nThe daemon's CPU with the replay paced to {args.paced_fps:g} fps, as a camera is (median): "
          + "; ".join(paced) + ".")
    off_fps = median("view off", "fps")
    per_second = loop_cost["frame"] * off_fps + loop_cost["result"] * args.view_fps
    print(f"\nThe view's work on the inference loop's thread: {loop_cost['frame']:.2f} µs in frame() every frame, "
          f"and {loop_cost['result']:.2f} µs for each result fed to listening pages ({args.view_fps:g} a second); "
          f"at the view-off rate ({off_fps:.0f} fps), {per_second / 1e6:.3%} of the loop's time.")


if __name__ == "__main__":
    main()
