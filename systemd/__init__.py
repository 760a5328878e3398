"""On the Pi: the systemd service around `binbot run`, and deploying bundles to it over SSH."""
