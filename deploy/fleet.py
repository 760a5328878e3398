"""Working on many Pis at once, as `binbot deploy` and `binbot collect` both do: their ssh options, the
hosts named on the command line and in a hosts file, and one thread per host whose lines start with its name."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from binbot.deploy.hosts import read_hosts_file
from binbot.deploy.remote import HostSpec, Remote, RemoteError, SshSettings, parse_host, require_ssh
from binbot.deploy.settings import Settings
from binbot.errors import BinbotError


def add_ssh_options(parser: argparse.ArgumentParser) -> None:
    """The ssh group of options: -F, -o, --connect-timeout, --parallel."""
    defaults = SshSettings()
    ssh = parser.add_argument_group("ssh")
    ssh.add_argument("-F", "--ssh-config", type=Path, metavar="FILE", help="ssh configuration file (ssh -F) instead of ~/.ssh/config")
    ssh.add_argument("-o", "--ssh-option", action="append", metavar="OPTION",
                     help="an ssh option (ssh -o), e.g. -o IdentityFile=~/.ssh/pi; repeatable")
    ssh.add_argument("--connect-timeout", type=int, default=defaults.connect_timeout, metavar="SECONDS",
                     help="seconds to wait for each host to answer")
    ssh.add_argument("--parallel", type=int, default=defaults.parallel, metavar="N", help="hosts worked on at once")


def ssh_settings(args: argparse.Namespace) -> SshSettings:
    """The ssh options given (and --sudo), checked; fails if ssh itself is missing."""
    for option, value in (("--parallel", args.parallel), ("--connect-timeout", args.connect_timeout)):
        if value < 1:
            raise BinbotError(f"{option} must be at least 1, not {value:g}")
    ssh = SshSettings(args.ssh_config, tuple(args.ssh_option or ()), args.connect_timeout, args.sudo, args.parallel)
    if ssh.config and not ssh.config.is_file():
        raise BinbotError(f"{ssh.config}: ssh config file not found")
    require_ssh()
    return ssh


def gather_hosts(specs: list[str], hosts_file: Path | None, settings: Settings,
                 none_given: str) -> list[tuple[HostSpec, Settings]]:
    """The hosts named, then those of the hosts file, each with its settings; none_given is the error if there are none."""
    hosts = [(parse_host(spec), settings) for spec in specs]
    if hosts_file:
        hosts += read_hosts_file(hosts_file, settings)
    if not hosts:
        raise BinbotError(none_given)
    names = [host.name for host, _ in hosts]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise BinbotError(f"host {repeated[0]} is named twice")
    return hosts


def on_every_host(command: str, hosts: list[tuple[HostSpec, Settings]], ssh: SshSettings, work: Callable,
                  failed: Callable[[str, str], object]) -> list:
    """work(remote, settings, say) for each host, ssh.parallel at a time; lines start with the host's name.

    work returns an outcome with .ok and .detail; failed(host name, problem) makes the outcome of a host
    whose work raised, whatever it raised: one host never stops the others, nor the summary. A host not ok gets a `binbot COMMAND: error: HOST: DETAIL` line on stderr.
    """
    lock = threading.Lock()

    def one(host: HostSpec, settings: Settings):
        def say(line: str) -> None:
            with lock:
                print(f"{host.name}: {line}")

        try:
            with Remote(host, ssh) as remote:
                outcome = work(remote, settings, say)
        except RemoteError as error:
            outcome = failed(host.name, error.problem)
        except BinbotError as error:
            outcome = failed(host.name, str(error))
        except Exception as error:  # noqa: BLE001 - whatever one Pi sends, the others are still worked on
            outcome = failed(host.name, f"unexpected {type(error).__name__}: {error} (a bug in binbot: please "
                             "report it with what the Pi holds)")
        if not outcome.ok:
            with lock:
                print(f"binbot {command}: error: {host.name}: {outcome.detail}", file=sys.stderr, flush=True)
        return outcome

    with ThreadPoolExecutor(max_workers=min(ssh.parallel, len(hosts))) as pool:
        return list(pool.map(lambda pair: one(*pair), hosts))
