"""The balance book and feed health of every account, behind one lock.

Feed threads and snapshot workers write; scrapes read a consistent, immutable Snapshot. Every
mutation bumps `version`, so a scrape that finds the version unchanged can reuse its last output.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from sfox_exporter.clock import Clock
from sfox_exporter.config import Threshold
from sfox_exporter.metrics.endusers import EndUserBook, EndUsersView
from sfox_exporter.sfox.decode import BadFrame, Balance, BalanceUpdate, EndUserBalances, Event, Web3Balance
from sfox_exporter.sfox.documented import DOCUMENTED_SERIES
from sfox_exporter.valuation.prices import MarketView
from sfox_exporter.vocabulary import ERROR_REASONS, MESSAGE_KINDS, ErrorReason, FeedStatus


@dataclass
class _Book:
    name: str
    thresholds: tuple[Threshold, ...]
    balances: dict[str, Balance] = field(default_factory=dict)
    # Currencies whose entry makes other than the documented number of series: while a message of
    # the documented shape touches none of them, it adds exactly that many per new currency.
    irregular: set[str] = field(default_factory=set)
    wallets: dict[tuple[str, str, str], Web3Balance] = field(default_factory=dict)
    # Which feed message last wrote each currency, so that a snapshot requested before it
    # does not roll it back.
    written_at: dict[str, int] = field(default_factory=dict)
    generation: int = 0
    series: int = 0
    status: FeedStatus = FeedStatus.STARTING
    down_since: float | None = None  # monotonic
    withdrawn: bool = False
    last_message_time: float | None = None
    updated_timestamp: float | None = None
    snapshot_time: float | None = None
    messages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MESSAGE_KINDS, 0))
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_REASONS, 0))
    reconnects: int = 0

    def forget_balances(self) -> None:
        self.balances, self.irregular, self.wallets, self.written_at = {}, set(), {}, {}
        self.series, self.updated_timestamp, self.snapshot_time = 0, None, None
        self.generation += 1  # a snapshot requested before is older than anything now


@dataclass(frozen=True)
class AccountView:
    """One account as a scrape sees it. The mappings are read-only copies."""

    name: str
    up: bool
    status: str
    withdrawn: bool
    balances: Mapping[str, Balance]
    wallets: Mapping[tuple[str, str, str], Web3Balance]
    thresholds: tuple[Threshold, ...]
    series: int
    last_message_time: float | None
    updated_timestamp: float | None
    snapshot_time: float | None
    messages: Mapping[str, int]
    errors: Mapping[str, int]
    reconnects: int
    end_users: EndUsersView | None = None  # enterprise accounts: the end users' aggregates


@dataclass(frozen=True)
class Snapshot:
    version: int
    accounts: tuple[AccountView, ...]
    market: MarketView | None = None  # None while valuation is off


class MarketSource(Protocol):
    """Data kept beside the State but rendered with it (valuation's price book)."""

    def expire(self) -> bool: ...

    def view(self) -> MarketView: ...


class State:
    def __init__(
        self,
        account_names: Iterable[str],
        *,
        clock: Clock,
        thresholds: Iterable[Threshold] = (),
        max_series: int = 10000,
        stale_after_seconds: float = 600.0,
        end_users: Mapping[str, EndUserBook] | None = None,
    ) -> None:
        self._clock = clock
        self._end_users = dict(end_users or {})  # enterprise accounts' books, written by their sinks
        self._max_series = max_series
        self._stale_after = stale_after_seconds
        self._lock = threading.Lock()
        self._version = 0
        self._market: MarketSource | None = None
        limits = tuple(thresholds)
        now = clock.monotonic()
        self._books = {
            name: _Book(name, tuple(t for t in limits if t.account == name), down_since=now)
            for name in account_names
        }

    @property
    def account_names(self) -> tuple[str, ...]:
        return tuple(self._books)

    # --- writes -------------------------------------------------------------------------------

    def set_end_user_book(self, account: str, book: EndUserBook | None) -> None:
        """An enterprise account's end users (a new book when its connection is rebuilt)."""
        with self._lock:
            if book is None:
                self._end_users.pop(account, None)
            else:
                self._end_users[account] = book
            self._version += 1

    def attach_market(self, market: MarketSource | None) -> None:
        """Render this market with the balances (None: no valuation); it calls touch() on every change."""
        with self._lock:
            self._market = market
            self._version += 1

    def touch(self) -> None:
        """Something rendered with the State but kept outside it changed: the next scrape renders anew."""
        with self._lock:
            self._version += 1

    def ingest(self, account: str, event: Event) -> None:
        """Account for one received frame and apply what it carries."""
        self.ingest_many(account, (event,))

    def ingest_many(self, account: str, events: Iterable[Event]) -> None:
        """ingest() for frames received together, in order, under one lock."""
        now = self._clock.time()
        with self._lock:
            book = self._books[account]
            messages, errors = book.messages, book.errors
            for event in events:
                messages[event.kind] += 1
                if event.schema_errors:
                    errors["schema"] += event.schema_errors
                if isinstance(event, BadFrame):
                    errors[event.reason] += 1
                elif ((isinstance(event, BalanceUpdate) and self._apply_update(book, event))
                      # Applied to an EndUserBook by its sink, unless every entry was invalid.
                      or (type(event) is EndUserBalances and (event.accounts or not event.invalid_entries))):
                    book.updated_timestamp = event.timestamp if event.timestamp is not None else now
            book.last_message_time = now
            self._version += 1

    def _apply_update(self, book: _Book, update: BalanceUpdate) -> bool:
        book.generation += 1
        currencies = update.currencies
        if currencies is not None and self._apply_documented(book, update, currencies):
            return bool(currencies)
        generation = book.generation
        balances, written_at, irregular = book.balances, book.written_at, book.irregular
        applied = False
        for entry in update.accounts:
            currency = entry.currency
            previous = balances.get(currency)
            if previous is not entry:  # else unchanged: the parser handed back the very same object
                growth = entry.series_count - (previous.series_count if previous else 0)
                if growth > 0 and book.series + growth > self._max_series:
                    book.errors["cardinality"] += 1
                    continue
                balances[currency] = entry
                book.series += growth
                if entry.series_count == DOCUMENTED_SERIES:
                    irregular.discard(currency)
                else:
                    irregular.add(currency)
            written_at[currency] = generation
            applied = True
        for wallet in update.wallets:
            key = wallet.key
            if key not in book.wallets:
                if book.series + 1 > self._max_series:
                    book.errors["cardinality"] += 1
                    continue
                book.series += 1
            book.wallets[key] = wallet
            applied = True
        return applied

    def _apply_documented(self, book: _Book, update: BalanceUpdate, currencies: list[str]) -> bool:
        """A message of the documented shape, applied with dict operations; False (nothing done)
        when it touches an irregular currency or would pass max_series: then entry by entry."""
        fresh = dict(zip(currencies, update.accounts, strict=True))
        if book.irregular and not book.irregular.isdisjoint(fresh):
            return False
        balances = book.balances
        # Usually every currency is known: a subset test then spares building the difference.
        growth = 0 if balances.keys() >= fresh.keys() else DOCUMENTED_SERIES * len(fresh.keys() - balances.keys())
        if growth and book.series + growth > self._max_series:
            return False
        balances.update(fresh)
        book.written_at.update(dict.fromkeys(fresh, book.generation))
        book.series += growth
        return True

    def generation(self, account: str) -> int:
        """A marker to pass to apply_snapshot: feed updates after it survive the snapshot."""
        with self._lock:
            book = self._books.get(account)
            return book.generation if book is not None else 0

    def apply_snapshot(self, account: str, balances: Iterable[Balance], since_generation: int,
                       complete: bool = True) -> None:
        """Replace the account balances wholesale with a REST snapshot requested at `since_generation`.

        Currencies the feed wrote after the request went out are newer than the snapshot and stay.
        Web3 wallets are not in the REST response and stay as they are. A snapshot that had invalid
        entries (not `complete`) is merged instead: a currency missing from it may be one of them.
        """
        now = self._clock.time()
        with self._lock:
            book = self._books.get(account)
            if book is None:  # removed by a reload while the call was out
                return
            fresher = {
                currency: entry
                for currency, entry in book.balances.items()
                if book.written_at.get(currency, 0) > since_generation
            }
            entries = list(balances)
            # Kept as they are: the fresher ones, and in a merge those the snapshot leaves out. They
            # were held already, so they take room under max_series before the snapshot's new ones.
            kept = fresher
            if not complete:
                sent = {entry.currency for entry in entries}
                kept = {currency: entry for currency, entry in book.balances.items() if currency not in sent}
                kept.update(fresher)
            replacement: dict[str, Balance] = {}
            series = len(book.wallets) + sum(entry.series_count for entry in kept.values())
            for entry in entries:
                if entry.currency in kept or entry.currency in replacement:
                    continue
                if series + entry.series_count > self._max_series:
                    book.errors["cardinality"] += 1
                    continue
                replacement[entry.currency] = entry
                series += entry.series_count
            replacement.update(kept)
            book.balances = replacement
            book.irregular = {currency for currency, entry in replacement.items()
                              if entry.series_count != DOCUMENTED_SERIES}
            book.written_at = {currency: book.written_at[currency] for currency in fresher}
            book.series = series
            book.snapshot_time = now
            self._version += 1

    def count_error(self, account: str, reason: ErrorReason, count: int = 1) -> None:
        with self._lock:
            if account in self._books:  # else removed by a reload, from a thread winding down
                self._books[account].errors[reason] += count
                self._version += 1

    def count_reconnect(self, account: str) -> None:
        with self._lock:
            self._books[account].reconnects += 1
            self._version += 1

    def set_status(self, account: str, status: FeedStatus) -> None:
        now = self._clock.monotonic()
        with self._lock:
            book = self._books[account]
            if status == book.status:
                return
            self._expire(book, now)
            if status == FeedStatus.UP:
                book.down_since = None
                book.withdrawn = False
            elif book.status == FeedStatus.UP:
                book.down_since = now
            book.status = status
            self._version += 1

    def reconfigure(self, account_names: Iterable[str], *, thresholds: Iterable[Threshold], max_series: int,
                    stale_after_seconds: float, renewed: Iterable[str] = ()) -> None:
        """A reloaded config: books for new accounts, none for removed ones (their series go), and
        the thresholds and limits of the rest replaced. Kept accounts keep their balances and counters;
        those in `renewed` (another key, or another kind of account) keep only their counters, since
        the balances were another sFOX account's, or another feed's."""
        limits = tuple(thresholds)
        now = self._clock.monotonic()
        with self._lock:
            self._max_series = max_series
            self._stale_after = stale_after_seconds
            names = tuple(account_names)
            self._books = {name: self._books.get(name) or _Book(name, (), down_since=now) for name in names}
            for name in renewed:
                if name in self._books:
                    self._books[name].forget_balances()
            for name, book in self._books.items():
                book.thresholds = tuple(t for t in limits if t.account == name)
            self._version += 1

    # --- reads --------------------------------------------------------------------------------

    def version(self) -> int:
        """The current version, after withdrawing any balances that went stale since the last call."""
        now = self._clock.monotonic()
        with self._lock:
            for book in self._books.values():
                self._expire(book, now)
            if self._market is not None and self._market.expire():
                self._version += 1
            return self._version

    def snapshot(self) -> Snapshot:
        now = self._clock.monotonic()
        with self._lock:
            for book in self._books.values():
                self._expire(book, now)
            market = self._market
            if market is not None and market.expire():
                self._version += 1
            return Snapshot(self._version, tuple(self._view(book, self._end_users.get(book.name))
                                                 for book in self._books.values()),
                            None if market is None else market.view())

    def status(self, account: str) -> FeedStatus:
        with self._lock:
            return self._books[account].status

    def statuses(self) -> dict[str, str]:
        with self._lock:
            return {name: book.status for name, book in self._books.items()}

    def _expire(self, book: _Book, now: float) -> None:
        """Withdraw the balances of a feed that has been down for longer than stale_after_seconds:
        a stale balance must not look current. Feed-health series stay."""
        if (
            book.withdrawn
            or book.status == FeedStatus.UP
            or book.down_since is None
            or self._stale_after <= 0
            or now - book.down_since < self._stale_after
        ):
            return
        book.balances = {}
        book.irregular = set()
        book.wallets = {}
        book.written_at = {}
        book.series = 0
        book.withdrawn = True
        self._version += 1

    @staticmethod
    def _view(book: _Book, end_users: EndUserBook | None = None) -> AccountView:
        withdrawn = book.withdrawn
        return AccountView(
            name=book.name,
            up=book.status == FeedStatus.UP,
            status=book.status,
            withdrawn=withdrawn,
            balances=MappingProxyType({} if withdrawn else dict(book.balances)),
            wallets=MappingProxyType({} if withdrawn else dict(book.wallets)),
            thresholds=book.thresholds,
            series=0 if withdrawn else book.series,
            last_message_time=book.last_message_time,
            updated_timestamp=book.updated_timestamp,
            snapshot_time=book.snapshot_time,
            messages=MappingProxyType(dict(book.messages)),
            errors=MappingProxyType(dict(book.errors)),
            reconnects=book.reconnects,
            end_users=None if end_users is None or withdrawn else end_users.view(),
        )
