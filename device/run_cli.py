"""`binbot run` (the camera daemon) and `binbot classify` (the same classification, for image files)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from binbot.device import paths
from binbot.device.config import RunConfig, range_problem
from binbot.helpformat import DefaultsFormatter, epilog

DEFAULTS = RunConfig()
# Flags whose setting is in an output's table: flag destination -> dotted setting.
TABLE_FLAGS = {"events": "events.file", "results": "results.file", "view": "view.enabled", "view_fps": "view.fps",
               "view_width": "view.width", "view_clients": "view.clients", "keep_dir": "keep.dir"}
RUN_EPILOG = epilog(
    ("binbot run --bundle runs/first/bundle --source replay:photos --fps 5", "try a bundle on a folder of photos"),
    (f"binbot run --config {paths.CONFIG_FILE}", "as the service runs it"),
    ("binbot run --config binbot.toml --check", "check a settings file, then exit"),
    notes="Every setting can live in --config (a TOML file: the daemon's keys at the top, each output's in its "
    "table: [events], [results], [view], [gpio], [mqtt], [keep]); flags override the file. Every key is in "
    "docs/configuration.md.",
    next_steps="binbot deploy puts a bundle on a Pi whose service runs this; curl localhost:8080/healthz")


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="classify camera frames continuously: the daemon (Pi)",
        description="Classify frames from a camera, video or image folder with a bundle, turn stable changes of "
        "the item in view into JSON-line events, and serve /healthz, /metrics, /latest and a live view (a page "
        "at /). Speaks systemd's notify protocol (READY, WATCHDOG, STATUS). SIGHUP reloads the bundle; SIGTERM "
        "stops cleanly within the unit's stop timeout.",
        epilog=RUN_EPILOG, formatter_class=DefaultsFormatter,
    )
    run.add_argument("--config", type=Path, help=f"TOML settings file, e.g. {paths.CONFIG_FILE}")
    run.add_argument("--check", action="store_true",
                     help="read and check --config and the flags (and the bundle's classes against [gpio]), say "
                     "what would run, and exit without starting")
    daemon = run.add_argument_group("the daemon")
    daemon.add_argument("--bundle", help="bundle folder, or a `current` symlink to one (followed again on SIGHUP)")
    daemon.add_argument("--source", help="picamera2, opencv:INDEX|PATH|URL, replay:PATH (folder of images, video or "
                        ".npz of frames) or selftest: (the bundle's self-test frames, the default)")
    daemon.add_argument("--threads", type=int, help=f"interpreter threads (default: all cores, {DEFAULTS.threads} here)")
    daemon.add_argument("--http", help=f"HOST:PORT to serve on, port 0 for any free one, or off (default: {DEFAULTS.http})")
    daemon.add_argument("--window", type=int, help=f"frames averaged before deciding (default: {DEFAULTS.window})")
    daemon.add_argument("--threshold", type=float,
                        help=f"mean probability an item needs to be reported (default: {DEFAULTS.threshold})")
    daemon.add_argument("--top-k", dest="top_k", type=int, help=f"classes listed per event (default: {DEFAULTS.top_k})")
    daemon.add_argument("--stale-after", dest="stale_after", type=float,
                        help=f"seconds without a classified frame before /healthz fails (default: {DEFAULTS.stale_after:g})")
    replay = run.add_argument_group("replay sources")
    replay.add_argument("--once", dest="loop", action="store_const", const=False,
                        help="play a replay once and exit, instead of looping")
    replay.add_argument("--fps", type=float, help="pace a replay to this frame rate (default: as fast as classified)")
    outputs = run.add_argument_group("outputs (each has a table in --config; these set a few of their keys)")
    outputs.add_argument("--events", help="[events] file: JSON-lines file for events (default: - for stdout)")
    outputs.add_argument("--results", help="[results] file: also write every frame's raw result (as /latest shows it) "
                         "to this JSON-lines file")
    outputs.add_argument("--view", type=on_off, metavar="on|off",
                         help="[view] enabled: the live view, a page at / of --http showing the camera's picture and "
                         "the classifier's answers, with /stream.mjpg, /events and /snapshot.jpg (default: on)")
    outputs.add_argument("--view-fps", dest="view_fps", type=float,
                         help="[view] fps: frames a second sent to live viewers, at most (default: 5)")
    outputs.add_argument("--view-width", dest="view_width", type=int,
                         help="[view] width: pixels the live view's frames are scaled down to; narrower ones are sent "
                         "as they are (default: 640)")
    outputs.add_argument("--view-clients", dest="view_clients", type=int,
                         help="[view] clients: live viewers at once; one more is answered 503 (default: 4)")
    outputs.add_argument("--keep-dir", dest="keep_dir", metavar="DIR",
                         help="[keep] dir: keep field frames the model is unsure of in DIR, for `binbot collect` "
                         "(low-confidence, disagreeing, each event's best and a small sample, within limits and a "
                         "quota); a [keep] table in --config turns keeping on as well (default: off)")
    run.set_defaults(handler=_run)

    classify = commands.add_parser(
        "classify", help="print the top classes of image files (workstation, Pi)",
        description="Classify image files (or folders of them) with a bundle, through the same preprocessing "
        "as the daemon, and print the top classes of each. An image that cannot be read is a warning and the "
        "rest are still classified; the exit status is then 1.",
        formatter_class=DefaultsFormatter,
        epilog=epilog(("binbot classify bundles/first photo1.jpg photos/", "top classes of files and folders"),
                      ("binbot classify bundles/first photos/ --json out.json", "and the results as JSON")),
    )
    classify.add_argument("bundle", type=Path, help="bundle folder")
    classify.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files or folders")
    classify.add_argument("--top-k", type=int, default=3, help="classes printed per image (default: 3)")
    classify.add_argument("--threads", type=threads_flag, default=DEFAULTS.threads,
                          help=f"interpreter threads (default: all cores, {DEFAULTS.threads} here)")
    classify.add_argument("--json", type=Path, help="also write the results to this JSON file")
    classify.set_defaults(handler=_classify)


def threads_flag(text: str) -> int:
    """argparse type for --threads outside `binbot run`: a whole number within the threads setting's bounds."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    problem = range_problem("threads", value)
    if problem:
        raise argparse.ArgumentTypeError(f"{value}: {problem}")
    return value


def on_off(text: str) -> bool:
    """argparse type for a switch: on or off."""
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"should be on or off, not {text!r}")
    return text == "on"


def _run(args: argparse.Namespace) -> int:
    from binbot import logs
    from binbot.device.bundle import read_bundle
    from binbot.device.config import keys, load_config
    from binbot.device.daemon import Daemon
    from binbot.device.source import open_source

    logs.setup("binbot run", args.verbose)
    flags = {key: getattr(args, key) for key in keys()}
    flags.update({dotted: getattr(args, key) for key, dotted in TABLE_FLAGS.items()})
    config = load_config(args.config, flags)
    if args.check:
        return _check(config)
    bundle = read_bundle(Path(config.bundle).resolve())  # bundle.json alone: the size a camera delivers
    source = open_source(config.source, bundle.height, bundle.width, config.loop, config.fps, bundle.path)
    return Daemon(config, source).run()


def _check(config: RunConfig) -> int:
    """`binbot run --check`: the settings are good; say what would run, and what the bundle says of [gpio]."""
    from binbot.device.bundle import MANIFEST, read_bundle
    from binbot.device.gpio import check_classes

    where = config.config_file or "the command line"
    bundle = Path(config.bundle)
    if (bundle / MANIFEST).is_file():
        classes = read_bundle(bundle.resolve()).class_names
        if config.output("gpio") is not None:
            check_classes(config.output("gpio"), where, classes)
        about = f"bundle {config.bundle} ({len(classes)} classes)"
    else:
        about = f"bundle {config.bundle} (not there yet: its classes are checked when the daemon starts)"
    print(f"{where}: ok; {about}, source {config.source}, http {config.http}; outputs: {', '.join(config.outputs)}")
    return 0


def _classify(args: argparse.Namespace) -> int:
    from binbot.device.bundle import load_bundle
    from binbot.device.frame_step import FrameStep
    from binbot.device.frames import IMAGE_SUFFIXES, read_rgb
    from binbot.errors import BinbotError
    from binbot.files import write_json

    loaded = load_bundle(args.bundle, args.threads)
    step = FrameStep(loaded.classifier, loaded.bundle.class_names, args.top_k,
                     resize_policy=loaded.bundle.resize_policy)
    paths = []
    for path in args.images:
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            paths.append(path)
        else:
            raise BinbotError(f"{path}: no such image or folder")
    results, failed = [], 0
    for path in paths:
        try:
            rgb = read_rgb(path)
        except BinbotError as error:  # one bad file in a folder should not hide the results for the rest
            problem = str(error).removeprefix(f"{path}: ")
            print(f"binbot classify: warning: {path}: {problem}", file=sys.stderr)
            results.append({"image": str(path), "error": problem})
            failed += 1
            continue
        top = step(rgb).result["top"]
        results.append({"image": str(path), "label": top[0]["label"], "top": top})
        others = ", ".join(f"{t['label']} {t['p']:.3f}" for t in top[1:])
        print(f"{path}: {top[0]['label']} {top[0]['p']:.3f}" + (f"  ({others})" if others else ""))
    if args.json:
        write_json(args.json, {"model": loaded.bundle.id, "results": results})
    if failed:
        raise BinbotError(f"{failed} of {len(paths)} images could not be classified (see the warnings above)")
    return 0
