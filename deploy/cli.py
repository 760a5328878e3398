"""`binbot deploy`: put a bundle on one or many Pis over SSH, see what they serve, or roll back."""

from __future__ import annotations

import argparse
from pathlib import Path

from binbot.deploy import collect_cli
from binbot.deploy.fleet import add_ssh_options, gather_hosts, on_every_host, ssh_settings
from binbot.deploy.remote import SUDO_MODES, SshSettings
from binbot.deploy.settings import Settings
from binbot.device.run_cli import threads_flag
from binbot.errors import BinbotError
from binbot.helpformat import DefaultsFormatter, epilog
from binbot.tables import aligned

USAGE = """binbot deploy [options] BUNDLE [HOST ...] [--hosts FILE]
       binbot deploy --status [options] [HOST ...] [--hosts FILE]
       binbot deploy --rollback [options] [HOST ...] [--hosts FILE]"""

NOTES = """HOST is [user@]host[:port], as ssh takes it (a name from ~/.ssh/config works). Pis set up
differently from the options go in a --hosts file (TOML, a table per Pi: host, and optionally
remote_dir, health_url, reload_command). Hosts are handled in parallel, each line of progress
starting with its host; a table sums up at the end, and the exit status is 1 if any host failed
(for --status: if any is unreachable or not serving its current bundle).

On the Pi, bundles live in DIR/bundles/<id>/, with `current` and `previous` symlinks. A deploy
uploads to <id>.partial, verifies every file's sha256 there, renames it to <id>, switches `current` by
renaming a new symlink over it, reloads the service and waits for /healthz to report the new model. If
it does not within --timeout, `current` is switched back and the service reloaded again."""
EPILOG = epilog(
    ("binbot deploy bundles/first pi@binbot.local", "check the bundle here, then serve it on the Pi"),
    ("binbot deploy bundles/first pi@kitchen.local pi@garage.local pi@10.0.0.41:2222", "several Pis in parallel"),
    ("binbot deploy bundles/first --hosts pis.toml", "Pis set up differently, one table each"),
    ("binbot deploy --status pi@binbot.local", "current and previous bundle, all bundles there, /healthz"),
    ("binbot deploy --rollback pi@binbot.local", "back to the previous bundle"),
    notes=NOTES,
    next_steps="watch it run with `ssh -L 8080:127.0.0.1:8080 pi@binbot.local` and http://localhost:8080/ "
    "(the live view); with [keep] in the Pi's binbot.toml, `binbot collect HOST --out FIELD` fetches the frames "
    "it was unsure of.",
)


def register(commands: argparse._SubParsersAction) -> None:
    """`binbot deploy`, and `binbot collect` beside it."""
    service = Settings()
    deploy = commands.add_parser(
        "deploy", help="put a bundle on Pis over SSH; --status, --rollback (workstation)",
        usage=USAGE, epilog=EPILOG, formatter_class=DefaultsFormatter,
        description="Deploy a bundle to the binbot service on one or more Raspberry Pis with the system's ssh "
        "(your keys, agent and ~/.ssh/config apply; it never asks for a password). The bundle is verified "
        "here first, as the Pi will verify it, and a bad one is refused before anything is sent.",
    )
    deploy.add_argument("targets", nargs="*", metavar="BUNDLE HOST", help="the bundle folder, then the hosts")
    deploy.add_argument("--hosts", type=Path, metavar="FILE", help="TOML file of hosts, for Pis that differ")
    action = deploy.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true",
                        help="show each host's current and previous bundle, the bundles there, and /healthz")
    action.add_argument("--rollback", action="store_true",
                        help="switch each host back to its previous bundle, reload, and wait for it")

    remote = deploy.add_argument_group("on the Pi")
    remote.add_argument("--remote-dir", metavar="DIR", default=service.remote_dir,
                        help="the service's state folder; bundles go in its bundles/")
    remote.add_argument("--reload-command", metavar="COMMAND", default=service.reload_command,
                        help="shell command that makes the service load `current` again (run with the --sudo rule)")
    remote.add_argument("--health-url", metavar="URL", default=service.health_url,
                        help="the service's /healthz, as seen on the Pi itself")
    remote.add_argument("--timeout", type=float, default=service.timeout, metavar="SECONDS",
                        help="seconds to wait for /healthz to report the new model before rolling back")
    remote.add_argument("--keep", type=int, default=service.keep, metavar="N",
                        help="bundles kept on each Pi, newest first; the current and previous one always stay")
    remote.add_argument("--sudo", choices=SUDO_MODES, default=SshSettings().sudo,
                        help="run file changes and the reload command with `sudo -n`: auto does unless the ssh "
                        "user is root")
    add_ssh_options(deploy)
    deploy.add_argument("--threads", type=threads_flag, default=2, metavar="N", help="interpreter threads for the local self-test")
    deploy.set_defaults(handler=_deploy)
    collect_cli.register(commands)


def _deploy(args: argparse.Namespace) -> int:
    from binbot.deploy import steps as deploy  # imports the device's bundle loader (numpy, LiteRT)

    for option, value in (("--timeout", args.timeout), ("--keep", args.keep)):
        if value < 1:
            raise BinbotError(f"{option} must be at least 1, not {value:g}")
    settings = Settings(args.remote_dir, args.reload_command, args.health_url, args.timeout, args.keep)
    if args.status or args.rollback:
        bundle_path, host_specs = None, args.targets
    elif args.targets:
        bundle_path, host_specs = Path(args.targets[0]), args.targets[1:]
    else:
        raise BinbotError("give the bundle folder to deploy, then the hosts (or --status or --rollback)")
    hosts = gather_hosts(host_specs, args.hosts, settings,
                         "no host given: name the hosts (after the bundle, when deploying), or pass --hosts FILE")
    ssh = ssh_settings(args)

    if args.status:
        work = deploy.status
    elif args.rollback:
        work = deploy.rollback
    else:
        print(f"checking {bundle_path} as the Pi will:")
        bundle = deploy.check_local(bundle_path, args.threads, print)
        print(f"bundle {bundle.id} verifies; deploying to {len(hosts)} host(s)")
        work = lambda remote, settings, say: deploy.deploy(remote, settings, bundle, say)  # noqa: E731
    outcomes = on_every_host("deploy", hosts, ssh, work,
                             failed=lambda host, problem: deploy.Outcome(host, "failed", "", problem, ok=False))
    print_summary(outcomes)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def print_summary(outcomes: list) -> None:
    rows = [("host", "result", "model", "detail")]
    rows += [(o.host, o.result if o.ok else o.result.upper(), o.model or "-", o.detail) for o in outcomes]
    print()
    print("\n".join(aligned(rows, left=4)))
