"""Valuation against the simulator: prices by every route, a currency that appears later, a pair
that goes silent, valuation off, and the market-data connection's failures."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable

import pytest

from sfox_exporter.app import Exporter
from sfox_exporter.clock import SystemClock
from sfox_exporter.config import EndUsersConfig, Secret, ValuationConfig
from sfox_exporter.metrics.endusers import EndUserBook
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.connect import EndUserBalances
from sfox_exporter.sfox.connection import Connection
from sfox_exporter.sfox.decode import AccountBalance
from sfox_exporter.sfox.ratelimit import RequestBudget
from sfox_exporter.sfox.snapshot import FetchResult
from sfox_exporter.sfox.wanted import WantedFeeds
from sfox_exporter.simulator import Simulator
from sfox_exporter.valuation.market import PAIRS_REFRESH_SECONDS, MarketData, held_currencies
from sfox_exporter.valuation.prices import PriceBook
from tests.conftest import KEY_MAIN, KEY_OTHER, FakeClock, Samples, make_config, scrape_until, wait_until

Start = Callable[..., Exporter]
DEMO_FEEDS = {"ticker.sfox.btcusd", "ticker.sfox.ethbtc", "ticker.sfox.solusd", "ticker.sfox.usdtusd",
              "ticker.sfox.usdtusdc"}


def valued(simulator: Simulator, start_exporter: Start, **valuation: object) -> Exporter:
    config = make_config(simulator, valuation=ValuationConfig(**valuation))  # type: ignore[arg-type]
    exporter = start_exporter(config)
    wait_until(lambda: simulator.market.subscribed_feeds() >= DEMO_FEEDS, message="ticker feeds subscribed")
    return exporter


def market_up(samples: Samples) -> bool:
    return samples.get("sfox_market_feed_up") == 1.0


def set_prices(simulator: Simulator) -> None:
    for pair, last in (("btcusd", 50000.0), ("ethbtc", 0.05), ("solusd", 150.0), ("usdtusd", 1.001),
                       ("usdtusdc", 0.999)):
        assert simulator.market.set_price(pair, last) == 1


def test_direct_bridged_and_inverse_prices_and_the_value(simulator: Simulator, start_exporter: Start) -> None:
    exporter = valued(simulator, start_exporter)
    simulator.push_all(KEY_MAIN)
    set_prices(simulator)
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_price", currency="usdc", quote="usd") is not None
                           and s.get("sfox_balance", account="main", currency="sol") is not None)
    assert samples.get("sfox_price", currency="usd", quote="usd") == 1.0
    assert samples.get("sfox_price", currency="btc", quote="usd") == 50000.0
    assert samples.get("sfox_price", currency="eth", quote="usd") == pytest.approx(2500.0)  # ethbtc x btcusd
    # usdc: 1/usdtusdc x usdtusd
    assert samples.get("sfox_price", currency="usdc", quote="usd") == pytest.approx(1.001 / 0.999)
    ledger = simulator.ledger(KEY_MAIN)
    prices = {"usd": 1.0, "btc": 50000.0, "eth": 2500.0, "usdc": 1.001 / 0.999, "sol": 150.0}
    expected = sum(float(holding.balance) * prices[currency] for currency, holding in ledger.holdings.items())
    assert samples.get("sfox_account_value", account="main", quote="usd") == pytest.approx(expected)
    assert samples.get("sfox_account_unpriced_currencies", account="main", quote="usd") == 0.0
    assert market_up(samples)
    # Feeds the plan gains later are subscribed in a batch within seconds: wait for them.
    scrape_until(exporter.url, lambda s: s.get("sfox_market_feeds") == len(simulator.market.subscribed_feeds()) > 0)
    # One market connection beside the account's, authenticated with the first account's key.
    assert simulator.connection_count(KEY_MAIN) == 2


def test_inverse_pair_when_the_quote_is_a_base(simulator: Simulator, start_exporter: Start) -> None:
    exporter = start_exporter(make_config(simulator, valuation=ValuationConfig(quote="btc", bridges=())))
    wait_until(lambda: simulator.market.subscribers("btcusd") == 1)
    simulator.market.set_price("btcusd", 40000.0)
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_price", currency="usd", quote="btc") is not None)
    assert samples.get("sfox_price", currency="usd", quote="btc") == pytest.approx(1 / 40000)


def test_a_currency_that_appears_later_is_subscribed_within_seconds(simulator: Simulator,
                                                                     start_exporter: Start) -> None:
    simulator.market.add_pair("ltcusd", "ltc", "usd", 80.0)
    exporter = valued(simulator, start_exporter)
    assert simulator.market.subscribers("ltcusd") == 0
    subscribes = len(simulator.requests("subscribe", KEY_MAIN))
    simulator.set_balance(KEY_MAIN, "ltc", available="3", held="0")
    # Within seconds: later subscribes are batched at most every 5 s, after a 1 s poll.
    wait_until(lambda: simulator.market.subscribers("ltcusd") == 1, timeout=10, message="ltcusd subscribed")
    assert len(simulator.requests("subscribe", KEY_MAIN)) == subscribes + 1  # one batched request
    simulator.market.set_price("ltcusd", 81.5)
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_price", currency="ltc", quote="usd") == 81.5)
    assert market_up(samples)


def test_a_silent_pair_goes_stale_and_its_currency_counts_unpriced(simulator: Simulator,
                                                                    start_exporter: Start) -> None:
    exporter = valued(simulator, start_exporter, stale_after_seconds=1.5)
    simulator.push_all(KEY_MAIN)
    set_prices(simulator)
    scrape_until(exporter.url, lambda s: s.get("sfox_price", currency="sol", quote="usd") == 150.0
                 and s.get("sfox_account_unpriced_currencies", account="main", quote="usd") == 0.0)
    simulator.market.silence("solusd")

    def others_fresh_sol_stale(s: Samples) -> bool:
        for pair in ("btcusd", "ethbtc", "usdtusd", "usdtusdc"):  # keep the others fresh
            simulator.market.set_price(pair, simulator.market.price(pair))
        return (s.get("sfox_price", currency="sol", quote="usd") is None
                and s.get("sfox_account_unpriced_currencies", account="main", quote="usd") == 1.0)

    samples = scrape_until(exporter.url, others_fresh_sol_stale, timeout=10)
    assert samples.get("sfox_price", currency="btc", quote="usd") == 50000.0


def test_valuation_disabled_opens_no_market_connection(simulator: Simulator, start_exporter: Start) -> None:
    exporter = start_exporter(make_config(simulator, valuation=ValuationConfig(enabled=False)))
    simulator.push_all(KEY_MAIN)
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_feed_up", account="main") == 1.0)
    assert not {n for n in samples.names() if n.startswith(("sfox_price", "sfox_account_", "sfox_market_"))}
    assert simulator.market.pair_requests == 0
    assert simulator.connection_count(KEY_MAIN) == 1


def test_rejected_key_then_accepted(simulator: Simulator, start_exporter: Start) -> None:
    simulator.reject_auth(KEY_MAIN)
    exporter = start_exporter(make_config(simulator, valuation=ValuationConfig()))
    samples = scrape_until(exporter.url, lambda s: s.number("sfox_market_feed_errors_total", reason="auth") >= 1)
    assert samples.get("sfox_market_feed_up") == 0.0
    simulator.reject_auth(KEY_MAIN, False)
    up = scrape_until(exporter.url, market_up)
    # Now the WebSocket's authenticate itself is refused, on reconnecting.
    simulator.reject_auth(KEY_MAIN)
    simulator.drop_connections(KEY_MAIN)
    auth = up.number("sfox_market_feed_errors_total", reason="auth")
    scrape_until(exporter.url, lambda s: s.number("sfox_market_feed_errors_total", reason="auth") > auth
                 and s.get("sfox_market_feed_up") == 0.0)
    simulator.reject_auth(KEY_MAIN, False)
    scrape_until(exporter.url, market_up)


def test_a_rejected_key_gives_way_to_another_accounts(simulator: Simulator, start_exporter: Start) -> None:
    """Market data is anyone's to read: with the first account's key revoked, valuation goes on with
    the next account's, on the pairs request and on the WebSocket alike."""
    simulator.reject_auth(KEY_MAIN)
    exporter = start_exporter(make_config(simulator, accounts={"main": KEY_MAIN, "other": KEY_OTHER},
                                          valuation=ValuationConfig()))
    up = scrape_until(exporter.url, market_up)
    assert up.number("sfox_market_feed_errors_total", reason="auth") >= 1  # the first key was tried
    assert up.get("sfox_feed_up", account="main") == 0.0  # that account itself stays down, as it should
    # Now the key in use is revoked and the connection drops: the WebSocket's authenticate is refused,
    # and the ring comes round to the first key, put right in the meantime.
    simulator.reject_auth(KEY_MAIN, False)
    simulator.reject_auth(KEY_OTHER)
    simulator.drop_connections(KEY_OTHER)
    auth = up.number("sfox_market_feed_errors_total", reason="auth")
    scrape_until(exporter.url, lambda s: s.number("sfox_market_feed_errors_total", reason="auth") > auth
                 and market_up(s))


def test_drop_and_half_open_reconnect_and_resubscribe(simulator: Simulator, start_exporter: Start) -> None:
    simulator.market.add_pair("ltcusd", "ltc", "usd", 80.0)
    exporter = valued(simulator, start_exporter)
    simulator.set_balance(KEY_MAIN, "ltc", available="3", held="0")
    wait_until(lambda: simulator.market.subscribers("ltcusd") == 1)
    simulator.drop_connections(KEY_MAIN)
    samples = scrape_until(exporter.url, lambda s: s.number("sfox_market_feed_reconnects_total") >= 1
                           and market_up(s))
    assert samples.number("sfox_market_feed_errors_total", reason="connection") >= 1
    wait_until(lambda: DEMO_FEEDS | {"ticker.sfox.ltcusd"} <= simulator.market.subscribed_feeds())
    simulator.half_open(KEY_MAIN)  # no pong: the ping timeout (1 s) ends it
    scrape_until(exporter.url, lambda s: s.number("sfox_market_feed_reconnects_total") >= 2 and market_up(s))
    # The muted connection still counts as a subscriber in the simulator: send until the price shows.
    scrape_until(exporter.url, lambda s: simulator.market.set_price("ltcusd", 90.0) > 0
                 and s.get("sfox_price", currency="ltc", quote="usd") == 90.0)


def test_a_refused_feed_costs_only_its_own_prices_and_failing_pairs_are_counted(simulator: Simulator,
                                                                                   start_exporter: Start) -> None:
    """A subscribe sFOX refuses for one feed (a delisted pair, say) ended the market connection on
    every attempt, with that feed asked for again each time: no price at all, for good."""
    simulator.market.fail_pairs(500, times=2)
    simulator.refused_feeds.add("ticker.sfox.solusd")
    exporter = start_exporter(make_config(simulator, valuation=ValuationConfig()))
    wait_until(lambda: simulator.market.subscribers("btcusd") == 1, message="the other feeds taken")
    assert simulator.market.set_price("btcusd", 50000.0) == 1
    samples = scrape_until(exporter.url, lambda s: s.number("sfox_market_feed_errors_total", reason="rest") >= 2
                           and s.number("sfox_market_feed_errors_total", reason="subscribe") >= 1
                           and s.get("sfox_price", currency="btc", quote="usd") == 50000.0)
    assert market_up(samples)  # it ended at every attempt: never up, no price at all
    assert samples.get("sfox_price", currency="sol", quote="usd") is None
    # Named as refused, the feed is not asked for again, on this connection or the next.
    simulator.refused_feeds.clear()
    simulator.drop_connections(KEY_MAIN)  # the account's connection too: both come back
    scrape_until(exporter.url, lambda s: s.number("sfox_market_feed_reconnects_total") >= 1 and market_up(s)
                 and s.get("sfox_feed_up", account="main") == 1.0, timeout=30)
    wait_until(lambda: simulator.market.subscribers("btcusd") == 1, message="the feeds taken again")
    assert simulator.market.subscribers("solusd") == 0


def test_a_failed_pairs_fetch_is_retried_when_its_backoff_says_not_at_the_next_poll(simulator: Simulator) -> None:
    """The log says "retrying in 0.7s"; with a poll of 30 s the retry must still come then."""
    config = make_config(simulator, valuation=ValuationConfig())
    state = State([account.name for account in config.accounts], clock=SystemClock())
    # A 200 that lists no usable pair (maintenance, an error object) is a failure too: taken as the list,
    # it withdrew every price until the next hourly fetch.
    answers = [FetchResult(500), FetchResult(200, b'{"error":"temporarily offline for maintenance"}'),
               FetchResult(200, b'{"btcusd":{"base":"btc","quote":"usd"}}')]

    def fetch(url: str, key: Secret, timeout: float, agent: str) -> FetchResult:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def refuse(url: str, timeout: float) -> Connection:
        raise OSError("no market connection in this test")

    stop = threading.Event()
    data = MarketData(config, state=state, book=PriceBook("usd", 300, SystemClock()),
                      budget=RequestBudget(SystemClock()), connector=refuse, fetch=fetch, clock=SystemClock(),
                      stop=stop, user_agent="test", poll_seconds=30.0)
    data.start()
    try:
        wait_until(lambda: data.pair_fetches >= 3, timeout=5, message="three fetches, backoff apart")
    finally:
        stop.set()
        data.thread.join(5)
    assert data.pair_fetches == 3  # the third succeeded: the next is an hour away


def test_an_unexpected_error_in_the_pairs_fetch_does_not_spin(simulator: Simulator) -> None:
    """The wait until the next fetch must move on after a failure of any kind, exceptions too."""
    config = make_config(simulator, valuation=ValuationConfig(), backoff_initial_seconds=0.2, backoff_max_seconds=0.4)
    calls: list[float] = []

    def fetch(url: str, key: Secret, timeout: float, agent: str) -> FetchResult:
        calls.append(time.monotonic())
        raise RuntimeError("a bug of tomorrow")

    stop = threading.Event()
    data = MarketData(config, state=State(["main"], clock=SystemClock()), book=PriceBook("usd", 300, SystemClock()),
                      budget=RequestBudget(SystemClock()), connector=lambda url, timeout: None,  # type: ignore[arg-type,return-value]
                      fetch=fetch, clock=SystemClock(), stop=stop, user_agent="test", poll_seconds=30.0)
    data.start()
    try:
        wait_until(lambda: len(calls) >= 3, timeout=5, message="three fetches, backoff apart")
    finally:
        stop.set()
        data.thread.join(5)
    assert len(calls) <= 12, len(calls)  # 0.1-0.4 s apart, not tens of thousands a second
    assert min(later - earlier for earlier, later in itertools.pairwise(calls)) >= 0.09


def test_currencies_no_pair_prices_are_said_once_each_and_only_those_held_are_remembered(
        simulator: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    """REST snapshots replace an account's currencies wholesale: one bringing new names every time
    made a log line per name (441,000 lines in 2 minutes) and a set of every name ever held."""
    config = make_config(simulator, valuation=ValuationConfig())
    state = State(["main"], clock=SystemClock())

    def fetch(url: str, key: Secret, timeout: float, agent: str) -> FetchResult:
        return FetchResult(200, b'{"btcusd":{"base":"btc","quote":"usd"}}')

    data = MarketData(config, state=state, book=PriceBook("usd", 300, SystemClock()),
                      budget=RequestBudget(SystemClock()), connector=lambda url, timeout: None,  # type: ignore[arg-type,return-value]
                      fetch=fetch, clock=SystemClock(), stop=threading.Event(), user_agent="test")
    data._start_worker = lambda feeds: None  # type: ignore[method-assign,assignment,return-value]  # noqa: SLF001
    with caplog.at_level(logging.INFO, logger="sfox_exporter.valuation"):
        for round_ in range(20):
            held = tuple(AccountBalance(f"c{round_}x{n}", 1.0, None, None, ()) for n in range(100))
            state.apply_snapshot("main", held, state.generation("main"))
            data.step()
    lines = [r.getMessage() for r in caplog.records if "no pair, direct or through a bridge" in r.getMessage()]
    assert len(lines) == 20 and lines[-1].endswith("and 90 more in usd: unpriced while its balance is not 0"), lines[-1]
    assert len(data._reported) <= 100 + 2  # noqa: SLF001 - those held now and the bridges


def test_a_refused_feed_is_asked_for_again_after_the_next_fetch_of_the_pair_list(simulator: Simulator) -> None:
    """A refusal may be passing (a pair paused, say): remembered for good, it left a currency unpriced
    for the life of the process whenever sFOX's pair list did not change."""
    clock = FakeClock()
    state = State(["main"], clock=clock, stale_after_seconds=0)
    state.apply_snapshot("main", (AccountBalance("eth", 1.0, None, None, ()),), state.generation("main"))
    fetches = []

    def fetch(url: str, key: Secret, timeout: float, agent: str) -> FetchResult:
        fetches.append(clock.monotonic())
        return FetchResult(200, b'{"btcusd":{"base":"btc","quote":"usd"},"ethusd":{"base":"eth","quote":"usd"}}')

    config = make_config(simulator, valuation=ValuationConfig())
    data = MarketData(config, state=state, book=PriceBook("usd", 300, clock), budget=RequestBudget(clock),
                      connector=lambda url, timeout: None,  # type: ignore[arg-type,return-value]
                      fetch=fetch, clock=clock, stop=threading.Event(), user_agent="test")

    class Worker:
        wanted = WantedFeeds()

    def start(feeds: tuple[str, ...]) -> Worker:
        Worker.wanted.set(feeds)
        return Worker()

    data._start_worker = start  # type: ignore[method-assign,assignment]  # noqa: SLF001
    data.step()
    Worker.wanted.refuse(["ticker.sfox.ethusd"])
    clock.advance(PAIRS_REFRESH_SECONDS / 2)
    data.step()
    assert Worker.wanted.current()[0] == ["ticker.sfox.btcusd"]
    clock.advance(PAIRS_REFRESH_SECONDS / 2)
    data.step()  # the same list, fetched again
    assert len(fetches) == 2
    assert Worker.wanted.current()[0] == ["ticker.sfox.btcusd", "ticker.sfox.ethusd"]


def test_what_end_users_are_owed_is_priced_too() -> None:
    """A Connect platform's market connection priced the bridges alone: nothing it owes had a price."""
    state = State(["main", "platform"], clock=FakeClock())
    book = EndUserBook(EndUsersConfig(), max_series=100)
    book.apply(EndUserBalances(None, None, "u1", (AccountBalance("sol", 2.0, 2.0, 0.0, ()),), 0))
    state.set_end_user_book("platform", book)
    state.apply_snapshot("main", (AccountBalance("eth", 1.0, None, None, ()),), state.generation("main"))
    assert held_currencies(state.snapshot()) == {"eth", "sol"}
