"""The valuation series, pulled out of one Snapshot: prices, account values, the market feed's health.

Values are computed at render time from the balances and fresh prices of the same snapshot, so a
value never mixes a balance and a price from two different moments; the render is cached by the
State's version, which both a balance change and a price change bump.
"""

from __future__ import annotations

from collections.abc import Iterator

from sfox_exporter.metrics.exact import sum_of_products
from sfox_exporter.metrics.state import Snapshot

Sample = tuple[tuple[str, ...], float]


def prices(snapshot: Snapshot) -> Iterator[Sample]:
    market = snapshot.market
    if market is None:
        return
    for currency, price in sorted(market.prices.items()):
        yield (currency, market.quote), price.value


def price_timestamps(snapshot: Snapshot) -> Iterator[Sample]:
    market = snapshot.market
    if market is None:
        return
    for currency, price in sorted(market.prices.items()):
        if price.updated is not None:  # the quote itself has no ticker behind it
            yield (currency, market.quote), price.updated


def _valued(snapshot: Snapshot) -> Iterator[tuple[str, str, float, int]]:
    """(account, quote, value, unpriced) of every account with balances to value."""
    market = snapshot.market
    if market is None:
        return
    fresh = market.prices
    for view in snapshot.accounts:
        if not view.balances:  # withdrawn, or nothing received yet: no value rather than a false 0
            continue
        terms: list[tuple[float, float]] = []
        unpriced = 0
        for currency, entry in view.balances.items():
            balance = entry.balance
            if not balance:  # none sent, or zero: adds nothing, needs no price
                continue
            price = fresh.get(currency)
            if price is not None:
                terms.append((balance, price.value))
            else:
                unpriced += 1
        # Correctly rounded, not the drift of adding one by one; and never an error, whatever the sizes.
        yield view.name, market.quote, sum_of_products(terms), unpriced


def account_values(snapshot: Snapshot) -> Iterator[Sample]:
    for account, quote, value, _ in _valued(snapshot):
        yield (account, quote), value


def unpriced(snapshot: Snapshot) -> Iterator[Sample]:
    for account, quote, _, count in _valued(snapshot):
        yield (account, quote), float(count)


def market_up(snapshot: Snapshot) -> Iterator[Sample]:
    if snapshot.market is not None:
        yield (), 1.0 if snapshot.market.up else 0.0


def market_errors(snapshot: Snapshot) -> Iterator[Sample]:
    if snapshot.market is not None:
        for reason, count in snapshot.market.errors.items():
            yield (reason,), float(count)


def market_feeds(snapshot: Snapshot) -> Iterator[Sample]:
    # Left out until the pair list is known: a 0 then would say "nothing to price" while the pairs
    # cannot even be fetched, and silence SfoxMarketFeedDown.
    if snapshot.market is not None and snapshot.market.feeds is not None:
        yield (), float(snapshot.market.feeds)


def market_messages(snapshot: Snapshot) -> Iterator[Sample]:
    if snapshot.market is not None:
        yield (), float(snapshot.market.messages)


def market_reconnects(snapshot: Snapshot) -> Iterator[Sample]:
    if snapshot.market is not None:
        yield (), float(snapshot.market.reconnects)
