"""The simulator's market data: sFOX's ticker feed and its currency-pairs endpoint.

As the protocol notes describe them: `ticker.sfox.<pair>` messages every ~3 s carrying JSON numbers
and an ISO-8601 payload `timestamp`, and `GET /v1/markets/currency-pairs` as an object keyed by
symbol with `base` and `quote`. The demo pairs cover every route valuation takes for the demo
currencies in USD: direct (`btcusd`, `solusd`, `usdtusd`), through a bridge (`eth` has only
`ethbtc`), and an inverse leg through a bridge (`usdc` has only `usdtusdc`, quoted the other way);
`usdteth` is listed as sFOX lists it. Prices take a small random walk on every tick.

Tests drive it through `set_price` (sent at once), `silence` (a pair stops ticking) and
`remove_pair` (delisted from the endpoint); `Simulator.refused_feeds` refuses a subscription.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import random
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

TICKER_PREFIX = "ticker.sfox."
PAIRS_PATH = "/v1/markets/currency-pairs"

DEMO_PRICES: dict[str, tuple[str, str, float]] = {
    "btcusd": ("btc", "usd", 64250.0),
    "ethbtc": ("eth", "btc", 0.0531),
    "solusd": ("sol", "usd", 148.2),
    "usdtusd": ("usdt", "usd", 1.0003),
    "usdtusdc": ("usdt", "usdc", 0.9998),
    "usdteth": ("usdt", "eth", 0.000294),
}

Send = Callable[..., Coroutine[Any, Any, None]]
Call = Callable[[Coroutine[Any, Any, Any]], Any]


class SimMarket:
    """Pairs, their prices, and who is subscribed to which ticker. Thread-safe."""

    def __init__(self, *, send: Send, call: Call, interval: float | None = 3.0, seed: int = 0,
                 prices: dict[str, tuple[str, str, float]] | None = None) -> None:
        self.interval = interval
        self._send = send
        self._call = call
        self._rng = random.Random(f"market:{seed}")
        self._lock = threading.Lock()
        source = DEMO_PRICES if prices is None else prices
        self._pairs = {symbol: (base, quote) for symbol, (base, quote, _) in source.items()}
        self._last = {symbol: last for symbol, (_, _, last) in source.items()}
        self._silenced: set[str] = set()
        self._subscriptions: dict[Any, set[str]] = {}
        self.pair_requests = 0
        self._pair_failures: list[int] = []

    # --- hooks for tests ------------------------------------------------------------------------

    def set_price(self, pair: str, last: float) -> int:
        """Set a pair's last price and send it to its subscribers now; returns how many got it."""
        with self._lock:
            self._last[pair] = last

        async def send() -> int:
            return await self._send_pair(pair)

        return int(self._call(send()))

    def add_pair(self, pair: str, base: str, quote: str, last: float) -> None:
        """List a new pair (seen by the next currency-pairs call)."""
        with self._lock:
            self._pairs[pair] = (base, quote)
            self._last[pair] = last

    def price(self, pair: str) -> float:
        with self._lock:
            return self._last[pair]

    def silence(self, pair: str, silent: bool = True) -> None:
        """The pair stops ticking (or starts again)."""
        with self._lock:
            (self._silenced.add if silent else self._silenced.discard)(pair)

    def remove_pair(self, pair: str) -> None:
        """Delist the pair: gone from the endpoint, and silent."""
        with self._lock:
            self._pairs.pop(pair, None)
            self._silenced.add(pair)

    def fail_pairs(self, status: int, times: int = 1) -> None:
        """The next `times` currency-pairs calls answer `status`."""
        with self._lock:
            self._pair_failures.extend([status] * times)

    def subscribers(self, pair: str) -> int:
        feed = TICKER_PREFIX + pair
        with self._lock:
            return sum(1 for feeds in self._subscriptions.values() if feed in feeds)

    def subscribed_feeds(self) -> set[str]:
        with self._lock:
            return set().union(*self._subscriptions.values()) if self._subscriptions else set()

    # --- called by the simulator ----------------------------------------------------------------

    def subscription(self, connection: Any, request_type: str, feeds: Iterable[str]) -> None:
        tickers = {feed for feed in feeds if feed.startswith(TICKER_PREFIX)}
        with self._lock:
            current = self._subscriptions.setdefault(connection, set())
            if request_type == "subscribe":
                current |= tickers
            else:
                current -= tickers

    def forget(self, connection: Any) -> None:
        with self._lock:
            self._subscriptions.pop(connection, None)

    def rest_pairs(self, authorized: bool) -> tuple[int, bytes]:
        with self._lock:
            self.pair_requests += 1
            if self._pair_failures:
                return self._pair_failures.pop(0), b'{"error":"simulated"}'
            if not authorized:
                return 401, b'{"error":"invalid token"}'
            listing = {
                symbol: {"formatted_symbol": f"{base.upper()}/{quote.upper()}", "symbol": symbol,
                         "base": base, "quote": quote}
                for symbol, (base, quote) in self._pairs.items()
            }
        return 200, json.dumps(listing).encode()

    async def run(self) -> None:
        """Tick forever, in the simulator's event loop."""
        while True:
            interval = self.interval
            await asyncio.sleep(interval if interval else 0.2)
            if interval:
                await self.tick()

    async def tick(self) -> None:
        with self._lock:
            pairs = [pair for pair in self._last if pair not in self._silenced]
            for pair in pairs:
                self._last[pair] = round(self._last[pair] * (1 + self._rng.gauss(0, 0.002)), 10)
        for pair in pairs:
            await self._send_pair(pair)

    async def _send_pair(self, pair: str) -> int:
        feed = TICKER_PREFIX + pair
        with self._lock:
            last = self._last[pair]
            targets = [c for c, feeds in self._subscriptions.items() if feed in feeds]
        for connection in targets:
            await self._send(connection, recipient=feed, payload=ticker_payload(pair, last))
        return len(targets)


def ticker_payload(pair: str, last: float) -> dict[str, Any]:
    """As sFOX documents it: JSON numbers, and an ISO-8601 `timestamp` of the last trade."""
    now = datetime.datetime.now(datetime.UTC)
    return {
        "amount": 0.0125, "exchange": "coinbase", "high": round(last * 1.01, 10), "last": last,
        "low": round(last * 0.99, 10), "open": round(last * 0.995, 10), "pair": pair, "route": "Smart",
        "source": "ticker-info", "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "volume": 1387.77211046, "vwap": last,
    }
