"""`binbot collect`: copy the frames the Pis kept to a field folder on this machine, over SSH."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from binbot.deploy import collect
from binbot.deploy.fleet import add_ssh_options, gather_hosts, on_every_host, ssh_settings
from binbot.deploy.remote import SUDO_MODES, SshSettings
from binbot.deploy.settings import Settings
from binbot.device.fieldfolder import DISCARDED, UNLABELLED
from binbot.errors import BinbotError
from binbot.helpformat import DefaultsFormatter, epilog
from binbot.tables import aligned

USAGE = """binbot collect [options] HOST ... --out FIELD
       binbot collect [options] --hosts FILE --out FIELD"""

NOTES = f"""HOST is [user@]host[:port], as ssh takes it (a name from ~/.ssh/config works); Pis set up
differently go in a --hosts file, the same one `binbot deploy` reads (remote_dir is the key that
matters here). Hosts are handled in parallel, each line of progress starting with its host; a table
sums up at the end, and the exit status is 1 if any host could not be collected or any frame failed
its check.

On each Pi the service keeps frames in DIR/kept/ (DIR is --remote-dir), each an <id>.jpg and its
sidecar <id>.json, which holds the model's scores and the JPEG's sha256. FIELD is laid out as:

  FIELD/{UNLABELLED}/   frames collected and not labelled yet: where new ones go
  FIELD/<class>/      frames labelled as that class (binbot label moves them there)
  FIELD/{DISCARDED}/    frames labelled as not worth training on

A frame whose id is in any of these is not copied again, so collect can run as often as you like
(from cron, say): a second run copies nothing. Each copy is checked against its sidecar and the
checksum the Pi gave before it is put in {UNLABELLED}/; one that fails is reported, not kept, and
never deleted on the Pi."""
EPILOG = epilog(
    ("binbot collect pi@binbot.local --out field", "new kept frames into field/unlabelled/"),
    ("binbot collect --hosts pis.toml --out field --delete", "every Pi of a hosts file, freeing their cards"),
    notes=NOTES,
    next_steps="`binbot label FIELD` to file the new frames into classes, then "
    "`binbot train --data IMAGES --data FIELD`.",
)


DESCRIPTION = f"""Copy the frames the binbot service kept on one or more Raspberry Pis (those it was unsure
of) into FIELD/{UNLABELLED}/ here, with the system's ssh (your keys, agent and ~/.ssh/config apply; it
never asks for a password). Only frames not in FIELD already are copied."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "collect", help="copy the frames the Pis kept into a field folder (workstation)",
        usage=USAGE, description=DESCRIPTION, epilog=EPILOG, formatter_class=DefaultsFormatter,
    )
    parser.add_argument("host_specs", nargs="*", metavar="HOST", help="the Pis to collect from")
    parser.add_argument("--out", type=Path, required=True, metavar="FIELD",
                        help="the field folder; created if missing, new frames go in its unlabelled/")
    parser.add_argument("--hosts", type=Path, metavar="FILE", help="TOML file of hosts, for Pis that differ")

    remote = parser.add_argument_group("on the Pi")
    remote.add_argument("--remote-dir", metavar="DIR", default=Settings().remote_dir,
                        help="the service's state folder; kept frames are in its kept/")
    remote.add_argument("--delete", action="store_true",
                        help="delete each frame on the Pi once it is here and checked (copied now, or on an earlier "
                        "run and still matching); a frame that failed its check is never deleted")
    remote.add_argument("--sudo", choices=SUDO_MODES, default=SshSettings().sudo,
                        help="read (and with --delete, delete) the kept frames with `sudo -n`, as the service's folder "
                        "is not readable by others: auto does unless the ssh user is root")
    add_ssh_options(parser)
    parser.set_defaults(handler=_collect)


def _collect(args: argparse.Namespace) -> int:
    field_dir = prepare_field(args.out)
    hosts = gather_hosts(args.host_specs, args.hosts, Settings(remote_dir=args.remote_dir),
                         "no host given: name the hosts, or pass --hosts FILE")
    ssh = ssh_settings(args)
    print(f"collecting kept frames from {len(hosts)} host(s) into {field_dir}")

    def work(remote, settings, say):
        return collect.collect(remote, settings, field_dir, args.delete, say)

    outcomes = on_every_host("collect", hosts, ssh, work,
                             failed=lambda host, problem: collect.Collected(host, error=problem))
    print_summary(outcomes)
    new = sum(outcome.new for outcome in outcomes)
    if new:
        print(f"{new} new frame(s) in {field_dir / UNLABELLED}; next, label them: binbot label {field_dir}")
    else:
        print("no new frames")
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def prepare_field(out: Path) -> Path:
    """out, created if missing; fails before any connection if it cannot be a field folder."""
    if out.exists() and not out.is_dir():
        raise BinbotError(f"{out}: exists and is not a folder (give --out the field folder frames are collected into)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BinbotError(f"{out}: cannot create it ({error.strerror or error})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise BinbotError(f"{out}: not writable, so no frame can be put there")
    return out


def print_summary(outcomes: list[collect.Collected]) -> None:
    rows = [("host", "result", "new", "already here", "failed", "deleted")]
    for o in outcomes:
        result = "FAILED" if o.error else "ok" if o.ok else "BAD FRAMES"
        counts = (o.new, o.here, len(o.problems), o.deleted) if o.reached else ("-",) * 4
        rows.append((o.host, result, *map(str, counts)))
    print()
    print("\n".join(aligned(rows, left=2)))
