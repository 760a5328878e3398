"""Where BinBot lives on a Pi, named once.

The installer (systemd/install.sh), the unit (systemd/binbot.service) and the default config
(systemd/binbot.toml) write these paths out, as shell and unit files cannot import them;
tests/test_systemd.py and tests/test_install.py check each of them against this file.
"""

from __future__ import annotations

# The unit's StateDirectory=binbot: the only place the service may write.
STATE_DIR = "/var/lib/binbot"
# Its sub-folders, by name: a Pi set up with another state folder (deploy's --remote-dir) has the same ones.
BUNDLES = "bundles"  # one folder per bundle id, and the `current` symlink deploy switches
CURRENT = "current"
KEPT = "kept"  # kept field frames, for binbot collect

BUNDLES_DIR = f"{STATE_DIR}/{BUNDLES}"
CURRENT_BUNDLE = f"{BUNDLES_DIR}/{CURRENT}"
KEPT_DIR = f"{STATE_DIR}/{KEPT}"

# The unit's ConfigurationDirectory=binbot, and the file its ExecStart passes to --config.
CONFIG_DIR = "/etc/binbot"
CONFIG_FILE = f"{CONFIG_DIR}/binbot.toml"

# The venv install.sh makes, whose binbot the unit runs.
VENV = "/opt/binbot/venv"
