"""sFOX Connect end users of one enterprise account: holdings per user, exact sums per currency.

A platform must know at every moment what it owes each currency's holders in total. The totals are
kept incrementally (a message costs work in its own size, never a rescan of all users) and exactly:
every finite float is an integer multiple of 2**-1074, so each amount is added and subtracted as
that integer (Python ints do not overflow) and the sum is rounded to a float only when read, once,
correctly (int / int is correctly rounded). A million updates later the total is bit for bit what
math.fsum of the current holdings gives; a float running sum would have drifted.

Holdings are stored packed (struct, one record per currency) rather than as Python floats and
tuples: at 100,000 users this is the difference between ~25 MB and ~100 MB.

Semantics (CONTRACT.md, protocol notes): each message is one user's FULL set of currencies, so a
currency missing from it is gone for that user. Where the message had schema errors (an invalid
entry whose currency may be unknown), it is merged instead: its valid currencies are applied and the
user's other currencies stay as they were, since the missing ones may be the invalid ones. A message
whose every entry was invalid thus changes nothing; its errors are counted by the State.

Thread-safe: the feed thread applies, scrapes read; one lock, never held while taking another.
"""

from __future__ import annotations

import math
import struct
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from sfox_exporter.config import EndUsersConfig
from sfox_exporter.sfox.connect import EndUserBalances

# Currency index, balance, available, held (NaN: absent). Big-endian, so that sorting the packed
# records sorts them by currency index.
_RECORD = struct.Struct(">Hddd")
_NAN = math.nan
_present = math.isfinite  # amounts are finite; NaN marks an absent field
# Every finite float is n * 2**-1074 for an integer n.
_SCALE_BITS = 1074
_SHIFT = _SCALE_BITS + 1  # a denominator 2**k has bit_length k + 1
_MAX_FACTOR_BITS = sys.float_info.max_exp - 1  # 2.0**1023 is the largest power of two a float holds
SERIES_PER_HOLDING = 2  # sfox_end_user_balance and sfox_end_user_balance_available


def to_units(value: float) -> int:
    """`value` as an exact integer count of 2**-1074."""
    numerator, denominator = value.as_integer_ratio()
    return numerator << (_SHIFT - denominator.bit_length())


def from_units(units: int, scale: int = _SCALE_BITS) -> float:
    """The float nearest to units * 2**-scale (correctly rounded by int true division)."""
    return units / (1 << scale)


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
        self._sums: list[list[int]] = []  # per currency index: [balance, available, held] in units
        self._scales: list[int] = []  # per currency index: the sums count units of 2**-scale
        self._factors: list[float] = []  # 2.0**scale, or inf when that is no float
        self._holders: list[int] = []
        # Per-user series: the users whose series are exported, and how many series they make.
        self._admitted: dict[str, int] = {}
        self._series = 0
        self._dirty: set[str] = set()

    @property
    def per_user_series(self) -> bool:
        return self._per_user

    def apply(self, event: EndUserBalances) -> int:
        """Apply one end user's message. Returns the per-user series refusals (cardinality) to count."""
        user_id = event.user_id
        if self._sharded and not self._config.keeps(user_id):
            return 0
        with self._lock:
            previous = self._users.get(user_id)
            fresh, complete = self._pack(event, previous)
            if fresh == previous:
                return 0
            if previous is None:
                self._add(fresh, 1)
            else:
                self._account(previous, fresh)
            self._users[user_id] = fresh
            if not self._per_user:
                return 0
            self._dirty.add(user_id)
            wanted = SERIES_PER_HOLDING * (len(fresh) // _RECORD.size) if complete else _series(fresh)
            return self._admit(user_id, wanted)

    def _pack(self, event: EndUserBalances, previous: bytes | None) -> tuple[bytes, bool]:
        """The user's holdings packed, and whether every amount is present."""
        records: dict[int, bytes] = {}
        complete = True
        if event.schema_errors and previous:
            complete = False
            for offset in range(0, len(previous), _RECORD.size):
                records[_RECORD.unpack_from(previous, offset)[0]] = previous[offset : offset + _RECORD.size]
        pack, index_of = _RECORD.pack, self._index
        for entry in event.accounts:
            index = index_of.get(entry.currency)
            if index is None:
                index = self._new_currency(entry.currency)
            balance, available, held = entry.balance, entry.available, entry.held
            if balance is None or available is None or held is None:
                complete = False
                records[index] = pack(index, _NAN if balance is None else balance,
                                      _NAN if available is None else available, _NAN if held is None else held)
            else:
                records[index] = pack(index, balance, available, held)
        return b"".join(sorted(records.values())), complete

    def _new_currency(self, currency: str) -> int:
        index = len(self._names)
        self._index[currency] = index
        self._names.append(currency)
        self._sums.append([0, 0, 0])
        self._scales.append(0)
        self._factors.append(1.0)
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
        """Add (sign 1) or take away (-1) packed holdings, exactly.

        Each currency keeps its sums as integers at the finest binary scale its amounts have needed
        so far (units of 2**-scale): ints of a hundred-odd bits rather than the thousand a fixed
        2**-1074 takes. An amount times 2.0**scale is exact (a power of two), and when the product
        is an integer it is the amount in units: two float operations, no as_integer_ratio."""
        sums, factors, holders = self._sums, self._factors, self._holders
        for index, balance, available, held in _RECORD.iter_unpack(records):
            total, factor = sums[index], factors[index]
            # `x == x` is false for NaN only: absent; zeros add nothing.
            if balance and balance == balance:  # noqa: PLR0124 - NaN, see above
                scaled = balance * factor
                if scaled.is_integer():
                    total[0] += sign * int(scaled)
                else:
                    units = self._finer(index, balance)  # first: it may rescale total[0]
                    total[0] += sign * units
                    factor = factors[index]
                holders[index] += sign
            if available and available == available:  # noqa: PLR0124
                scaled = available * factor
                if scaled.is_integer():
                    total[1] += sign * int(scaled)
                else:
                    units = self._finer(index, available)  # first: it may rescale total[1]
                    total[1] += sign * units
                    factor = factors[index]
            if held and held == held:  # noqa: PLR0124
                scaled = held * factor
                if scaled.is_integer():
                    total[2] += sign * int(scaled)
                else:
                    units = self._finer(index, held)  # first: it may rescale total[2]
                    total[2] += sign * units

    def _finer(self, index: int, value: float) -> int:
        """`value` in units of the currency's scale, made finer first (its sums multiplied by a
        power of two, exactly) when `value` has bits below it. For the rare amounts the fast
        product cannot take: too fine, or too large for the product to stay finite."""
        numerator, denominator = value.as_integer_ratio()
        needed = denominator.bit_length() - 1
        scale = self._scales[index]
        if needed > scale:
            total = self._sums[index]
            total[0] <<= needed - scale
            total[1] <<= needed - scale
            total[2] <<= needed - scale
            scale = self._scales[index] = needed
            # Past 2**1023 the factor is no float: every amount of the currency takes this path.
            self._factors[index] = 2.0**scale if scale <= _MAX_FACTOR_BITS else math.inf
        return numerator << (scale - needed)

    def _admit(self, user_id: str, wanted: int) -> int:
        """Keep the per-user series under max_series: a user whose series would pass it is not
        exported (its holdings still count in the totals). Returns 1 for a refusal."""
        current = self._admitted.pop(user_id, None)
        self._series -= current or 0
        if self._series + wanted > self._max_series:
            return 1
        self._admitted[user_id] = wanted
        self._series += wanted
        return 0

    # --- reads --------------------------------------------------------------------------------

    def view(self) -> EndUsersView:
        with self._lock:
            totals = tuple(
                CurrencyTotals(name, from_units(sums[0], scale), from_units(sums[1], scale),
                               from_units(sums[2], scale), holders)
                for name, sums, scale, holders in zip(self._names, self._sums, self._scales, self._holders,
                                                      strict=True)
            )
            return EndUsersView(len(self._users), totals)

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
        names = self._names
        return tuple(
            (names[index], *(amount if _present(amount) else None for amount in amounts))
            for index, *amounts in _RECORD.iter_unpack(self._users[user_id])
        )


def _series(packed: bytes) -> int:
    """The per-user series of packed holdings: balance and available where present."""
    return sum(_present(amounts[1]) + _present(amounts[2]) for amounts in _RECORD.iter_unpack(packed))


def _records(packed: bytes) -> dict[bytes, bytes]:
    """A user's packed holdings by currency index (its first two bytes)."""
    size = _RECORD.size
    return {packed[offset : offset + 2]: packed[offset : offset + size] for offset in range(0, len(packed), size)}
