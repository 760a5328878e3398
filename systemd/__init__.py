"""On the Pi: the systemd service around `binbot run` (unit, default config, installer) and checks of its sandbox."""
