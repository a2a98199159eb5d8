"""The fast path: a whole frame of sFOX's documented shape in one msgspec decode, no Python per amount.

sFOX's pages show every account entry with all seven amounts (balance, available, held and the four
`*_wallet`s) as decimal strings. A frame of exactly that shape, on the feed a connection subscribed
to, decodes here in one pass straight into the objects the balance book keeps (DocumentedBalance):
no per-entry conversion, no second decode for lengths, and the State applies the lot with dict
operations. Anything else, or anything in doubt, returns None and takes the general path
(sfox/decode.py), whose rules are the reference: so the fast path can only ever be faster, never
different. tests/test_documented.py and the hypothesis tests hold the two to the same result.

Why our own checks and not only msgspec's: lax mode, which turns "0.5" into 0.5 in C, reads a few
strings differently from the rules (the string "-0" as 0.0, an amount string of any length where
the rules allow 64 characters, escapes), so a frame that could hold one of those is left to the
general path. The checks are single-byte searches and one translate, a few µs on a 4 KiB frame
(benchmarks/decode.py), instead of the 6 µs a strict second decode took.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct

from sfox_exporter.sfox.entries import (
    KNOWN_WALLETS,
    MAX_AMOUNT_LENGTH,
    MAX_LABEL_LENGTH,
    REFUSED,
    AccountBalance,
    Finite,
)

BALANCES_FEED = "private.user.balances"
END_USERS_FEED = "private.enterprise.users.balances"

Label = Annotated[str, Meta(min_length=1, max_length=MAX_LABEL_LENGTH)]
DOCUMENTED_SERIES = 3 + len(KNOWN_WALLETS)


class DocumentedBalance(Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """One account entry of the documented shape, kept as decoded. It reads like an AccountBalance
    (currency, balance, available, held, wallets, series_count), so the book and the renderers take
    either. A field this struct does not know (a new `staking_wallet`, a `type`, the display id
    some pages show) sends the frame the general way, which knows what to make of it."""

    currency: Label
    balance: Finite
    available: Finite
    held: Finite
    trading_wallet: Finite
    collateral_wallet: Finite
    borrow_wallet: Finite
    lending_wallet: Finite

    series_count: ClassVar[int] = DOCUMENTED_SERIES

    @property
    def wallets(self) -> tuple[tuple[str, float], ...]:
        return (("trading", self.trading_wallet), ("collateral", self.collateral_wallet),
                ("borrow", self.borrow_wallet), ("lending", self.lending_wallet))


Balance = AccountBalance | DocumentedBalance  # one currency of an account, from either path


class _BalancesFrame(Struct, gc=False):
    recipient: Literal["private.user.balances"]
    payload: list[DocumentedBalance]
    sequence: Any = None
    timestamp: Any = UNSET


class _EndUser(Struct, gc=False):
    """Only these two fields are read; the others (personal data, perhaps) are skipped unread."""

    user_id: Label
    updates: list[DocumentedBalance]


class _EndUsersFrame(Struct, gc=False):
    recipient: Literal["private.enterprise.users.balances"]
    payload: _EndUser
    sequence: Any = None
    timestamp: Any = UNSET


_decode_balances = msgspec.json.Decoder(_BalancesFrame, strict=False).decode
_decode_end_users = msgspec.json.Decoder(_EndUsersFrame, strict=False).decode
_currency = attrgetter("currency")
_set_field = msgspec.structs.force_setattr
# Every byte that can be part of a number, as one byte: a run longer than any amount the rules allow
# shows up as one search.
_NUMBER_BYTES = bytes.maketrans(b"0123456789.eE+-", b"0" * 15)
_TOO_LONG = b"0" * (MAX_AMOUNT_LENGTH + 1)
_DASHES_VISITED = 4


def lax_reads_as_rules(frame: bytes | bytearray | memoryview | str) -> bool:
    """Whether msgspec's lax mode reads every amount of `frame` as the rules would: ASCII only, no
    escapes (an escaped string can spell anything), no string "-0" (lax reads 0.0, the rules -0.0),
    no run of number bytes longer than an amount may be."""
    if type(frame) is bytes:
        data = frame
    elif isinstance(frame, str):
        return False  # text frames come from tests and the plain path only; the feed reads bytes
    else:
        data = bytes(frame)
    # msgspec checks UTF-8 only where it makes a str, never in what it skips; sFOX sends ASCII, so
    # anything else is left to the general path, which checks the whole frame.
    if b"\\" in data or not data.isascii():
        return False
    if _minus_zero(data):
        return False
    return _TOO_LONG not in data.translate(_NUMBER_BYTES)


def _minus_zero(data: bytes) -> bool:
    """Whether `data` holds the string "-0". A search for the 4 bytes costs ~0.7 us a KiB (their
    quote is everywhere), memchr for a dash a few ns: so the dashes are visited, a few of them
    (a user id's, say), before giving up and searching."""
    dash = data.find(b"-")
    for _ in range(_DASHES_VISITED):
        if dash < 0:
            return False
        if data[dash - 1 : dash + 3] == b'"-0"':
            return True
        dash = data.find(b"-", dash + 1)
    return dash >= 0 and b'"-0"' in data


def _currencies(entries: list[DocumentedBalance]) -> list[str] | None:
    """The entries' currencies, lower-cased as the rules keep them; None when one is unprintable
    (msgspec checked the lengths). One join checks them all. Entries are lower-cased in place,
    before anyone else sees them, in the rare frame that needs it."""
    currencies = list(map(_currency, entries))
    joined = "".join(currencies)
    if not joined.isprintable():
        return None
    if joined == joined.lower():
        return currencies
    for entry in entries:
        _set_field(entry, "currency", entry.currency.lower())
    return list(map(_currency, entries))


def balances(frame: bytes | bytearray | memoryview | str) -> tuple[Any, Any, list[DocumentedBalance],
                                                                  list[str]] | None:
    """(sequence, timestamp, entries, their currencies) of a balances frame of the documented shape,
    raw sequence and timestamp as sent; None for any other frame."""
    if not lax_reads_as_rules(frame):
        return None
    try:
        message = _decode_balances(frame)
    except REFUSED:
        return None
    entries = message.payload
    currencies = _currencies(entries)
    if currencies is None:
        return None
    return message.sequence, message.timestamp, entries, currencies


def end_user(frame: bytes | bytearray | memoryview | str) -> tuple[Any, Any, str, list[DocumentedBalance]] | None:
    """(sequence, timestamp, user_id, entries) of an end user's frame of the documented shape; None
    for any other frame."""
    if not lax_reads_as_rules(frame):
        return None
    try:
        message = _decode_end_users(frame)
    except REFUSED:
        return None
    user = message.payload
    entries = user.updates
    if not user.user_id.isprintable() or _currencies(entries) is None:
        return None
    return message.sequence, message.timestamp, user.user_id, entries
