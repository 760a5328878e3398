"""How the service is laid out and reloaded on a Pi, as deploy sees it: the defaults are the installer's.

The paths are binbot.device.paths'; tests/test_systemd.py checks systemd/binbot.service, install.sh and
binbot.toml against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from binbot.device import paths
from binbot.device.config import RunConfig


@dataclass(frozen=True)
class Settings:
    """Where a Pi's service keeps its bundles and frames, how it is reloaded and checked, and how long deploy waits."""

    remote_dir: str = paths.STATE_DIR
    reload_command: str = "systemctl reload-or-restart binbot"
    health_url: str = f"http://{RunConfig().http}/healthz"  # the daemon's default address, seen on the Pi itself
    timeout: float = 60  # seconds for /healthz to report a new model before rolling back
    keep: int = 3  # bundles kept on each Pi

    @property
    def bundles_dir(self) -> str:
        return str(PurePosixPath(self.remote_dir, paths.BUNDLES))

    @property
    def kept_dir(self) -> str:
        """Where the service keeps field frames for `binbot collect` (device/kept.py's pairs)."""
        return str(PurePosixPath(self.remote_dir, paths.KEPT))
