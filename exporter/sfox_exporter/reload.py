"""Config reloads: SIGHUP and POST /-/reload, one at a time, all or nothing.

A reload reads everything first (the config file, with the same flags and environment as at start,
and the web config); only when all of it is valid does the running exporter take it on. A failure
keeps the running config, logs one line naming the error, and sets
sfox_exporter_config_last_reload_successful to 0. What cannot change without a restart (the listen
address) is logged as such, and the rest applied.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from sfox_exporter.config import Config, ConfigError
from sfox_exporter.metrics.exporter_info import ExporterInfo
from sfox_exporter.sfox.feed import describe
from sfox_exporter.web.server import Security

log = logging.getLogger("sfox_exporter")

Loaded = tuple[Config, Security | None]
Source = Callable[[], Loaded]


class Reconfigurable(Protocol):
    def reconfigure(self, config: Config, security: Security | None) -> str:
        """Take on a new, valid config; returns a summary of what changed."""


class Reloader:
    def __init__(self, source: Source, target: Reconfigurable, info: ExporterInfo) -> None:
        self._source = source
        self._target = target
        self._info = info
        self._lock = threading.Lock()  # one reload at a time: a second waits for the first
        self.reloads = 0

    def reload(self, trigger: str = "/-/reload") -> str | None:
        """Reload now; None on success, else the error (key-free, as ConfigError messages are)."""
        with self._lock:
            try:
                config, security = self._source()
            except ConfigError as error:
                return self._failed(trigger, str(error))
            except Exception as error:  # noqa: BLE001 - any failure to read must keep the running config
                return self._failed(trigger, describe(error))
            try:
                summary = self._target.reconfigure(config, security)
            except Exception as error:  # noqa: BLE001 - reported, and the exporter keeps serving
                return self._failed(trigger, describe(error))
            self.reloads += 1
            self._info.reloaded(True)
            log.info("config reloaded (%s): %s", trigger, summary)
            return None

    def _failed(self, trigger: str, error: str) -> str:
        self._info.reloaded(False)
        log.error("config reload (%s) failed, keeping the running config: %s", trigger, error)
        return error


def restart_only(running: Config, loaded: Config) -> list[str]:
    """What the loaded config changes that only a restart can apply."""
    notes = []
    if (running.web.listen_host, running.web.listen_port) != (loaded.web.listen_host, loaded.web.listen_port):
        notes.append(f"listen address {running.web.listen_address} -> {loaded.web.listen_address} "
                     "takes effect only after a restart")
    return notes
