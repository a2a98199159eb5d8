"""Valuation without I/O: price routing, the price book's staleness, and rendering in the same cache."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from sfox_exporter.metrics.exposition import Exposition
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.decode import parse_frame
from sfox_exporter.valuation import routes
from sfox_exporter.valuation.prices import PriceBook
from sfox_exporter.valuation.routes import Leg
from tests.conftest import FakeClock, Samples

PAIRS = {
    "btcusd": ("btc", "usd"),
    "ethbtc": ("eth", "btc"),
    "usdtusd": ("usdt", "usd"),
    "usdteth": ("usdt", "eth"),
    "usdtusdc": ("usdt", "usdc"),
    "solusd": ("sol", "usd"),
    "solbtc": ("sol", "btc"),
}


def test_routes_direct_inverse_bridged_and_the_quote_itself() -> None:
    plan = routes.plan(PAIRS, ["usd", "btc", "eth", "usdc", "sol", "doge"], "usd", ["btc", "usdt"])
    assert plan["usd"] == ((),)
    assert plan["btc"] == ((Leg("btcusd", False),),)
    # Direct first, then each bridge in order: a quiet direct pair gives way to a live bridge.
    assert plan["sol"] == ((Leg("solusd", False),), (Leg("solbtc", False), Leg("btcusd", False)))
    assert plan["eth"] == ((Leg("ethbtc", False), Leg("btcusd", False)),
                           (Leg("usdteth", True), Leg("usdtusd", False)))
    assert plan["usdc"] == ((Leg("usdtusdc", True), Leg("usdtusd", False)),)  # only through usdt, inverted
    assert plan["doge"] == ()
    assert routes.feeds_of(plan.values()) == {"btcusd", "solusd", "solbtc", "ethbtc", "usdteth", "usdtusdc",
                                              "usdtusd"}


def test_a_currency_keeps_its_best_route_and_one_backup() -> None:
    pairs = {"xusd": ("x", "usd"), "xbtc": ("x", "btc"), "xusdt": ("x", "usdt"), "xeth": ("x", "eth"),
             **{f"{bridge}usd": (bridge, "usd") for bridge in ("btc", "usdt", "eth")}}
    plan = routes.plan(pairs, ["x"], "usd", ["btc", "usdt", "eth"])
    assert plan["x"] == ((Leg("xusd", False),), (Leg("xbtc", False), Leg("btcusd", False)))


def test_inverse_route_when_the_quote_is_the_base() -> None:
    plan = routes.plan(PAIRS, ["usd", "eth"], "btc", [])
    assert plan["usd"] == ((Leg("btcusd", True),),)
    assert plan["eth"] == ((Leg("ethbtc", False),),)
    assert routes.price(plan["usd"][0], [50000.0]) == 1 / 50000


def test_base_and_quote_come_from_the_listing_not_the_symbol() -> None:
    # A symbol that reads "usdt" + "usd" but is listed the other way round.
    plan = routes.plan({"usdtusd": ("usd", "usdt")}, ["usdt"], "usd", [])
    assert plan["usdt"] == ((Leg("usdtusd", True),),)
    assert routes.quote_reachable(PAIRS, "usd")
    assert not routes.quote_reachable(PAIRS, "eur")


def book(clock: FakeClock, stale: float = 300.0) -> tuple[State, PriceBook, Exposition]:
    state = State(["main"], clock=clock)
    prices = PriceBook("usd", stale, clock, on_change=state.touch)
    state.attach_market(prices)
    prices.set_routes(routes.plan(PAIRS, ["btc", "eth", "usdc"], "usd", ["btc", "usdt"]))
    return state, prices, Exposition(state, "test")


def render(exposition: Exposition) -> Samples:
    return Samples(exposition.render().body.decode())


def test_prices_values_and_unpriced_render_in_the_balance_cache() -> None:
    clock = FakeClock()
    state, prices, exposition = book(clock)
    state.ingest("main", parse_frame(b'{"sequence":1,"recipient":"private.user.balances","timestamp":1,"payload":'
                                     b'[{"currency":"btc","balance":"2"},{"currency":"eth","balance":"10"},'
                                     b'{"currency":"usd","balance":"100"},{"currency":"doge","balance":"5"},'
                                     b'{"currency":"usdc","balance":"0"}]}'))
    first = render(exposition)
    assert first.get("sfox_price", currency="usd", quote="usd") == 1.0
    assert first.get("sfox_price", currency="btc", quote="usd") is None
    assert first.get("sfox_account_value", account="main", quote="usd") == 100.0
    assert first.get("sfox_account_unpriced_currencies", account="main", quote="usd") == 3.0  # btc eth doge

    version = state.version()
    prices.update("btcusd", 50000.0)
    assert state.version() > version  # a price change invalidates the render cache
    prices.update("ethbtc", 0.05)
    samples = render(exposition)
    assert samples.get("sfox_price", currency="eth", quote="usd") == pytest.approx(2500.0)
    assert samples.get("sfox_price_updated_timestamp_seconds", currency="eth", quote="usd") == clock.time()
    assert samples.get("sfox_account_value", account="main", quote="usd") == pytest.approx(100 + 2 * 50000 + 10 * 2500)
    assert samples.get("sfox_account_unpriced_currencies", account="main", quote="usd") == 1.0  # doge


@pytest.mark.parametrize(("btc", "eth", "value"), [
    ("1e308", "-1e308", 0.0),  # each term past float's range, their sum exactly 0
    ("1e308", "1e308", math.inf),  # the sum itself past it: +Inf, spelled as both formats want it
    # Both terms past the range, the sum back inside it: exactly what integers make of it.
    ("1e308", "-9.9e307", float(Fraction(1e308) * 10 - Fraction(9.9e307) * 10)),
])
def test_account_values_past_floats_range_still_render(btc: str, eth: str, value: float) -> None:
    clock = FakeClock()
    state, prices, exposition = book(clock)
    state.ingest("main", parse_frame(b'{"sequence":1,"recipient":"private.user.balances","timestamp":1,"payload":'
                                     b'[{"currency":"btc","balance":"%s"},{"currency":"eth","balance":"%s"}]}'
                                     % (btc.encode(), eth.encode())))
    prices.update("btcusd", 10.0)
    prices.update("ethbtc", 1.0)
    text = exposition.render().body.decode()
    assert Samples(text).get("sfox_account_value", account="main", quote="usd") == value
    openmetrics = exposition.render("application/openmetrics-text; version=1.0.0").body.decode()
    values = [s.value for f in parse_openmetrics(openmetrics) for s in f.samples if s.name == "sfox_account_value"]
    assert values == [value]


def test_a_stale_price_is_withdrawn_at_the_next_render() -> None:
    clock = FakeClock()
    _, prices, exposition = book(clock, stale=60.0)
    prices.update("btcusd", 50000.0)
    clock.advance(30)
    prices.update("ethbtc", 0.05)
    fresh = render(exposition)
    assert fresh.get("sfox_price", currency="eth", quote="usd") == pytest.approx(2500.0)
    # The last ticker message behind the bridged price is ethbtc's, 30 s after btcusd's.
    assert fresh.get("sfox_price_updated_timestamp_seconds", currency="eth", quote="usd") == clock.time()
    assert fresh.get("sfox_price_updated_timestamp_seconds", currency="btc", quote="usd") == clock.time() - 30
    clock.advance(31)  # btcusd is 61 s old: btc and eth (bridged through it) go; the quote stays
    samples = render(exposition)
    assert samples.get("sfox_price", currency="btc", quote="usd") is None
    assert samples.get("sfox_price", currency="eth", quote="usd") is None
    assert samples.get("sfox_price", currency="usd", quote="usd") == 1.0
    prices.update("btcusd", 40000.0)
    assert render(exposition).get("sfox_price", currency="eth", quote="usd") == pytest.approx(2000.0)


def test_a_quiet_direct_pair_gives_way_to_a_live_bridge_and_back() -> None:
    clock = FakeClock()
    _, prices, exposition = book(clock, stale=60.0)
    prices.set_routes(routes.plan(PAIRS, ["btc", "sol"], "usd", ["btc"]))
    prices.update("solusd", 150.0)
    clock.advance(40)
    prices.update("btcusd", 50000.0)
    prices.update("solbtc", 0.004)
    assert render(exposition).get("sfox_price", currency="sol", quote="usd") == 150.0  # direct beats the bridge
    clock.advance(21)  # solusd is 61 s old, the bridge's legs 21 s
    bridged = render(exposition)
    assert bridged.get("sfox_price", currency="sol", quote="usd") == 0.004 * 50000.0
    assert bridged.get("sfox_price_updated_timestamp_seconds", currency="sol", quote="usd") == clock.time() - 21
    prices.update("solusd", 160.0)
    assert render(exposition).get("sfox_price", currency="sol", quote="usd") == 160.0
    clock.advance(61)  # every leg stale: unpriced
    assert render(exposition).get("sfox_price", currency="sol", quote="usd") is None


def test_a_bridged_price_is_rounded_once() -> None:
    """(1/a) * b rounds twice: usdc through usdtusdc (inverted) and usdtusd was 1.0068907411308035,
    one unit in the last place below the nearest float (a black-box probe)."""
    clock = FakeClock()
    _, prices, exposition = book(clock)
    prices.update("usdtusdc", 0.99699)
    prices.update("usdtusd", 1.00386)
    exact = float(Fraction(1.00386) / Fraction(0.99699))
    assert exact == 1.0068907411308037 != (1 / 0.99699) * 1.00386
    assert render(exposition).get("sfox_price", currency="usdc", quote="usd") == exact


def test_an_account_value_is_the_exact_sum_of_the_products_rounded_once() -> None:
    """math.fsum of the rounded products gave 5840844.257029823 (a black-box probe)."""
    clock = FakeClock()
    state, prices, exposition = book(clock)
    pairs = {"btc": ("btcusd", 9257.29), "sol": ("solusd", 67208.92), "usdt": ("usdtusd", 372.42)}
    prices.set_routes(routes.plan({**PAIRS, "ltcusd": ("ltc", "usd")}, [*pairs, "ltc"], "usd", []))
    for pair, last in [*pairs.values(), ("ltcusd", 11654.33)]:
        prices.update(pair, last)
    balances = {"btc": "44.48912026", "sol": "77.36163437", "ltc": "16.59398568", "usdt": "97.2340056"}
    payload = ",".join(f'{{"currency":"{currency}","balance":"{amount}"}}' for currency, amount in balances.items())
    state.ingest("main", parse_frame(b'{"sequence":1,"recipient":"private.user.balances","timestamp":1,"payload":[%s]}'
                                     % payload.encode()))
    lasts = {"btc": 9257.29, "sol": 67208.92, "ltc": 11654.33, "usdt": 372.42}
    exact = float(sum(Fraction(float(balances[c])) * Fraction(lasts[c]) for c in balances))
    assert exact == 5840844.257029822 != math.fsum(float(balances[c]) * lasts[c] for c in balances)
    assert render(exposition).get("sfox_account_value", account="main", quote="usd") == exact


def test_a_pair_that_vanishes_takes_its_price_with_it() -> None:
    clock = FakeClock()
    _, prices, exposition = book(clock)
    prices.update("btcusd", 50000.0)
    prices.update("ethbtc", 0.05)
    prices.set_routes(routes.plan({k: v for k, v in PAIRS.items() if k != "ethbtc"}, ["btc", "eth"], "usd", ["btc"]))
    samples = render(exposition)
    assert samples.get("sfox_price", currency="btc", quote="usd") == 50000.0
    assert samples.get("sfox_price", currency="eth", quote="usd") is None
    assert "ethbtc" not in prices.last_prices()


def test_without_valuation_no_valuation_series() -> None:
    state = State(["main"], clock=FakeClock())
    names = render(Exposition(state, "test")).names()
    assert not {n for n in names if n.startswith(("sfox_price", "sfox_account_", "sfox_market_"))}


def test_a_ticker_from_the_feed_decodes_to_a_price() -> None:
    event = parse_frame(b'{"sequence":4,"recipient":"ticker.sfox.btcusd","timestamp":1649901842979345289,"payload":'
                        b'{"last":41420.58,"pair":"ethusd","timestamp":"2022-04-14T02:04:02.481Z"}}')
    assert getattr(event, "pair", None) == "btcusd"  # keyed by the feed name, not the payload
    assert math.isclose(getattr(event, "last", 0.0), 41420.58)


def test_an_account_value_is_the_correctly_rounded_sum() -> None:
    """Adding the terms one by one gave 1.2000000000000002 for 1 + 0.1 + 0.1 (a black-box probe)."""
    clock = FakeClock()
    state, prices, exposition = book(clock)
    prices.update("btcusd", 1.0)
    prices.update("ethbtc", 1.0)
    state.ingest("main", parse_frame(b'{"sequence":1,"recipient":"private.user.balances","timestamp":1,"payload":'
                                     b'[{"currency":"usd","balance":"1"},{"currency":"btc","balance":"0.1"},'
                                     b'{"currency":"eth","balance":"0.1"}]}'))
    assert 1.0 + 0.1 + 0.1 != 1.2  # the drift this guards against
    assert render(exposition).get("sfox_account_value", account="main", quote="usd") == 1.2


def test_tickers_of_pairs_no_route_uses_are_counted_not_kept() -> None:
    """A hostile sFOX sending ticker.sfox.<anything> grew the book by 300,000 entries (and 70 MB), kept
    until they went stale, and every scrape then scanned them all."""
    clock = FakeClock()
    _, prices, _ = book(clock)
    for n in range(10_000):
        prices.update(f"zz{n}usd", 1.5)
    prices.update("btcusd", 50000.0)
    assert prices.last_prices() == {"btcusd": 50000.0}
    assert prices.view().messages == 10_001


def test_a_late_ticker_does_not_undo_a_newer_price() -> None:
    """sFOX's messages may arrive out of order: the older one, arriving last, set the price."""
    clock = FakeClock()
    _, prices, exposition = book(clock)
    prices.update("btcusd", 60000.0, sent=1_700_000_000.0)
    prices.update("btcusd", 50000.0, sent=1_700_000_002.0)
    prices.update("btcusd", 40000.0, sent=1_700_000_001.0)  # late
    assert render(exposition).get("sfox_price", currency="btc", quote="usd") == 50000.0
    prices.update("btcusd", 45000.0)  # no timestamp: nothing to tell it by, so it is taken
    assert render(exposition).get("sfox_price", currency="btc", quote="usd") == 45000.0


def test_a_ticker_dated_far_ahead_does_not_freeze_the_price() -> None:
    """Every later ticker was 'late' behind it: a wrong price stayed, shown as fresh, for stale_after."""
    clock = FakeClock()
    _, prices, exposition = book(clock)
    prices.update("btcusd", 1.0, sent=clock.time() + 10 * 365 * 86400)
    clock.advance(3)
    prices.update("btcusd", 61000.0, sent=clock.time())
    assert render(exposition).get("sfox_price", currency="btc", quote="usd") == 61000.0


def test_the_feeds_needed_are_unknown_until_the_pair_list_is() -> None:
    """0 before the pair list was fetched said "nothing to price" and silenced SfoxMarketFeedDown
    while the pairs could not be fetched at all."""
    book = PriceBook("usd", 300, FakeClock())
    assert book.view().feeds is None
    book.set_routes({"usd": ((),)})
    assert book.view().feeds == 0  # only the quote held: nothing to subscribe
    book.set_routes({"btc": ((Leg("btcusd", False),), (Leg("btceur", False), Leg("eurusd", False)))})
    assert book.view().feeds == 3
