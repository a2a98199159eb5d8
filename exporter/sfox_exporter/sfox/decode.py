"""Turn sFOX frames and REST bodies into typed events.

Pure: bytes or text in, immutable events out. No I/O, no clock, no Prometheus. Every input, however
hostile, yields an event; nothing raises out of `parse_frame` or `parse_rest_balances`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from sfox_exporter.vocabulary import MessageKind

BALANCES_FEED = "private.user.balances"

KIND_BALANCES = MessageKind.BALANCES
KIND_WEB3 = MessageKind.WEB3
KIND_CONTROL = MessageKind.CONTROL
KIND_UNKNOWN = MessageKind.UNKNOWN

ACCOUNT_FIELDS = ("balance", "available", "held")
WALLET_SUFFIX = "_wallet"

# Label values end up in every scrape and in Prometheus's index, so they are bounded and printable.
MAX_LABEL_LENGTH = 128
# Longer than any real amount; bounds the work float() does on hostile strings.
MAX_AMOUNT_LENGTH = 64

# float() alone would also accept "1_000", " 1 ", "nan", "infinity" and digits of other scripts.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_decimal = _DECIMAL.fullmatch
_isfinite = math.isfinite


class AccountBalance(NamedTuple):
    """One currency of the trading account. Absent fields are None."""

    currency: str
    balance: float | None
    available: float | None
    held: float | None
    wallets: tuple[tuple[str, float], ...]  # (wallet, amount), e.g. ("trading", 1.5)

    @property
    def series_count(self) -> int:
        return (
            (self.balance is not None)
            + (self.available is not None)
            + (self.held is not None)
            + len(self.wallets)
        )


class Web3Balance(NamedTuple):
    network: str
    address: str
    currency: str  # "" when sFOX sends none
    balance: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.network, self.address, self.currency)


class BalanceUpdate(NamedTuple):
    """A message of the balances feed: account balances, Web3 wallet balances, or both.

    The three types that come once per message or per entry are NamedTuples rather than frozen
    dataclasses: as immutable, and built several times faster."""

    sequence: int | None
    timestamp: float | None  # seconds since the epoch
    accounts: tuple[AccountBalance, ...]
    wallets: tuple[Web3Balance, ...]
    schema_errors: int
    kind: MessageKind = KIND_BALANCES  # web3 when every entry says type web3, valid or not


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """A reply or notice from sFOX: `type` and usually `action`, no `recipient`."""

    sequence: int | None
    type: str
    action: str | None
    detail: str | None  # error text, when sFOX sends one
    schema_errors: int = 0

    kind: MessageKind = KIND_CONTROL

    @property
    def success(self) -> bool:
        return self.type == "success"


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A JSON object that is not for the balances feed: another feed, or no recognisable shape."""

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


Event = BalanceUpdate | ControlMessage | OtherMessage | BadFrame


def parse_frame(data: bytes | bytearray | str) -> Event:
    """Parse one WebSocket message."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and bad UTF-8; RecursionError, absurdly deep nesting.
        return BadFrame("decode")
    if not isinstance(message, dict):
        return BadFrame("schema")

    sequence = _sequence(message.get("sequence"))
    recipient = message.get("recipient")
    if recipient is None:
        message_type = message.get("type")
        if isinstance(message_type, str):
            return _control(message, message_type, sequence)
        return OtherMessage(sequence, None, schema_errors=1)
    if recipient != BALANCES_FEED:
        valid = isinstance(recipient, str) and _is_label(recipient)
        return OtherMessage(sequence, recipient if valid else None, schema_errors=0 if valid else 1)

    timestamp = parse_timestamp(message.get("timestamp"))
    payload = message.get("payload")
    if isinstance(payload, dict):
        payload = [payload]
    elif not isinstance(payload, list):
        return BalanceUpdate(sequence, timestamp, (), (), schema_errors=1)

    return _update(sequence, timestamp, [parse_entry(entry) for entry in payload])


class _Invalid:
    """An entry that failed validation, remembering whether it said it was a Web3 wallet."""

    __slots__ = ("web3",)

    def __init__(self, web3: bool) -> None:
        self.web3 = web3


_INVALID_ACCOUNT = _Invalid(web3=False)
_INVALID_WEB3 = _Invalid(web3=True)


def parse_entry(entry: Any) -> AccountBalance | Web3Balance | _Invalid:
    """One element of a balances payload: a Web3 wallet when it says so, else an account balance."""
    if isinstance(entry, dict) and entry.get("type") == "web3":
        return parse_web3_entry(entry) or _INVALID_WEB3
    return parse_account_entry(entry) or _INVALID_ACCOUNT


def _update(sequence: int | None, timestamp: float | None, entries: list[Any]) -> BalanceUpdate:
    """A BalanceUpdate from parsed entries, in order; every invalid entry is a schema error."""
    if set(map(type, entries)) == {AccountBalance}:  # the common case, without a Python-level loop
        return BalanceUpdate(sequence, timestamp, tuple(entries), (), 0)
    accounts: list[AccountBalance] = []
    wallets: list[Web3Balance] = []
    errors = 0
    web3 = bool(entries)
    for entry in entries:
        if type(entry) is AccountBalance:
            accounts.append(entry)
            web3 = False
        elif type(entry) is Web3Balance:
            wallets.append(entry)
        else:
            errors += 1
            web3 = web3 and entry.web3
    return BalanceUpdate(sequence, timestamp, tuple(accounts), tuple(wallets), errors,
                         KIND_WEB3 if web3 else KIND_BALANCES)


# sFOX's wire format: compact JSON, keys in this order. Numbers as JSON has them: no leading zeros.
_COMPACT_BALANCES = re.compile(
    rb'\{"sequence":(0|[1-9][0-9]{0,18}),"recipient":"private\.user\.balances",'
    rb'"timestamp":(0|[1-9][0-9]{0,24}),"payload":\['
)
_MISSING: Any = object()
_decode_json = json.JSONDecoder().decode  # what json.loads does with text


# An account entry exactly as sFOX writes one: its eight keys in their documented order, decimal
# strings, an ASCII currency code. Such bytes decode to their literal text, so the entry can be
# built straight from the groups with the result parse_account_entry would give.
_AMOUNT = rb'"(-?(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{1,20})?(?:[eE][+-]?[0-9]{1,3})?)"'
_CANONICAL_ENTRY = re.compile(
    rb'\{"currency":"([A-Za-z0-9][A-Za-z0-9._-]{0,31})","balance":' + _AMOUNT + rb',"available":' + _AMOUNT
    + rb',"held":' + _AMOUNT + rb',"trading_wallet":' + _AMOUNT + rb',"collateral_wallet":' + _AMOUNT
    + rb',"borrow_wallet":' + _AMOUNT + rb',"lending_wallet":' + _AMOUNT
)


def _canonical_entry(piece: bytes, start: int) -> AccountBalance | None:
    """The entry of a piece in sFOX's canonical shape, or None for any other piece."""
    match = _CANONICAL_ENTRY.fullmatch(piece, start)
    if match is None:
        return None
    currency, balance, available, held, trading, collateral, borrow, lending = match.groups()
    amounts = [float(balance), float(available), float(held), float(trading), float(collateral),
               float(borrow), float(lending)]
    if not all(map(_isfinite, amounts)):  # an exponent past float's range: the generic path says no
        return None
    return AccountBalance(currency.decode().lower(), amounts[0], amounts[1], amounts[2], (
        ("trading", amounts[3]), ("collateral", amounts[4]), ("borrow", amounts[5]), ("lending", amounts[6])))


class CachingParser:
    """parse_frame for a stream of balance messages, decoding only entries it has not seen lately.

    A balances message carries many currencies and few of them change from one message to the next.
    For frames in sFOX's compact format (anything else goes to parse_frame whole), the frame is cut
    at every '}': a flat payload of n entries gives the first entry, n - 1 entries each led by its
    separating comma, then ']' and ''. Each piece is looked up by its bytes; a new one must decode,
    with a closing brace, as a flat JSON object. A '}' inside a string or a nested object always
    leaves a piece that does not, and the frame then goes to parse_frame too. The first piece and
    the comma-led ones are remembered apart, so a remembered piece is only ever accepted where it
    was valid. The result is always what parse_frame returns; tests/test_hostile.py checks that.
    """

    def __init__(self, keep_at_least: int = 256) -> None:
        self._first: dict[bytes, Any] = {}
        self._others: dict[bytes, Any] = {}
        self._keep_at_least = keep_at_least

    def parse(self, data: bytes | bytearray | str) -> Event:
        if isinstance(data, str):
            return parse_frame(data)
        data = bytes(data)
        match = _COMPACT_BALANCES.match(data)
        if match is None:
            return parse_frame(data)
        pieces = data.split(b"}")
        if len(pieces) < 3 or pieces[-1] or pieces[-2] != b"]":
            if len(data) == match.end() + 2 and data.endswith(b"]}"):  # an empty payload
                return _update(_sequence(int(match.group(1))), parse_timestamp(int(match.group(2))), [])
            return parse_frame(data)
        first = pieces[0][match.end() :]
        others = pieces[1:-2]
        entries: list[Any] = [self._first.get(first), *map(self._others.get, others)]
        if None in entries:
            index = entries.index(None)
            while index >= 0:
                entry = self._decode(first if index == 0 else others[index - 1], first=index == 0)
                if entry is None:
                    return parse_frame(data)
                entries[index] = entry
                index = entries.index(None, index) if None in entries else -1
            if len(self._others) > max(self._keep_at_least, 4 * len(entries)):
                self._first, self._others = {}, {}
        return _update(_sequence(int(match.group(1))), parse_timestamp(int(match.group(2))), entries)

    def _decode(self, piece: bytes, first: bool) -> Any:
        """A new piece's entry (valid or _Invalid), remembered; None if the piece is not a flat object
        in its place. Pieces are cut at an ASCII byte, so decoding one as UTF-8 gives exactly the
        characters the whole frame's decoding has there."""
        if piece[: 1 if first else 2] != (b"{" if first else b",{"):
            return None
        canonical = _canonical_entry(piece, 0 if first else 1)
        if canonical is not None:
            (self._first if first else self._others)[piece] = canonical
            return canonical
        try:
            decoded = _decode_json(piece[0 if first else 1 :].decode("utf-8", "surrogatepass") + "}")
        except (ValueError, RecursionError):
            return None
        entry = parse_entry(decoded)
        (self._first if first else self._others)[piece] = entry
        return entry


def parse_rest_balances(body: bytes | bytearray | str) -> tuple[tuple[AccountBalance, ...], int] | None:
    """Parse the body of GET /v1/user/balance: (valid entries, invalid entry count), or None if the
    body is not a JSON array at all."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, list):
        return None
    entries = [parse_account_entry(entry) for entry in document]
    valid = tuple(entry for entry in entries if entry is not None)
    return valid, len(entries) - len(valid)


_AMOUNT_FIELDS = {"balance": 0, "available": 1, "held": 2}
# Wallet names by field name ("trading_wallet" -> "trading"; None: not a valid label). The same few
# names come in every message; the memo is bounded, since a hostile peer could invent endless ones.
_WALLET_NAMES: dict[str, str | None] = {}
_WALLET_NAMES_LIMIT = 1024


def _wallet_name(key: str) -> str | None:
    name = _WALLET_NAMES.get(key, _MISSING)
    if name is _MISSING:
        wallet = key[: -len(WALLET_SUFFIX)]
        name = wallet if wallet and _is_label(wallet) else None
        if len(_WALLET_NAMES) < _WALLET_NAMES_LIMIT:
            _WALLET_NAMES[key] = name
    return name  # type: ignore[no-any-return]


def parse_account_entry(entry: Any) -> AccountBalance | None:
    """One account-balance object, or None when any part of it is invalid."""
    if not isinstance(entry, dict):
        return None
    currency = entry.get("currency")
    if not isinstance(currency, str) or not currency or not _is_label(currency):
        return None
    amounts: list[float | None] = [None, None, None]
    wallets: list[tuple[str, float]] = []
    for key, raw in entry.items():
        slot = _AMOUNT_FIELDS.get(key)
        if slot is None:
            if not key.endswith(WALLET_SUFFIX):
                continue  # currency, or a field this exporter does not export
            wallet = _WALLET_NAMES.get(key) or _wallet_name(key)
            if wallet is None:
                return None
        # The common case inline, the rest through parse_amount: this runs for every new entry.
        if type(raw) is str and len(raw) <= MAX_AMOUNT_LENGTH and _decimal(raw):
            amount = float(raw)
            if not _isfinite(amount):
                return None
        else:
            try:
                amount = parse_amount(raw)
            except InvalidAmount:
                return None
        if slot is not None:
            amounts[slot] = amount
        else:
            wallets.append((wallet, amount))  # type: ignore[arg-type]  # wallet is set when slot is None
    balance = AccountBalance(currency.lower(), amounts[0], amounts[1], amounts[2], tuple(wallets))
    return balance if balance.series_count else None


def parse_web3_entry(entry: dict[str, Any]) -> Web3Balance | None:
    address = entry.get("address")
    network = entry.get("network")
    currency = entry.get("currency")
    network = "" if network is None else network
    currency = "" if currency is None else currency
    if not (isinstance(address, str) and address and _is_label(address)):
        return None
    if not (isinstance(network, str) and _is_label(network)):
        return None
    if not (isinstance(currency, str) and _is_label(currency)):
        return None
    try:
        amount = parse_amount(entry.get("balance"))
    except InvalidAmount:
        return None
    return Web3Balance(network, address, currency.lower(), amount)


class InvalidAmount(ValueError):
    """A balance value that is not a finite number."""


def parse_amount(raw: Any) -> float:
    """A balance value as a float; raises InvalidAmount for anything but a finite number.

    null is a value that is not a number too: sFOX leaves a field out when it has nothing to say.

    sFOX sends decimal strings on the WebSocket and JSON numbers over REST. Strings go straight to
    float(), which rounds correctly; no arithmetic happens on the way, so the exported value is the
    float64 nearest to what sFOX sent.
    """
    if isinstance(raw, str):
        if len(raw) > MAX_AMOUNT_LENGTH or not _decimal(raw):
            raise InvalidAmount
        value = float(raw)
    elif isinstance(raw, float):
        value = raw
    elif isinstance(raw, int) and not isinstance(raw, bool):
        try:
            value = float(raw)
        except OverflowError:
            raise InvalidAmount from None
    else:
        raise InvalidAmount
    if not math.isfinite(value):
        raise InvalidAmount
    return value


def parse_timestamp(raw: Any) -> float | None:
    """Seconds since the epoch from a timestamp in ns, µs, ms or s, told apart by magnitude.

    The thresholds sit between the magnitudes of present-day times in each unit (about 1.7e18 ns,
    1.7e15 µs, 1.7e12 ms, 1.7e9 s), so any date from 1973 to 5138 reads correctly.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        if len(raw) > 32 or not _DECIMAL.fullmatch(raw):
            return None
        raw = int(raw) if raw.isdigit() else float(raw)
    if isinstance(raw, int):
        if raw <= 0 or raw >= 10**21:
            return None
        if raw >= 10**17:
            return raw / 10**9
        if raw >= 10**14:
            return raw / 10**6
        if raw >= 10**11:
            return raw / 10**3
        return float(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw) or raw <= 0 or raw >= 1e21:
            return None
        for threshold, scale in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
            if raw >= threshold:
                return raw / scale
        return raw
    return None


def _sequence(raw: Any) -> int | None:
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 2**63:
        return raw
    return None


def _control(message: dict[str, Any], message_type: str, sequence: int | None) -> ControlMessage:
    payload = message.get("payload")
    action = message.get("action")
    if action is None and isinstance(payload, dict):
        action = payload.get("action")
    valid_type = bool(message_type) and _is_label(message_type)
    valid_action = action is None or (isinstance(action, str) and _is_label(action))
    return ControlMessage(
        sequence,
        message_type if valid_type else "invalid",
        action if valid_action else None,
        _error_detail(message),
        schema_errors=0 if valid_type and valid_action else 1,
    )


def _error_detail(message: dict[str, Any]) -> str | None:
    """sFOX documents no error text; some clients look for error.message, so take it when present."""
    for container in (message, message.get("payload")):
        if not isinstance(container, dict):
            continue
        error = container.get("error", container.get("message"))
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str) and error:
            return sanitize_text(error)
    return None


def sanitize_text(text: str, limit: int | None = None) -> str:
    """Text from the network made printable for one log line. Not cut by default: the log
    formatter cuts every field, after redacting it, since a cut made first could split an echoed
    API key and leave its head where redaction no longer recognises it."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return text if text.isprintable() else "".join(ch if ch.isprintable() else "?" for ch in text)


def _is_label(value: str) -> bool:
    """Bounded and printable: no control or format characters, no separators but the space, no
    lone surrogates (which could not even be encoded for /metrics)."""
    return len(value) <= MAX_LABEL_LENGTH and value.isprintable()
