"""How a currency's price in the quote currency is made from ticker prices: pure routing.

sFOX lists pairs in both orientations (`btcusd`, but also `usdtusd` beside `usdteth`), and some
currencies have no pair with the quote at all. A route is the list of pairs to multiply, each taken
as is (`last`) or inverted (`1/last`): the quote itself needs none, a direct or inverse pair one,
and a currency reached through a bridge (`eth` via `ethbtc` * `btcusd`) two. Base and quote always
come from sFOX's pair list, never from splitting a symbol.

A currency keeps its best route and one backup, and is priced by the first whose legs all have a
fresh price: a direct pair that falls quiet gives way to a bridge that is still trading, instead of
leaving the currency unpriced. One backup, not all of them: each route is tickers subscribed and streamed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sfox_exporter.metrics.exact import nearest_float


@dataclass(frozen=True, slots=True)
class Leg:
    pair: str
    inverse: bool  # the pair is quoted the other way round: its price is 1/last


Route = tuple[Leg, ...]
Routes = tuple[Route, ...]  # best first; empty when the currency cannot be priced
MAX_ROUTES = 2

def _leg(pairs_by_ends: Mapping[tuple[str, str], str], currency: str, quote: str) -> Leg | None:
    direct = pairs_by_ends.get((currency, quote))
    if direct is not None:
        return Leg(direct, False)
    inverse = pairs_by_ends.get((quote, currency))
    return Leg(inverse, True) if inverse is not None else None


def by_ends(pairs: Mapping[str, tuple[str, str]]) -> dict[tuple[str, str], str]:
    """{(base, quote): symbol}; of two symbols for the same ends, the first in sorted order wins,
    so that routing does not depend on the order sFOX lists them in."""
    ends: dict[tuple[str, str], str] = {}
    for symbol in sorted(pairs):
        ends.setdefault(pairs[symbol], symbol)
    return ends


def routes_of(pairs_by_ends: Mapping[tuple[str, str], str], currency: str, quote: str,
              bridges: Iterable[str]) -> Routes:
    """The best MAX_ROUTES routes from `currency` to `quote`, best first: a direct pair beats an inverse
    one, which beats a bridge; bridges in the order given. The quote's one route is empty."""
    if currency == quote:
        return ((),)
    found: list[Route] = []
    leg = _leg(pairs_by_ends, currency, quote)
    if leg is not None:
        found.append((leg,))
    for bridge in bridges:
        if bridge in (currency, quote):
            continue
        first = _leg(pairs_by_ends, currency, bridge)
        second = _leg(pairs_by_ends, bridge, quote)
        if first is not None and second is not None:
            found.append((first, second))
    return tuple(found[:MAX_ROUTES])


def plan(pairs: Mapping[str, tuple[str, str]], currencies: Iterable[str], quote: str,
         bridges: Iterable[str]) -> dict[str, Routes]:
    """The routes of every currency."""
    ends = by_ends(pairs)
    order = tuple(bridges)
    return {currency: routes_of(ends, currency, quote, order) for currency in currencies}


def quote_reachable(pairs: Mapping[str, tuple[str, str]], quote: str) -> bool:
    """Whether any pair has the quote on either side: if none does, no currency can be valued."""
    return any(quote in ends for ends in pairs.values())


def price(route_: Route, lasts: Sequence[float]) -> float:
    """The route's price from its legs' last prices (in the route's order), rounded once: a product of
    two rounded quotients, (1/a) * b, is off by one in the last place in a quarter of cases. Each
    price is a ratio of integers, so the route's is too, and int / int is correctly rounded. An
    infinity or 0 when it leaves float's range."""
    numerator = denominator = 1
    for leg, last in zip(route_, lasts, strict=True):
        top, bottom = last.as_integer_ratio()
        if leg.inverse:
            top, bottom = bottom, top
        numerator *= top
        denominator *= bottom
    return nearest_float(numerator, denominator)


def feeds_of(plans: Iterable[Routes]) -> set[str]:
    """The pairs every route of every currency needs ticker prices of."""
    return {leg.pair for routes in plans for route_ in routes for leg in route_}
