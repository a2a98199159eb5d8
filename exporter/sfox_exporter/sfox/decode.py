"""Turn sFOX frames and REST bodies into typed events.

Pure: bytes or text in, immutable events out. No I/O, no clock, no Prometheus. Every input, however
hostile, yields an event; nothing raises out of `parse_frame`, `parse_rest_balances` or
`parse_currency_pairs`.

msgspec decodes the envelope into a struct and leaves the payload as raw JSON for the feed's own
structs (sfox/entries.py), so a message costs time linear in its size. What msgspec refuses but
Python's json reads (NaN literals, lone surrogates, numbers past float's range, UTF-16) goes to
json.loads and the same rules, so that such a frame still counts exactly as it always did: a bad
value is a schema error of its entry, not an undecodable frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from msgspec import UNSET, Raw, Struct

from sfox_exporter.sfox import documented
from sfox_exporter.sfox.connect import EndUserBalances, parse_end_users
from sfox_exporter.sfox.documented import Balance, DocumentedBalance
from sfox_exporter.sfox.entries import (
    INVALID_ACCOUNT,
    MAX_LABEL_LENGTH,
    REFUSED,
    AccountBalance,
    Entry,
    InvalidAmount,
    Web3Balance,
    decode_raw_list,
    entry_from_raw,
    is_label,
    loads,
    parse_account_entry,
    parse_amount,
    parse_entry,
    raw_accounts,
    typed_accounts,
    whole_input_decoder,
)
from sfox_exporter.sfox.envelope import parse_timestamp, sequence_field, timestamp_field
from sfox_exporter.sfox.market import Ticker, parse_currency_pairs, parse_ticker
from sfox_exporter.vocabulary import MessageKind

__all__ = [
    "BALANCES_FEED",
    "END_USERS_FEED",
    "MAX_LABEL_LENGTH",
    "TICKER_PREFIX",
    "AccountBalance",
    "BadFrame",
    "Balance",
    "BalanceUpdate",
    "ControlMessage",
    "DocumentedBalance",
    "EndUserBalances",
    "Event",
    "InvalidAmount",
    "OtherMessage",
    "Ticker",
    "Web3Balance",
    "parse_amount",
    "parse_balances_frame",
    "parse_currency_pairs",
    "parse_end_users_frame",
    "parse_frame",
    "parse_rest_balances",
    "parse_timestamp",
    "parser_for",
    "sanitize_text",
]

BALANCES_FEED = documented.BALANCES_FEED
END_USERS_FEED = documented.END_USERS_FEED
TICKER_PREFIX = "ticker.sfox."
_NOTICE_TYPES = frozenset({"info", "notice", "heartbeat", "welcome", "hello"})
MAX_LISTED_FEEDS = 10_000  # of a control message's payload.feeds: more than any connection asks for

KIND_BALANCES = MessageKind.BALANCES
KIND_WEB3 = MessageKind.WEB3
KIND_END_USERS = MessageKind.END_USERS
KIND_CONTROL = MessageKind.CONTROL
KIND_UNKNOWN = MessageKind.UNKNOWN


class BalanceUpdate(NamedTuple):
    """A message of the balances feed: account balances, Web3 wallet balances, or both.

    The types that come once per message or per entry are NamedTuples rather than frozen
    dataclasses: as immutable, and built several times faster."""

    sequence: int | None
    timestamp: float | None  # seconds since the epoch
    accounts: tuple[Balance, ...]
    wallets: tuple[Web3Balance, ...]
    schema_errors: int
    kind: MessageKind = KIND_BALANCES  # web3 when every entry says type web3, valid or not
    # From the fast path: every entry is a DocumentedBalance, and these are their currencies in
    # order, so the State can apply the lot with dict operations.
    currencies: list[str] | None = None


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """A reply or notice from sFOX: `type` and usually `action`, no `recipient`."""

    sequence: int | None
    type: str
    action: str | None
    detail: str | None  # error text, when sFOX sends one
    schema_errors: int = 0
    feeds: tuple[str, ...] = ()  # payload.feeds: all feeds subscribed, in an ack; in an error, those refused

    kind: MessageKind = KIND_CONTROL

    @property
    def success(self) -> bool:
        return self.type == "success"

    @property
    def notice(self) -> bool:
        """An "info" or "heartbeat" sFOX might send unasked, naming no action: it answers no request.
        Only these few: any other type ("rate_limit", "not_authorized") may be a refusal, and the
        protocol notes take a reply that is not success as one."""
        return not self.action and self.type.lower() in _NOTICE_TYPES


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A JSON object no feed of ours can use: another feed, no recognisable shape, or a message of
    our feeds whose whole payload is of the wrong shape (then `kind` names the feed)."""

    sequence: int | None
    recipient: str | None
    schema_errors: int

    kind: MessageKind = KIND_UNKNOWN


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that is not a JSON object. `reason` is an error reason: decode or schema."""

    reason: str

    kind: MessageKind = KIND_UNKNOWN
    sequence = None
    schema_errors = 0


Event = BalanceUpdate | EndUserBalances | Ticker | ControlMessage | OtherMessage | BadFrame


class _Envelope(Struct):
    """What every message has. The payload stays raw JSON until the recipient says what it is."""

    sequence: Any = None
    recipient: Any = None
    timestamp: Any = UNSET
    type: Any = None
    payload: Raw = Raw(b"null")


_decode_envelope = whole_input_decoder(_Envelope)
_decode_raw = whole_input_decoder(Raw)


def parse_frame(data: bytes | bytearray | memoryview | str) -> Event:
    """Parse one WebSocket message."""
    try:
        envelope = _decode_envelope(data)
    except REFUSED:
        return _parse_plain(data)
    recipient = envelope.recipient
    if recipient is None:
        return _parse_plain(data)  # a control message (a few per connection), or no shape at all
    try:
        return _dispatch(envelope.sequence, recipient, envelope.timestamp, envelope.payload)
    except REFUSED:
        # msgspec leaves the payload raw, so what it refuses inside it surfaces only here: the
        # plain path then judges the frame as a whole, as the reference decoder does.
        return _parse_plain(data)


def parse_balances_frame(data: bytes | bytearray | memoryview | str) -> Event:
    """parse_frame, by the fast path first: for a connection subscribed to the balances feed."""
    fast = documented.balances(data)
    if fast is None:
        return parse_frame(data)
    sequence, seconds, errors = _envelope_fields(fast[0], fast[1])
    return BalanceUpdate(sequence, seconds, tuple(fast[2]), (), errors, KIND_BALANCES, fast[3])


def parse_end_users_frame(data: bytes | bytearray | memoryview | str) -> Event:
    """parse_frame, by the fast path first: for a connection subscribed to the end users' feed."""
    fast = documented.end_user(data)
    if fast is None:
        return parse_frame(data)
    sequence, seconds, errors = _envelope_fields(fast[0], fast[1])
    return EndUserBalances(sequence, seconds, fast[2], tuple(fast[3]), errors)


def parser_for(feeds: tuple[str, ...]) -> Callable[[bytes | bytearray | memoryview | str], Event]:
    """The frame parser for a connection subscribed to `feeds`: the fast path of its one data feed,
    tried before the general one; parse_frame alone for anything else (market data)."""
    if feeds == (BALANCES_FEED,):
        return parse_balances_frame
    if feeds == (END_USERS_FEED,):
        return parse_end_users_frame
    return parse_frame


def _parse_plain(data: bytes | bytearray | memoryview | str) -> Event:
    """parse_frame on what json.loads makes of the frame."""
    try:
        message = loads(bytes(data) if isinstance(data, memoryview) else data)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and bad UTF-8; RecursionError, absurdly deep nesting.
        return BadFrame("decode")
    if not isinstance(message, dict):
        return BadFrame("schema")
    recipient = message.get("recipient")
    if recipient is None:
        sequence, errors = sequence_field(message.get("sequence"))
        message_type = message.get("type")
        if isinstance(message_type, str):
            return _control(message, message_type, sequence, errors)
        return OtherMessage(sequence, None, schema_errors=1)
    return _dispatch(message.get("sequence"), recipient, message.get("timestamp", UNSET), message.get("payload"))


def _envelope_fields(sequence: Any, timestamp: Any) -> tuple[int | None, float | None, int]:
    """A data message's sequence number and time, as sent, read; and their schema errors."""
    number, errors = sequence_field(sequence)
    seconds, timestamp_errors = timestamp_field(timestamp)
    return number, seconds, errors + timestamp_errors


def _dispatch(raw_sequence: Any, recipient: Any, timestamp: Any, payload: Any) -> Event:
    """A data message by its recipient. `payload` is Raw from msgspec, or what json.loads made."""
    sequence, seconds, errors = _envelope_fields(raw_sequence, timestamp)
    if recipient == BALANCES_FEED:
        return _balances(sequence, seconds, errors, payload)
    if recipient == END_USERS_FEED:
        users = parse_end_users(sequence, seconds, payload, errors)
        # Without a usable user_id or list of balances a message says nothing about anybody: one
        # schema error as a whole, never an empty set of balances.
        return users or OtherMessage(sequence, END_USERS_FEED, schema_errors=1, kind=KIND_END_USERS)
    if not (isinstance(recipient, str) and is_label(recipient)):
        return OtherMessage(sequence, None, schema_errors=1)
    if recipient.startswith(TICKER_PREFIX) and len(recipient) > len(TICKER_PREFIX):
        ticker = parse_ticker(sequence, seconds, recipient[len(TICKER_PREFIX) :].lower(), payload, errors)
        return ticker or OtherMessage(sequence, recipient, schema_errors=1)
    return OtherMessage(sequence, recipient, schema_errors=errors)


def _balances(sequence: int | None, seconds: float | None, errors: int, payload: Any) -> BalanceUpdate:
    if isinstance(payload, Raw):
        entries = _raw_entries(payload)
    elif isinstance(payload, list):
        entries = [parse_entry(entry) for entry in payload]
    elif isinstance(payload, dict):
        entries = [parse_entry(payload)]
    else:
        entries = None
    if entries is None:
        return BalanceUpdate(sequence, seconds, (), (), errors + 1)
    return _update(sequence, seconds, entries, errors)


def _raw_entries(payload: Raw) -> list[Entry] | None:
    """The entries of a raw payload, a list or one object; None for anything else."""
    first = memoryview(payload)[0]
    if first == ord("{"):
        return [entry_from_raw(payload)]
    if first != ord("["):
        return None
    accounts = typed_accounts(payload)  # the common case: documented account entries, all at once
    if accounts is None:
        return [entry_from_raw(entry) for entry in decode_raw_list(payload)]
    return [account or INVALID_ACCOUNT for account in accounts]


def _update(sequence: int | None, timestamp: float | None, entries: list[Entry], errors: int) -> BalanceUpdate:
    """A BalanceUpdate from parsed entries, in order; every invalid entry is a schema error."""
    if set(map(type, entries)) == {AccountBalance}:  # the common case, without a Python-level loop
        return BalanceUpdate(sequence, timestamp, tuple(entries), (), errors)  # type: ignore[arg-type]
    accounts: list[AccountBalance] = []
    wallets: list[Web3Balance] = []
    web3 = bool(entries)
    for entry in entries:
        if type(entry) is AccountBalance:
            accounts.append(entry)
            web3 = False
        elif type(entry) is Web3Balance:
            wallets.append(entry)
        else:
            errors += 1
            web3 = web3 and entry.web3  # type: ignore[union-attr]
    return BalanceUpdate(sequence, timestamp, tuple(accounts), tuple(wallets), errors,
                         KIND_WEB3 if web3 else KIND_BALANCES)


def parse_rest_balances(body: bytes | bytearray | str) -> tuple[tuple[AccountBalance, ...], int] | None:
    """Parse the body of GET /v1/user/balance: (valid entries, invalid entry count), or None if the
    body is not a JSON array at all."""
    entries: list[AccountBalance | None] | None
    try:
        raw = _decode_raw(body)
    except REFUSED:
        try:
            document = loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(document, list):
            return None
        entries = [parse_account_entry(entry) for entry in document]
    else:
        if memoryview(raw)[0] != ord("["):
            return None
        entries = raw_accounts(raw)
    if entries is None:
        return None
    valid = tuple(entry for entry in entries if entry is not None)
    return valid, len(entries) - len(valid)


def _control(message: dict[str, Any], message_type: str, sequence: int | None, errors: int) -> ControlMessage:
    payload = message.get("payload")
    action = message.get("action")
    if action is None and isinstance(payload, dict):
        action = payload.get("action")
    valid_type = bool(message_type) and is_label(message_type)
    valid_action = action is None or (isinstance(action, str) and is_label(action))
    return ControlMessage(
        sequence,
        message_type if valid_type else "invalid",
        action if valid_action else None,
        _error_detail(message),
        schema_errors=errors + (0 if valid_type and valid_action else 1),
        feeds=_feeds(payload),
    )


def _feeds(payload: Any) -> tuple[str, ...]:
    feeds = payload.get("feeds") if isinstance(payload, dict) else None
    if not isinstance(feeds, list):
        return ()
    return tuple(feed for feed in feeds[:MAX_LISTED_FEEDS] if isinstance(feed, str) and is_label(feed))


def _error_detail(message: dict[str, Any]) -> str | None:
    """sFOX documents no error text; some clients look for error.message, so take it when present,
    else a payload that is text."""
    for container in (message, message.get("payload")):
        if not isinstance(container, dict):
            continue
        error = container.get("error", container.get("message"))
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str) and error:
            return sanitize_text(error)
    payload = message.get("payload")
    return sanitize_text(payload) if isinstance(payload, str) and payload else None  # text, the one thing said


def sanitize_text(text: str, limit: int | None = None) -> str:
    """Text from the network made printable for one log line. Not cut by default: the log
    formatter cuts every field, after redacting it, since a cut made first could split an echoed
    API key and leave its head where redaction no longer recognises it."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return text if text.isprintable() else "".join(ch if ch.isprintable() else "?" for ch in text)
