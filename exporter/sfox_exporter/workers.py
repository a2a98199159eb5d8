"""The exporter's connection workers, by name, so that a config reload can add, remove and replace
them one by one.

A unit is whatever owns threads for one sFOX connection: an account's feed and snapshot workers
today; the market-data connection (valuation) and enterprise accounts (Connect) are further units.
Each unit carries a fingerprint of the settings it was built from: a reload replaces exactly the
units whose fingerprint changed, so an untouched account keeps its connection, its backoff and its
place in the request budget. Each unit has its own stop event, so one can end while the rest run.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sfox_exporter.clock import Clock
from sfox_exporter.config import AccountConfig, Config, EndUsersConfig, Secret
from sfox_exporter.logs import Redactor
from sfox_exporter.metrics.endusers import EndUserBook
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.account import AccountSink
from sfox_exporter.sfox.connection import Connector
from sfox_exporter.sfox.decode import Event
from sfox_exporter.sfox.enterprise import EndUserSink, enterprise_settings, is_enterprise
from sfox_exporter.sfox.feed import FeedSink, FeedWorker
from sfox_exporter.sfox.ratelimit import RequestBudget, SlidingWindow
from sfox_exporter.sfox.session import ACCOUNT_FEED, SessionSettings
from sfox_exporter.sfox.snapshot import Fetcher, SnapshotWorker, rest_window
from sfox_exporter.valuation import market
from sfox_exporter.vocabulary import ErrorReason, FeedStatus

log = logging.getLogger("sfox_exporter")


class Unit(Protocol):
    """The threads behind one connection."""

    def start(self) -> None: ...

    def retire(self) -> None:
        """Ask the threads to end (non-blocking) and stop them writing anywhere."""

    def threads(self) -> list[threading.Thread]: ...


@dataclass(frozen=True)
class UnitSpec:
    """A unit as a config asks for it: what it was built from, and how to build it."""

    fingerprint: Hashable
    build: Callable[[], Unit]


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    stuck: tuple[str, ...] = ()  # retired threads that did not end in time

    def summary(self) -> str:
        parts = [f"{label}: {', '.join(names)}" for label, names in
                 (("added", self.added), ("removed", self.removed), ("restarted", self.changed)) if names]
        parts.append(f"unchanged: {len(self.kept)}")
        return "; ".join(parts)


class Workers:
    """The running units, by name."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._units: dict[str, tuple[Hashable, Unit]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Unit | None:
        with self._lock:
            entry = self._units.get(name)
        return entry[1] if entry else None

    def units(self) -> dict[str, Unit]:
        with self._lock:
            return {name: unit for name, (_, unit) in self._units.items()}

    def threads(self) -> list[threading.Thread]:
        return [thread for unit in self.units().values() for thread in unit.threads()]

    def apply(self, plan: Mapping[str, UnitSpec], timeout: float,
              between: Callable[[], None] = lambda: None) -> Changes:
        """Make the running units those of `plan`: retire the removed and changed ones and wait for
        them (up to `timeout`), call `between` (the state follows the new config there, while no
        retiring thread writes and no new one runs yet), then start the added and changed ones."""
        with self._lock:
            current = dict(self._units)
            removed = tuple(name for name in current if name not in plan)
            changed = tuple(name for name in current if name in plan and plan[name].fingerprint != current[name][0])
            # Out of the running set before they stop: their threads ending is no sign of a dead
            # process, and /healthz (which looks for dead threads) answered 503 through a reload.
            for name in (*removed, *changed):
                del self._units[name]
        added = tuple(name for name in plan if name not in current)
        kept = tuple(name for name in current if name in plan and name not in changed)
        stuck = self._retire([current[name][1] for name in (*removed, *changed)], timeout)
        between()
        fresh = {name: (plan[name].fingerprint, plan[name].build()) for name in (*changed, *added)}
        with self._lock:
            self._units.update(fresh)
        for _, unit in fresh.values():
            unit.start()
        return Changes(added, removed, changed, kept, stuck)

    def stop_all(self, timeout: float) -> tuple[str, ...]:
        return self._retire(list(self.units().values()), timeout)

    def _retire(self, units: Iterable[Unit], timeout: float) -> tuple[str, ...]:
        retiring = list(units)
        for unit in retiring:
            unit.retire()
        deadline = self._clock.monotonic() + timeout
        stuck = []
        for unit in retiring:
            for thread in unit.threads():
                if thread.is_alive():
                    thread.join(max(0.0, deadline - self._clock.monotonic()))
                if thread.is_alive():
                    stuck.append(thread.name)
        return tuple(stuck)


class RetirableSink:
    """A FeedSink that goes quiet once its unit is retired, so that a feed thread still winding down
    cannot write into the book of an account that was removed, or of its replacement."""

    def __init__(self, sink: FeedSink) -> None:
        self._sink = sink
        self._retired = threading.Event()

    def retire(self) -> None:
        self._retired.set()

    def status(self) -> FeedStatus:
        return self._sink.status() if not self._retired.is_set() else FeedStatus.STOPPED

    def set_status(self, status: FeedStatus) -> None:
        if not self._retired.is_set():
            self._sink.set_status(status)

    def deliver(self, event: Event) -> None:
        if not self._retired.is_set():
            self._sink.deliver(event)

    def deliver_many(self, events: list[Event]) -> None:
        if not self._retired.is_set():
            self._sink.deliver_many(events)

    def went_up(self) -> None:
        if not self._retired.is_set():
            self._sink.went_up()

    @property
    def errors_metric(self) -> str:
        return self._sink.errors_metric

    def resync(self) -> str:
        return self._sink.resync() if not self._retired.is_set() else "retired"

    def count_error(self, reason: ErrorReason) -> None:
        if not self._retired.is_set():
            self._sink.count_error(reason)

    def count_reconnect(self) -> None:
        if not self._retired.is_set():
            self._sink.count_reconnect()


class AccountUnit:
    """One account: its feed worker, and its REST snapshot worker when snapshots are on."""

    def __init__(self, feed: FeedWorker, snapshot: SnapshotWorker | None, sink: RetirableSink,
                 stop: threading.Event) -> None:
        self.feed = feed
        self.snapshot = snapshot
        self._sink = sink
        self._stop = stop

    def start(self) -> None:
        if self.snapshot is not None:
            self.snapshot.start()
            self.snapshot.request("start")
        self.feed.start()

    def retire(self) -> None:
        self._sink.retire()
        self._stop.set()
        self.feed.wake()
        if self.snapshot is not None:
            self.snapshot.wake()

    def threads(self) -> list[threading.Thread]:
        return [self.feed.thread] + ([self.snapshot.thread] if self.snapshot is not None else [])


@dataclass
class AccountUnits:
    """Builds account units from a config, with what every unit shares."""

    state: State
    budget: RequestBudget
    connector: Connector
    fetch: Fetcher
    clock: Clock
    rng: random.Random
    redactor: Redactor
    user_agent: str
    end_users: dict[str, EndUserBook]  # shared with the per-user renderer
    # Per account, across the units a reload builds for it: the REST rate limit, and what its end
    # users' book was built for.
    rest_windows: dict[str, SlidingWindow] = dataclasses.field(default_factory=dict)
    book_owners: dict[str, tuple[AccountConfig, EndUsersConfig, int]] = dataclasses.field(default_factory=dict)

    def plan(self, config: Config) -> dict[str, UnitSpec]:
        plan = {account_unit_name(account.name): UnitSpec(self.fingerprint(account, config),
                                                          self._builder(account, config))
                for account in config.accounts}
        if config.valuation.enabled and config.accounts:
            fingerprint = (config.accounts[0], config.valuation, config.sfox.ws_url, config.sfox.rest_url,
                           dataclasses.replace(config.feed, stale_after_seconds=0.0, max_series=1))
            plan[MARKET_UNIT] = UnitSpec(fingerprint, lambda: self.build_market(config))
        return plan

    def follow(self, config: Config) -> None:
        """Between retiring and building units on a reload: forget what the new config drops."""
        enterprise = {account.name for account in config.accounts if is_enterprise(account)}
        for name in [name for name in self.end_users if name not in enterprise]:
            del self.end_users[name]
            self.state.set_end_user_book(name, None)
        # So that reloads through ever new account names leave no book owner behind. REST windows
        # stay: an account removed and added back within 10 s must not get a fresh 5 calls.
        named = {account.name for account in config.accounts}
        for name in [name for name in self.book_owners if name not in named]:
            del self.book_owners[name]
        if not config.valuation.enabled:
            self.state.attach_market(None)

    def build_market(self, config: Config) -> MarketUnit:
        stop = threading.Event()
        data = market.build(config, self.state, budget=self.budget, connector=self.connector, fetch=self.fetch,
                            clock=self.clock, stop=stop, user_agent=self.user_agent,
                            rng=random.Random(self.rng.random()),
                            on_key=functools.partial(_add_key, self.redactor, "market-data"))
        assert data is not None  # planned only with valuation enabled and an account
        return MarketUnit(data, stop)

    @staticmethod
    def fingerprint(account: AccountConfig, config: Config) -> Hashable:
        """What the connection depends on. stale_after_seconds and max_series are the State's
        business, changed in place, so they are left out: changing them restarts no connection.
        An enterprise account's end users' book depends on the end_users settings and the cap."""
        feed = dataclasses.replace(config.feed, stale_after_seconds=0.0, max_series=1)
        if is_enterprise(account):
            return (account, config.sfox.ws_url, feed, config.end_users, config.feed.max_series)
        return (account, config.sfox.ws_url, config.sfox.rest_url, feed)

    def _builder(self, account: AccountConfig, config: Config) -> Callable[[], Unit]:
        return lambda: self.build(account, config)

    def build(self, account: AccountConfig, config: Config) -> AccountUnit:
        stop = threading.Event()
        snapshot = None
        enterprise = is_enterprise(account)
        if config.feed.rest_snapshot and not enterprise:  # sFOX has no REST endpoint for all end users
            window = self.rest_windows.setdefault(account.name, rest_window(self.clock))
            snapshot = SnapshotWorker(
                account, rest_url=config.sfox.rest_url, feed=config.feed, state=self.state, clock=self.clock,
                stop=stop, fetch=self.fetch, user_agent=self.user_agent, rng=random.Random(self.rng.random()),
                window=window)
        request = snapshot.request if snapshot is not None else None
        settings = SessionSettings((ACCOUNT_FEED,), ping_interval=config.feed.ping_interval_seconds,
                                   ping_timeout=config.feed.ping_timeout_seconds)
        inner: FeedSink
        if enterprise:
            book = self.end_users.get(account.name)
            # sFOX replays nothing, so a new book would stay empty until every user's balances
            # changed: a connection rebuilt for a new ping interval, say, keeps its book, and new book
            # settings (shard, caps) take over what it holds. Another key or account starts anew.
            owner = (account, config.end_users, config.feed.max_series)
            kept = self.book_owners.get(account.name)
            if book is None or kept is None or (kept[0].key, kept[0].kind) != (account.key, account.kind):
                book = EndUserBook(config.end_users, config.feed.max_series)
            elif kept != owner:
                held = book.view().users
                book, refused = book.carried_into(config.end_users, config.feed.max_series)
                log.info("end users carried over to the new end_users settings: %d of %d kept, %d refused "
                         "(counted in errors{reason=\"cardinality\"})", book.view().users, held, refused,
                         extra={"account": account.name})
                if refused:
                    self.state.count_error(account.name, ErrorReason.CARDINALITY, refused)
            self.book_owners[account.name] = owner
            self.end_users[account.name] = book
            self.state.set_end_user_book(account.name, book)
            inner = EndUserSink(self.state, account.name, book)
            settings = enterprise_settings(account, settings)
        else:
            inner = AccountSink(self.state, account.name, request)
        sink = RetirableSink(inner)
        feed = FeedWorker(
            account.name, key_source=account.key, settings=settings, ws_url=config.sfox.ws_url, feed=config.feed,
            sink=sink, budget=self.budget, connector=self.connector, clock=self.clock, stop=stop,
            rng=random.Random(self.rng.random()),
            on_key=functools.partial(_add_key, self.redactor, account.name))
        return AccountUnit(feed, snapshot, sink, stop)


class MarketUnit:
    """The market-data connection (valuation): pair discovery and the ticker feeds."""

    def __init__(self, data: market.MarketData, stop: threading.Event) -> None:
        self.data = data
        self._stop = stop

    def start(self) -> None:
        self.data.start()

    def retire(self) -> None:
        self._stop.set()
        self.data.wake()

    def threads(self) -> list[threading.Thread]:
        return self.data.threads()


MARKET_UNIT = "market-data"


def account_unit_name(account: str) -> str:
    return f"account:{account}"


def _add_key(redactor: Redactor, owner: str, key: Secret) -> None:
    redactor.add(key.reveal(), owner=owner)
