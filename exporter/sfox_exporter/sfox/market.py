"""Market data for valuation: ticker messages and the list of currency pairs.

Pure, as sfox/decode.py, whose parse_frame hands ticker messages here. Only what valuation needs is
read: the last price of a ticker, and the base and quote of each pair. Prices are JSON numbers on
this feed (balances use strings): both are accepted, by the same rules as balances, and a price
must also be above zero, since valuation multiplies and divides by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import Raw, Struct

from sfox_exporter.sfox.entries import (
    REFUSED,
    Amount,
    InvalidAmount,
    is_label,
    loads,
    parse_amount,
    plain,
    whole_input_decoder,
)
from sfox_exporter.vocabulary import MessageKind


@dataclass(frozen=True, slots=True)
class Ticker:
    """The last price of one pair. `pair` comes from the feed name, never from the payload, which
    was seen disagreeing with it."""

    sequence: int | None
    timestamp: float | None  # seconds since the epoch: sFOX's, of the message
    pair: str
    last: float
    schema_errors: int = 0

    # Not a feed of an account: one that reaches an account's counters is an unknown message.
    kind: MessageKind = MessageKind.UNKNOWN


class _TickerPayload(Struct):
    last: Amount


_decode_ticker = msgspec.json.Decoder(_TickerPayload).decode


def parse_ticker(sequence: int | None, timestamp: float | None, pair: str, payload: Any,
                 schema_errors: int) -> Ticker | None:
    """A Ticker, or None when the payload has no usable `last` price. `payload` is raw JSON from
    msgspec, or what json.loads made of it."""
    last: float | None = None
    if isinstance(payload, Raw):
        try:
            last = float(_decode_ticker(payload).last)
        except msgspec.ValidationError:
            payload = plain(payload)  # a duplicate key, say: json's rules decide
    if isinstance(payload, dict):
        try:
            last = parse_amount(payload.get("last"))
        except InvalidAmount:
            return None
    if last is None or not (math.isfinite(last) and last > 0):
        return None
    return Ticker(sequence, timestamp, pair, last, schema_errors)


class _Pair(Struct):
    symbol: Any = None
    base: Any = None
    quote: Any = None


_decode_pairs = whole_input_decoder(dict[str, Raw] | list[Raw])
_decode_pair = msgspec.json.Decoder(_Pair).decode


def parse_currency_pairs(body: bytes | bytearray | str) -> dict[str, tuple[str, str]] | None:
    """The body of GET /v1/markets/currency-pairs: {symbol: (base, quote)}, all lower case.

    sFOX documents an object keyed by symbol; a list of the same objects is read too, each keyed by
    its own `symbol`, else by base and quote together, which is what a symbol is. Entries without a
    base and quote that are labels are skipped; None when the body is neither an object nor a list."""
    try:
        document: dict[str, Any] | list[Any] = _decode_pairs(body)
    except REFUSED:
        try:
            loaded = loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(loaded, dict | list):
            return None
        document = loaded
    pairs: dict[str, tuple[str, str]] = {}
    listed = document.items() if isinstance(document, dict) else ((None, entry) for entry in document)
    for key, entry in listed:
        symbol, base, quote = _fields(entry)
        if _usable(base) and _usable(quote):
            listed_symbol = symbol if _usable(symbol) else f"{base}{quote}"  # for a list's entry
            name = key if key is not None else listed_symbol
            if _usable(name):
                pairs[name.lower()] = (base.lower(), quote.lower())
    return pairs


def _fields(entry: Any) -> tuple[Any, Any, Any]:
    """An entry's symbol, base and quote, as sent."""
    if isinstance(entry, Raw):
        try:
            pair = _decode_pair(entry)
        except msgspec.ValidationError:  # not an object, or a number past float's range in it
            entry = plain(entry)
        else:
            return pair.symbol, pair.base, pair.quote
    if isinstance(entry, dict):
        return entry.get("symbol"), entry.get("base"), entry.get("quote")
    return None, None, None


def _usable(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and is_label(value)
