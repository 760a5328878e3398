"""`binbot label FIELD`: file collected field frames into class folders from a page in a browser. No TensorFlow."""

from __future__ import annotations

import argparse
from pathlib import Path

from binbot.helpformat import DefaultsFormatter, epilog
from binbot.train.label_server import DEFAULT_HTTP, serve

DESCRIPTION = """Serve a page that shows each frame of FIELD/unlabelled/ (put there by binbot collect) with
the model's guess, its top classes and why the Pi kept it, and moves the frame and its sidecar
into FIELD/<class>/ with one key or click. The classes are those the sidecars score, in the
model's order, then any other class folder already in FIELD. Stop it with Ctrl+C."""

NOTES = """keys on the page:
  1..9, 0        file the frame into the 1st..10th class (the buttons show each class's key)
  x, Delete      discard it (into FIELD/discarded/)
  u, Ctrl+Z, Backspace   undo the last filing or discarding of this session
  arrows         show the next or previous frame without filing it

the API (JSON, for a script; a POST needs Content-Type: application/json):
  GET  /api/frames      classes, frames left oldest first (id, label, confidence, top, reasons, time,
                        model, item, origin), this session's counts, the command to run next
  GET  /frame/ID.jpg    a frame left to label
  POST /api/file        {"id": ID, "class": CLASS}   unlabelled/ID.jpg and .json -> CLASS/
  POST /api/discard     {"id": ID}                   -> discarded/
  POST /api/undo        {}                           the session's last move, back to unlabelled/
  A refusal is a 4xx with {"error": MESSAGE} and moves nothing; no file is ever overwritten.

FIELD then is a folder `binbot train --data FIELD` reads (it skips unlabelled/, discarded/ and the
.json sidecars); moving the files by hand does just as well."""
EPILOG = epilog(
    ("binbot label field", "the page at http://127.0.0.1:8090/"),
    ("binbot label field --classes bottle,can,paper,glass", "with a class the model does not know yet"),
    ("ssh -L 8090:127.0.0.1:8090 workstation", "from another machine: a tunnel, rather than --allow-remote"),
    notes=NOTES,
    next_steps="`binbot train --data PHOTOS --data FIELD --init RUN/model.keras --out NEW_RUN`, then "
    "`binbot convert` and `binbot deploy` as before.",
)


def register(commands: argparse._SubParsersAction) -> None:
    label = commands.add_parser(
        "label", help="file collected frames into classes, in a browser (workstation)",
        description=DESCRIPTION,
        epilog=EPILOG, formatter_class=DefaultsFormatter,
    )
    label.add_argument("field", type=Path, metavar="FIELD", help="field folder, with the frames in unlabelled/")
    label.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                       help="where to serve the page; port 0 for any free one")
    label.add_argument("--classes", type=class_list, metavar="A,B,C",
                       help="the classes, in the order of their keys, instead of those the sidecars score "
                       "(e.g. to add one the model does not know yet); class folders in FIELD are added after them")
    label.add_argument("--allow-remote", action="store_true",
                       help="allow a --http host other than loopback: anyone who reaches it can move your files "
                       "(open it by IP address or by this machine's name; other names are refused)")
    label.set_defaults(handler=_label)


def class_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"should be class names separated by commas, not {text!r}")
    return names


def _label(args: argparse.Namespace) -> int:
    return serve(args.field, args.http, args.classes, args.allow_remote)
