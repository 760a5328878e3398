"""SIGHUP's reload: the new bundle is verified on a thread of its own while the old one serves."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from binbot.device.bundle import LoadedBundle
from binbot.device.metrics import Metrics
from binbot.errors import BinbotError

log = logging.getLogger("binbot.daemon")


class Reloader:
    """start() loads and verifies a bundle in the background; take() hands it to the loop, once."""

    def __init__(self, load: Callable[[], LoadedBundle], metrics: Metrics):
        self._load, self._metrics = load, metrics
        self._thread: threading.Thread | None = None
        self._incoming: LoadedBundle | None = None
        self.error = ""  # the last failed reload, stamped with its time; cleared by a good one

    def start(self, serving: str) -> None:
        if self._thread is not None and self._thread.is_alive():
            log.info("SIGHUP: a reload is already under way")
            return
        self._thread = threading.Thread(target=self._run, args=(serving,), name="reload", daemon=True)
        self._thread.start()

    def take(self) -> LoadedBundle | None:
        incoming, self._incoming = self._incoming, None
        if incoming is not None:
            self.error = ""
            self._metrics.reloads.labels("ok").inc()
        return incoming

    def _run(self, serving: str) -> None:
        try:
            self._incoming = self._load()
        except Exception as error:  # noqa: BLE001 - whatever the bundle does, the old model serves on and says why
            if not isinstance(error, BinbotError):
                error = f"{type(error).__name__}: {error} (a bundle binbot could not read; please report it)"
            self.error = f"{datetime.now(timezone.utc).isoformat(timespec='milliseconds')}: {error}"
            self._metrics.errors.labels("reload").inc()
            self._metrics.reloads.labels("failed").inc()
            log.error("reload failed, still serving model %s: %s", serving, error)
