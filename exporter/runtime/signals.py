"""SIGTERM/SIGINT stop the exporter gracefully, SIGHUP reloads its configuration.

Shared by ``run`` (cli) and ``demo``, so neither imports the other.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exporter.runtime.app import Exporter

log = logging.getLogger("exporter")


def install_signal_handlers(exporter: Exporter) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("shutting down", extra={"signal": signal.Signals(signum).name})
        exporter.request_stop()

    def reload(_signum: int, _frame: FrameType | None) -> None:
        log.info("SIGHUP: reloading configuration")
        exporter.trigger_reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
