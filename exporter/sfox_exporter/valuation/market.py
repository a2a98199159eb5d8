"""The market-data side of valuation: pair discovery, the one ticker connection, and its sink.

sFOX asks for market data on a connection apart from account data. One thread (`MarketData`) finds
the pairs (`GET /v1/markets/currency-pairs`, with backoff on failure), plans a route to the quote
for every currency held in any account or Web3 wallet and for the bridges, and hands the ticker
feeds those routes need to one FeedWorker: the same lifecycle as an account feed (pings, backoff,
reconnect, resubscribe, the shared per-IP budget). A currency that appears later is routed within
a poll (1 s) and its feeds join in one batched subscribe through `FeedWorker.wanted`.

Market data is the same whoever reads it, so any user account's key will do: when sFOX rejects the
one in use (or it cannot be loaded), the next account's key is tried (`KeyRing`), and valuation
keeps working while one key is revoked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Iterable

from sfox_exporter.clock import Clock
from sfox_exporter.config import AccountConfig, AccountKind, Config, KeyLoadError, Secret
from sfox_exporter.logs import Episode
from sfox_exporter.metrics.state import Snapshot, State
from sfox_exporter.sfox.backoff import Backoff
from sfox_exporter.sfox.connection import Connector
from sfox_exporter.sfox.decode import BadFrame, Event, Ticker, parse_currency_pairs
from sfox_exporter.sfox.enterprise import enterprise_settings
from sfox_exporter.sfox.feed import FeedWorker
from sfox_exporter.sfox.intake import LARGE_INPUTS
from sfox_exporter.sfox.ratelimit import RequestBudget, asked_wait
from sfox_exporter.sfox.session import SessionSettings, ticker_feed
from sfox_exporter.sfox.snapshot import DEFAULT_RETRY_AFTER_SECONDS, Fetcher
from sfox_exporter.valuation import routes
from sfox_exporter.valuation.prices import PriceBook
from sfox_exporter.vocabulary import ErrorReason, FeedStatus

log = logging.getLogger("sfox_exporter.valuation")

PAIRS_PATH = "/v1/markets/currency-pairs"
NAME = "market-data"  # the feed worker's name in logs (its `account` field)
POLL_SECONDS = 1.0  # how soon a currency that appears is routed and subscribed
PAIRS_REFRESH_SECONDS = 3600.0  # sFOX lists and delists pairs; a vanished pair's price goes with it
FEED_MAX_WAIT_SECONDS = 1.0  # how soon the feed worker picks up feeds asked for


class MarketSink:
    """A FeedSink into the price book: a ticker is one price update, the rest is counted."""

    def __init__(self, book: PriceBook, on_rejected: Callable[[], None] = lambda: None) -> None:
        self._book = book
        self._on_rejected = on_rejected

    def status(self) -> FeedStatus:
        return self._book.status()

    def set_status(self, status: FeedStatus) -> None:
        if status == FeedStatus.AUTH_REJECTED:  # the worker's verdict on a connection sFOX refused
            self._on_rejected()
        self._book.set_status(status)

    def deliver(self, event: Event) -> None:
        if isinstance(event, Ticker):
            self._book.update(event.pair, event.last, event.timestamp)
        else:
            self._book.count_message()
            if isinstance(event, BadFrame):
                self._book.count_error(ErrorReason(event.reason))
        if event.schema_errors:
            self._book.count_error(ErrorReason.SCHEMA, event.schema_errors)

    def deliver_many(self, events: list[Event]) -> None:
        for event in events:
            self.deliver(event)

    def went_up(self) -> None:
        """Nothing to resync: the next ticker brings each price afresh."""

    errors_metric = "sfox_market_feed_errors_total"

    def resync(self) -> str:
        return "prices need no snapshot: each ticker brings its pair's"

    def count_error(self, reason: ErrorReason) -> None:
        self._book.count_error(reason)

    def count_reconnect(self) -> None:
        self._book.count_reconnect()


class KeyRing:
    """The keys market data may use, in config order, with the one in use; the feed worker's
    KeyLoader. A rejection moves on to the next, round the ring: a key put right later is found again."""

    def __init__(self, accounts: list[AccountConfig]) -> None:
        self._accounts = accounts
        self._index = 0
        self._lock = threading.Lock()

    @property
    def account(self) -> AccountConfig:
        with self._lock:
            return self._accounts[self._index]

    def load(self) -> Secret:
        return self.account.key.load()

    def rejected(self) -> None:
        """The key in use was refused or could not be loaded: the next account's, if there is one."""
        with self._lock:
            if len(self._accounts) < 2:
                return
            old = self._accounts[self._index]
            self._index = (self._index + 1) % len(self._accounts)
            new = self._accounts[self._index]
        log.warning("market data: account %s's key failed; trying account %s's", old.name, new.name,
                    extra={"account": NAME})


def held_currencies(snapshot: Snapshot) -> set[str]:
    """Every currency in any account's balances or Web3 wallets, or owed to a Connect platform's end
    users: so that what a platform owes can be valued in PromQL (sfox_end_users_balance x sfox_price)."""
    held: set[str] = set()
    for view in snapshot.accounts:
        held.update(view.balances)
        held.update(wallet.currency for wallet in view.wallets.values() if wallet.currency)
        if view.end_users is not None:
            held.update(totals.currency for totals in view.end_users.currencies)
    return held


class MarketData:
    def __init__(
        self,
        config: Config,
        *,
        state: State,
        book: PriceBook,
        budget: RequestBudget,
        connector: Connector,
        fetch: Fetcher,
        clock: Clock,
        stop: threading.Event,
        user_agent: str,
        rng: random.Random | None = None,
        on_key: Callable[[Secret], None] = lambda key: None,
        poll_seconds: float = POLL_SECONDS,
        pairs_refresh_seconds: float = PAIRS_REFRESH_SECONDS,
    ) -> None:
        self._config = config
        self._valuation = config.valuation
        self._state = state
        self.book = book
        self._budget = budget
        self._connector = connector
        self._fetch = fetch
        self._clock = clock
        self._stop = stop
        self._user_agent = user_agent
        self._rng = rng or random.Random()
        self._on_key = on_key
        self._poll = poll_seconds
        self._refresh = pairs_refresh_seconds
        # User accounts' keys: a Connect partner token is meant for the enterprise feeds. Only a
        # config of enterprise accounts alone falls back to one, sent with its enterprise flag.
        users = [account for account in config.accounts if account.kind == AccountKind.USER]
        self.keys = KeyRing(users or [config.accounts[0]])
        self._url = config.sfox.rest_url + PAIRS_PATH
        self._backoff = Backoff(config.feed.backoff_initial_seconds, config.feed.backoff_max_seconds,
                                random.Random(self._rng.random()))
        self._failures = Episode(log, NAME)
        self._pairs: dict[str, tuple[str, str]] | None = None
        self._next_fetch = 0.0
        self._planned: tuple[frozenset[str], int] | None = None
        self._pairs_generation = 0
        self._reported: set[str] = set()
        self._asked: set[str] = set()
        self._fetches = 0  # successful fetches of the pair list
        self.worker: FeedWorker | None = None
        self.pair_fetches = 0
        self.thread = threading.Thread(target=self.run, name="market-data", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    def threads(self) -> list[threading.Thread]:
        return [self.thread] + ([self.worker.thread] if self.worker is not None else [])

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a bug must not end valuation for good
                log.exception("unexpected error in the market-data thread", extra={"account": NAME})
                self.book.count_error(ErrorReason.CONNECTION)
                # Whatever raised may not have moved the next fetch on: without this the wait below
                # would be 0, and the loop would spin (and perhaps call sFOX) as fast as it can.
                self._next_fetch = max(self._next_fetch, self._clock.monotonic() + self._backoff.next())
            # Woken for a retry when it is due, not at the next poll, so that the log's "retrying in" holds.
            self._stop.wait(min(self._poll, max(0.0, self._next_fetch - self._clock.monotonic())))
        if self.worker is None:
            self.book.set_status(FeedStatus.STOPPED)

    def step(self) -> None:
        """Refresh the pairs when due, route what is held, subscribe what is missing."""
        if self._clock.monotonic() >= self._next_fetch:
            fetched = self._fetches
            self._fetch_pairs()
            if self.worker is not None and self._fetches != fetched:
                # Feeds sFOX refused are asked for again after each fetch of the pair list (hourly): a
                # refusal may have been passing, and one more subscribe an hour is all it costs.
                self.worker.wanted.forgive()
        if self._pairs is None:
            return
        currencies = frozenset(held_currencies(self._state.snapshot()) | set(self._valuation.bridges))
        if self._planned != (currencies, self._pairs_generation):
            self._planned = (currencies, self._pairs_generation)
            self._plan(self._pairs, currencies)

    # --- pairs -------------------------------------------------------------------------------------

    def _fetch_pairs(self) -> None:
        try:
            key = self.keys.load()
        except KeyLoadError as error:
            self._failed(ErrorReason.AUTH, f"cannot load the API key: {error}", None)
            self.keys.rejected()
            return
        self.pair_fetches += 1
        result = self._fetch(self._url, key, self._config.feed.rest_timeout_seconds, self._user_agent)
        if result.status != 200:
            detail = result.error if result.status is None else f"HTTP {result.status}"
            wait = asked_wait(result.status, result.retry_after, self._clock.time(), DEFAULT_RETRY_AFTER_SECONDS)
            rejected = result.status in (401, 403)
            self._failed(ErrorReason.AUTH if rejected else ErrorReason.REST,
                         f"{detail}: sFOX rejected the API key" if rejected else detail, wait)
            if rejected:
                self.keys.rejected()
            return
        with contextlib.ExitStack() as held:  # decoded one large input at a time, as frames and snapshots are
            LARGE_INPUTS.admit(len(result.body), held)
            pairs = parse_currency_pairs(result.body)
        if not pairs:  # {} or an error object: taken as the pair list, it would withdraw every price for an hour
            self._failed(ErrorReason.REST, "the currency-pairs response lists no pair with a base and a quote", None)
            return
        self._backoff.reset()
        self._failures.recovered("currency pairs fetched")
        self._next_fetch = self._clock.monotonic() + self._refresh
        self._fetches += 1
        if pairs != self._pairs:
            self._pairs = pairs
            self._pairs_generation += 1
            log.info("%d currency pairs listed by sFOX", len(pairs), extra={"account": NAME})
            if not routes.quote_reachable(pairs, self._valuation.quote) and "quote" not in self._reported:
                self._reported.add("quote")
                log.warning("no sFOX pair has the valuation quote %r on either side: nothing can be valued",
                            self._valuation.quote, extra={"account": NAME})

    def _failed(self, reason: ErrorReason, detail: str, wait: float | None) -> None:
        self.book.count_error(reason)
        delay = max(self._backoff.next(), wait or 0.0)  # a 429's Retry-After, never sooner than the backoff
        self._next_fetch = self._clock.monotonic() + delay
        self._failures.failed("fetching the currency pairs failed (%s); retrying in %.1fs (counted in %s)",
                              detail, delay, MarketSink.errors_metric)

    # --- routes and feeds --------------------------------------------------------------------------

    def _plan(self, pairs: dict[str, tuple[str, str]], currencies: Iterable[str]) -> None:
        planned = routes.plan(pairs, currencies, self._valuation.quote, self._valuation.bridges)
        unpriced = {currency for currency, found in planned.items() if not found}
        # One line for those not said before; only the currencies held now are remembered (REST
        # snapshots may bring new names every time: a line each, and a set of them all, grew for ever).
        new = sorted(unpriced - self._reported)
        self._reported = unpriced | (self._reported & {"quote"})
        if new:
            shown = ", ".join(new[:10]) + (f" and {len(new) - 10} more" if len(new) > 10 else "")
            log.info("no pair, direct or through a bridge, prices %s in %s: unpriced while its balance is not 0",
                     shown, self._valuation.quote, extra={"account": NAME})
        self.book.set_routes(planned)
        self._subscribe({ticker_feed(pair) for pair in routes.feeds_of(planned.values())})

    def _subscribe(self, feeds: set[str]) -> None:
        """The plan's feeds, and only them, on every later connection (a delisted pair's feed, asked
        for again, could be refused)."""
        if feeds == self._asked:
            return
        self._asked = set(feeds)
        if self.worker is None:
            self.worker = self._start_worker(tuple(sorted(feeds)))
        else:
            self.worker.wanted.set(sorted(feeds))

    def _start_worker(self, feeds: tuple[str, ...]) -> FeedWorker:
        feed = self._config.feed
        # No feeds of its own: all are wanted ones, which follow the plan and leave out refused ones.
        settings = SessionSettings((), ping_interval=feed.ping_interval_seconds,
                                   ping_timeout=feed.ping_timeout_seconds, partial_subscribe=True)
        account = self.keys.account
        if account.kind == AccountKind.ENTERPRISE:  # then the ring holds this one account alone
            settings = dataclasses.replace(enterprise_settings(account, settings), feeds=())
        worker = FeedWorker(
            NAME, key_source=self.keys, settings=settings, ws_url=self._config.sfox.ws_url, feed=feed,
            sink=MarketSink(self.book, self.keys.rejected), budget=self._budget, connector=self._connector,
            clock=self._clock, stop=self._stop, rng=random.Random(self._rng.random()), on_key=self._on_key,
            max_wait=FEED_MAX_WAIT_SECONDS,
        )
        worker.wanted.set(feeds)
        worker.start()
        return worker


def build(config: Config, state: State, *, budget: RequestBudget, connector: Connector, fetch: Fetcher,
          clock: Clock, stop: threading.Event, user_agent: str, rng: random.Random,
          on_key: Callable[[Secret], None]) -> MarketData | None:
    """The market-data side when valuation is enabled, its price book rendered with the State."""
    if not config.valuation.enabled or not config.accounts:
        return None
    book = PriceBook(config.valuation.quote, config.valuation.stale_after_seconds, clock, on_change=state.touch)
    state.attach_market(book)
    return MarketData(config, state=state, book=book, budget=budget, connector=connector, fetch=fetch, clock=clock,
                      stop=stop, user_agent=user_agent, rng=rng, on_key=on_key)
