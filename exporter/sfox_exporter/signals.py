"""Signals: SIGTERM and SIGINT stop the exporter, SIGHUP reloads its config.

The handlers only take note and wake the main thread, which does the work: a reload reads files and
joins threads, which a signal handler (run between two bytecodes of whatever the main thread was
doing) must not.

They are installed first thing, before the config is read: until there is an exporter to shut down,
SIGTERM and SIGINT end the process at once with status 0 (nothing is running yet, and reading a
config may wait on a slow mount), and a SIGHUP is held for the first reload after the start.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Protocol

log = logging.getLogger("sfox_exporter")
WAKE_SECONDS = 0.5  # the longest a signal can wait to be handled; an idle wake-up costs microseconds


class Reloadable(Protocol):
    def reload(self, trigger: str = ...) -> str | None: ...


class Served(Protocol):
    @property
    def reloader(self) -> Reloadable | None: ...


class Signals:
    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = False
        self._reloads = 0
        self._starting = True
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True  # first: nothing after this line may keep the stop from being seen
        self._wake.set()
        log.info("received %s, shutting down", signal.Signals(signum).name)
        if self._starting:
            raise SystemExit(0)

    def started(self) -> None:
        """From now on there is an exporter to stop: a stop waits for serve() to do it in order."""
        self._starting = False

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self._reloads += 1
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop

    def serve(self, exporter: Served) -> None:
        """Run until SIGTERM or SIGINT, reloading on each SIGHUP (several at once reload once)."""
        handled = 0
        while not self._stop:
            # Not one long wait: the kernel may hand a signal to another thread, which only flags
            # it for this one, and this one runs the Python handler when it next runs Python code.
            # A wait of an hour once left a SIGTERM unheeded (tests/test_operations.py shows it).
            self._wake.wait(WAKE_SECONDS)
            self._wake.clear()
            if self._stop:
                return
            if self._reloads != handled:
                handled = self._reloads
                reloader = exporter.reloader
                if reloader is None:
                    log.warning("received SIGHUP, but there is no config to reload")
                else:
                    reloader.reload("SIGHUP")
