"""The price book: the last ticker price of every pair, the routes that turn them into prices in the
quote currency, and the market-data feed's health. Thread-safe.

Kept apart from the balance State but rendered in the same cache: every change calls `on_change`
(State.touch, which bumps the version), and the State asks `expire()` on every version check, so a
price that goes stale disappears from the very next scrape. A stale price is withdrawn, never
served: its currency then takes its next route whose legs are all fresh, or counts as unpriced.
Ingesting a ticker is one dict write under a lock and a version bump, the cost of a balance entry.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sfox_exporter.clock import Clock
from sfox_exporter.valuation.routes import Route, Routes, price
from sfox_exporter.vocabulary import ERROR_REASONS, ErrorReason, FeedStatus

MAX_CLOCK_SKEW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Price:
    value: float
    # Local time of the last ticker message behind it (CONTRACT.md), when its value last moved; None for
    # the quote itself. Staleness is not read from it: each pair expires on its own, taking its prices.
    updated: float | None


@dataclass(frozen=True)
class MarketView:
    """The market as one scrape sees it: only fresh prices."""

    quote: str
    up: bool
    status: str
    prices: Mapping[str, Price]
    messages: int
    errors: Mapping[str, int]
    reconnects: int
    feeds: int | None = None  # the ticker feeds the routes need; None until sFOX's pair list is known


@dataclass(slots=True)
class _Last:
    last: float
    received: float  # monotonic, for staleness
    wall: float  # time.time(), for the exported timestamp
    sent: float | None  # sFOX's timestamp of the message, to tell a late one


class PriceBook:
    def __init__(self, quote: str, stale_after_seconds: float, clock: Clock,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.quote = quote
        self._stale_after = stale_after_seconds if stale_after_seconds > 0 else math.inf
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._last: dict[str, _Last] = {}
        self._routes: dict[str, Routes] = {quote: ((),)}
        self._needed: frozenset[str] = frozenset()  # the pairs some route uses
        self._routed = False  # set_routes has been called: the pair list is known
        self._next_expiry = math.inf
        self._status = FeedStatus.STARTING
        self._messages = 0
        self._errors: dict[str, int] = dict.fromkeys(ERROR_REASONS, 0)
        self._reconnects = 0

    # --- writes -----------------------------------------------------------------------------------

    def update(self, pair: str, last: float, sent: float | None = None) -> None:
        """A ticker's last price: the hot path. A pair no route uses is only counted: kept, every
        pair sFOX cared to send would be, until it went stale. So is a ticker sFOX sent before the
        one already kept (`sent`, its message's timestamp): a late message must not undo a newer price."""
        received = self._clock.monotonic()
        entry = _Last(last, received, self._clock.time(), sent)
        with self._lock:
            kept = self._last.get(pair)
            # A kept time far in the future is no order to keep: one bad ticker would freeze the price.
            late = (kept is not None and sent is not None and kept.sent is not None and sent < kept.sent
                    <= entry.wall + MAX_CLOCK_SKEW_SECONDS)
            if pair in self._needed and not late:
                self._last[pair] = entry
            self._messages += 1
            expiry = received + self._stale_after
            self._next_expiry = min(self._next_expiry, expiry)
        self._on_change()

    def count_message(self) -> None:
        with self._lock:
            self._messages += 1
        self._on_change()

    def set_routes(self, routes: Mapping[str, Routes]) -> None:
        """The currencies that can be priced, and their routes, best first; the quote is always priced at 1."""
        with self._lock:
            self._routes = {currency: found for currency, found in routes.items() if found}
            self._routes[self.quote] = ((),)
            needed = self._needed = frozenset(
                leg.pair for found in self._routes.values() for route in found for leg in route)
            self._routed = True
            for pair in [pair for pair in self._last if pair not in needed]:
                del self._last[pair]  # a pair that vanished from sFOX's list: its price goes with it
        self._on_change()

    def set_status(self, status: FeedStatus) -> None:
        with self._lock:
            if status == self._status:
                return
            self._status = status
        self._on_change()

    def status(self) -> FeedStatus:
        with self._lock:
            return self._status

    def count_error(self, reason: ErrorReason, count: int = 1) -> None:
        with self._lock:
            self._errors[reason] += count
        self._on_change()

    def count_reconnect(self) -> None:
        with self._lock:
            self._reconnects += 1
        self._on_change()

    # --- reads ------------------------------------------------------------------------------------

    def expire(self) -> bool:
        """Drop the prices that went stale; True when one did. Cheap when none is due."""
        now = self._clock.monotonic()
        with self._lock:
            if now < self._next_expiry:
                return False
            horizon = now - self._stale_after
            stale = [pair for pair, entry in self._last.items() if entry.received <= horizon]
            for pair in stale:
                del self._last[pair]
            self._next_expiry = min((e.received for e in self._last.values()), default=math.inf) + self._stale_after
            return bool(stale)

    def view(self) -> MarketView:
        with self._lock:
            prices: dict[str, Price] = {}
            for currency, found in self._routes.items():
                for route in found:  # the first route with a fresh price on every leg
                    price = self._price(route)
                    if price is not None:
                        prices[currency] = price
                        break
            return MarketView(self.quote, self._status == FeedStatus.UP, self._status, MappingProxyType(prices),
                              self._messages, MappingProxyType(dict(self._errors)), self._reconnects,
                              len(self._needed) if self._routed else None)

    def _price(self, route: Route) -> Price | None:
        entries = [self._last.get(leg.pair) for leg in route]
        known = [entry for entry in entries if entry is not None]
        if len(known) < len(entries):
            return None
        value = price(route, [entry.last for entry in known])
        updated = max((entry.wall for entry in known), default=None)
        return Price(value, updated) if math.isfinite(value) and value > 0 else None

    def last_prices(self) -> dict[str, float]:
        with self._lock:
            return {pair: entry.last for pair, entry in self._last.items()}
