"""The feeds a connection should subscribe to beyond its own: thread-safe, versioned.

Market data wants a changing set of ticker feeds: the set follows the valuation's plan (set), so that
a pair sFOX no longer lists is not asked for at the next connection; feeds sFOX refused by name stay
out until the pair list is fetched again, hourly (forgive). The feed worker reads the set with its
version and subscribes what its connection lacks, whenever the version moves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class WantedFeeds:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: list[str] = []
        self._refused: set[str] = set()
        self.version = 0  # bumped by every change; read without the lock, a change seen late is no harm
        self.replaced = False  # set() has taken the place of the connection's own feeds

    def set(self, feeds: Iterable[str]) -> None:
        """Exactly these, on every later connection; new ones join the current one too (one no longer
        wanted stays on it: unsubscribing would spend a request on nothing)."""
        with self._lock:
            self._feeds = list(dict.fromkeys(feeds))
            self.replaced = True
            self.version += 1

    def refuse(self, feeds: Iterable[str]) -> None:
        """sFOX refused these by name: not asked for again until forgive()."""
        with self._lock:
            self._refused.update(feeds)

    def touch(self) -> None:
        """Nothing changed here, but the connection lost some of its feeds: look again."""
        with self._lock:
            self.version += 1

    def forgive(self) -> None:
        with self._lock:
            self._refused.clear()
            self.version += 1

    def current(self) -> tuple[list[str], int]:
        """The feeds wanted and not refused, and their version."""
        with self._lock:
            return [feed for feed in self._feeds if feed not in self._refused], self.version
