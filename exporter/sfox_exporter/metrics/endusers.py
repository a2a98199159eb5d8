"""sFOX Connect end users of one enterprise account: holdings per user, exact sums per currency.

A platform must know at every moment what it owes each currency's holders in total. The totals are
kept incrementally (a message costs work in its own size, never a rescan of all users) and exactly
(metrics/exact.py): a million updates later each total is bit for bit what math.fsum of the current
holdings gives; a float running sum would have drifted.

Holdings are stored packed (struct, one record per currency) rather than as Python floats and
tuples: at 100,000 users this is the difference between ~25 MB and ~100 MB.

Semantics (CONTRACT.md, protocol notes): each message is one user's FULL set of currencies, so a
currency missing from it is gone for that user. Where the message had invalid entries (whose
currency may be unknown), it is merged instead: its valid currencies are applied and the
user's other currencies stay as they were, since the missing ones may be the invalid ones. A message
whose every entry was invalid thus changes nothing; its errors are counted by the State.

Thread-safe: the feed thread applies, scrapes read; one lock, never held while taking another.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sfox_exporter.config import EndUsersConfig
from sfox_exporter.metrics.exact import ExactSum
from sfox_exporter.sfox.connect import EndUserBalances
from sfox_exporter.sfox.entries import AccountBalance

# Currency index, balance, available, held (NaN: absent). Big-endian, so that sorting the packed
# records sorts them by currency index.
_RECORD = struct.Struct(">Hddd")
_NAN = math.nan
_present = math.isfinite  # amounts are finite; NaN marks an absent field
# Amounts wait until this many bytes of records (~40,000 amounts, ~1 MB) have come, or a scrape.
_FOLD_BYTES = 13_000 * 26
SERIES_PER_HOLDING = 2  # sfox_end_user_balance and sfox_end_user_balance_available
MAX_USER_CURRENCIES = 256  # currencies one user may hold: more than sFOX lists
# sfox_end_users_balance, _available, _held and sfox_end_users_holding: a currency's totals, for good.
SERIES_PER_CURRENCY = 4


Holding = tuple[str, float | None, float | None, float | None]  # currency, balance, available, held


@dataclass(frozen=True)
class CurrencyTotals:
    currency: str
    balance: float
    available: float
    held: float
    holders: int  # users with a non-zero balance


@dataclass(frozen=True)
class EndUsersView:
    """What one scrape sees of an enterprise account's end users: the aggregates."""

    users: int
    currencies: tuple[CurrencyTotals, ...]
    series: int = 0  # the totals' and the per-user series, which feed.max_series caps together


class EndUserBook:
    def __init__(self, config: EndUsersConfig, max_series: int) -> None:
        self._config = config
        self._per_user = config.per_user_series
        self._sharded = config.shard_count > 1
        self._max_series = max_series
        self._lock = threading.Lock()
        self._users: dict[str, bytes] = {}
        self._index: dict[str, int] = {}
        self._names: list[str] = []
        # Per currency index: the exact sums of balance, available and held, and the amounts
        # waiting to be added to them (taken-away ones negated).
        self._sums: list[tuple[ExactSum, ExactSum, ExactSum]] = []
        self._pending: list[tuple[list[float], list[float], list[float]]] = []
        self._waiting = 0  # bytes of records whose amounts wait
        self._holders: list[int] = []
        # Per-user series: the users whose series are exported, and how many series they make.
        self._admitted: dict[str, int] = {}
        self._series = 0
        self._dirty: set[str] = set()

    @property
    def per_user_series(self) -> bool:
        return self._per_user

    def carried_into(self, config: EndUsersConfig, max_series: int) -> tuple[EndUserBook, int]:
        """A book for other settings (shard, caps, per-user series) holding what this one holds, as
        far as they let it, and how many users or series it refused: sFOX replays nothing, so a reload
        that changes them must not forget every end user until each one's balances change again.
        Users go in the order they came. The packed holdings are shared, not copied (tuples of every
        user's holdings cost four times the book), while the currencies' totals still fit."""
        book = EndUserBook(config, max_series)
        with self._lock:
            names, users = list(self._names), list(self._users.items())
        if book._totals_series() + SERIES_PER_CURRENCY * len(names) > max_series:
            # Not every currency fits any more: replayed, the caps choose, one user at a time.
            return book, book.apply_many(_replayed(names, users))
        refused = 0
        with book._lock:
            for name in names:
                book._new_currency(name)
            for user_id, packed in users:
                if book._sharded and not config.keeps(user_id):
                    continue
                if len(book._users) >= config.max_users:
                    refused += 1
                    continue
                book._users[user_id] = packed
                book._add(packed, 1)
                if book._per_user:
                    book._dirty.add(user_id)
                    refused += book._admit(user_id, _series(packed))
            book._fold()
        return book, refused

    def apply(self, event: EndUserBalances) -> int:
        """Apply one end user's message. Returns the per-user series refusals (cardinality) to count."""
        return self.apply_many((event,))

    def apply_many(self, events: Iterable[EndUserBalances]) -> int:
        """apply() for messages received together, in order, under one lock."""
        with self._lock:
            return sum(self._apply(event) for event in events)

    def _apply(self, event: EndUserBalances) -> int:
        user_id = event.user_id
        if self._sharded and not self._config.keeps(user_id):
            return 0
        previous = self._users.get(user_id)
        if previous is None and event.invalid_entries and not event.accounts:
            return 0  # every entry invalid: nothing is known of this user, not even that it holds nothing
        if previous is None and len(self._users) >= self._config.max_users:
            return 1  # a user past end_users.max_users: refused, and counted like a series past max_series
        fresh, complete, refused = self._pack(event, previous)
        if fresh == previous:
            return refused
        if previous is None and complete:
            self._add_new(fresh)
        elif previous is None:
            self._add(fresh, 1)
        else:
            self._account(previous, fresh)
        self._users[user_id] = fresh
        if not self._per_user:
            return refused
        self._dirty.add(user_id)
        wanted = SERIES_PER_HOLDING * (len(fresh) // _RECORD.size) if complete else _series(fresh)
        return refused + self._admit(user_id, wanted)

    def _pack(self, event: EndUserBalances, previous: bytes | None) -> tuple[bytes, bool, int]:
        """The user's holdings packed, whether every amount is present, and how many entries were
        refused: a currency never seen, whose totals alone would pass max_series. No user can have held
        it before, so leaving it out loses nothing else of the user's."""
        records: dict[int, bytes] = {}
        complete = True
        refused = 0
        if event.invalid_entries and previous:
            complete = False
            for offset in range(0, len(previous), _RECORD.size):
                records[_RECORD.unpack_from(previous, offset)[0]] = previous[offset : offset + _RECORD.size]
        pack, index_of = _RECORD.pack, self._index
        for entry in event.accounts:
            index = index_of.get(entry.currency)
            if len(records) >= MAX_USER_CURRENCIES and index not in records:
                refused += 1  # more than sFOX lists: each one more record of every such user, held for good
                continue
            if index is None:
                # The totals come first: what the platform owes per currency is the feed's point, so
                # per-user series never keep a currency out (they are refused instead, in _admit).
                if self._totals_series() + SERIES_PER_CURRENCY > self._max_series:
                    refused += 1
                    continue
                index = self._new_currency(entry.currency)
                refused += self._make_room()
            balance, available, held = entry.balance, entry.available, entry.held
            if balance is None or available is None or held is None:
                complete = False
                records[index] = pack(index, _NAN if balance is None else balance,
                                      _NAN if available is None else available, _NAN if held is None else held)
            else:
                records[index] = pack(index, balance, available, held)
        return b"".join(sorted(records.values())), complete, refused

    def _make_room(self) -> int:
        """Per-user series give way to a new currency's totals, the users updated longest ago first,
        so that the account stays within max_series. Returns how many users were dropped (each one a
        cardinality refusal); they come back, room permitting, with their next message."""
        dropped = 0
        while self._admitted and self._series + self._totals_series() > self._max_series:
            user_id = next(iter(self._admitted))
            self._series -= self._admitted.pop(user_id)
            self._dirty.add(user_id)
            dropped += 1
        return dropped

    def _totals_series(self) -> int:
        return SERIES_PER_CURRENCY * len(self._names)

    def _new_currency(self, currency: str) -> int:
        index = len(self._names)
        self._index[currency] = index
        self._names.append(currency)
        self._sums.append((ExactSum(), ExactSum(), ExactSum()))
        self._pending.append(([], [], []))
        self._holders.append(0)
        return index

    def _account(self, previous: bytes, fresh: bytes) -> None:
        """Move the totals from the user's previous holdings to the fresh ones: only the currencies
        whose record changed are taken away and added again."""
        before = _records(previous)
        after = _records(fresh)
        for key, record in before.items():
            if after.get(key) != record:
                self._add(record, -1)
        for key, record in after.items():
            if before.get(key) != record:
                self._add(record, 1)

    def _add(self, records: bytes, sign: int) -> None:
        """Add (sign 1) or take away (-1) packed holdings. The amounts wait in per-currency lists and
        are summed exactly a batch at a time (metrics/exact.py): a few µs a message less than
        converting each one as it comes."""
        pending, holders = self._pending, self._holders
        for index, balance, available, held in _RECORD.iter_unpack(records):
            balances, availables, helds = pending[index]
            # `x == x` is false for NaN only: an absent amount.
            if balance == balance:  # noqa: PLR0124
                balances.append(sign * balance)
                if balance:
                    holders[index] += sign
            if available == available:  # noqa: PLR0124
                availables.append(sign * available)
            if held == held:  # noqa: PLR0124
                helds.append(sign * held)
        self._waiting += len(records)
        if self._waiting > _FOLD_BYTES:
            self._fold()

    def _add_new(self, records: bytes) -> None:
        """_add(records, 1) for holdings with every amount present: a new user's, the common case."""
        pending, holders = self._pending, self._holders
        for index, balance, available, held in _RECORD.iter_unpack(records):
            balances, availables, helds = pending[index]
            balances.append(balance)
            availables.append(available)
            helds.append(held)
            if balance:
                holders[index] += 1
        self._waiting += len(records)
        if self._waiting > _FOLD_BYTES:
            self._fold()

    def _fold(self) -> None:
        """Sum every waiting amount into the totals."""
        for sums, waiting in zip(self._sums, self._pending, strict=True):
            for total, amounts in zip(sums, waiting, strict=True):
                if amounts:
                    total.add_all(amounts)
                    amounts.clear()
        self._waiting = 0

    def _admit(self, user_id: str, wanted: int) -> int:
        """Keep the per-user series, with the totals', under max_series: a user whose series would
        pass it is not exported (its holdings still count in the totals). Returns 1 for a refusal.
        Users already exported stay when new currencies' totals take room later."""
        current = self._admitted.pop(user_id, None)
        self._series -= current or 0
        if self._series + wanted + self._totals_series() > self._max_series:
            return 1
        self._admitted[user_id] = wanted
        self._series += wanted
        return 0

    # --- reads --------------------------------------------------------------------------------

    def view(self) -> EndUsersView:
        with self._lock:
            self._fold()
            totals = tuple(
                CurrencyTotals(name, balance.value, available.value, held.value, holders)
                for name, (balance, available, held), holders in zip(self._names, self._sums, self._holders,
                                                                     strict=True)
            )
            return EndUsersView(len(self._users), totals, self._totals_series() + self._series)

    @property
    def series(self) -> int:
        with self._lock:
            return self._series

    def take_changes(self) -> dict[str, tuple[Holding, ...] | None]:
        """The per-user series of every user changed since the last call: their exported holdings,
        or None for a user no longer exported. For the incremental renderer (endusers_render.py)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            return {user_id: self._holdings(user_id) if user_id in self._admitted else None for user_id in dirty}

    def exported(self) -> Iterator[tuple[str, tuple[Holding, ...]]]:
        """Every exported user's holdings, in a consistent copy (for reference renderers and tests)."""
        with self._lock:
            copied = [(user_id, self._holdings(user_id)) for user_id in self._admitted]
        return iter(copied)

    def holdings(self, user_id: str) -> tuple[Holding, ...] | None:
        with self._lock:
            return self._holdings(user_id) if user_id in self._users else None

    def _holdings(self, user_id: str) -> tuple[Holding, ...]:
        return _unpacked(self._names, self._users[user_id])


def _unpacked(names: list[str], packed: bytes) -> tuple[Holding, ...]:
    """A user's packed holdings by currency name, absent amounts as None."""
    return tuple(
        (names[index], *(amount if _present(amount) else None for amount in amounts))
        for index, *amounts in _RECORD.iter_unpack(packed)
    )


def _replayed(names: list[str], users: list[tuple[str, bytes]]) -> Iterator[EndUserBalances]:
    """Each user's holdings as the message that would bring them, made as they are applied."""
    for user_id, packed in users:
        yield EndUserBalances(None, None, user_id,
                              tuple(AccountBalance(*holding, ()) for holding in _unpacked(names, packed)), 0)


def _series(packed: bytes) -> int:
    """The per-user series of packed holdings: balance and available where present."""
    return sum(_present(amounts[1]) + _present(amounts[2]) for amounts in _RECORD.iter_unpack(packed))


def _records(packed: bytes) -> dict[bytes, bytes]:
    """A user's packed holdings by currency index (its first two bytes)."""
    size = _RECORD.size
    return {packed[offset : offset + 2]: packed[offset : offset + size] for offset in range(0, len(packed), size)}
