"""Turn sFOX frames and REST bodies into typed events.

Pure: bytes or text in, immutable events out. No I/O, no clock, no Prometheus. Every input, however
hostile, yields an event; nothing raises out of `parse_frame` or `parse_rest_balances`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

BALANCES_FEED = "private.user.balances"

KIND_BALANCES = "balances"
KIND_WEB3 = "web3"
KIND_CONTROL = "control"
KIND_UNKNOWN = "unknown"
MESSAGE_KINDS = (KIND_BALANCES, KIND_WEB3, KIND_CONTROL, KIND_UNKNOWN)

ACCOUNT_FIELDS = ("balance", "available", "held")
WALLET_SUFFIX = "_wallet"

# Label values end up in every scrape and in Prometheus's index, so they are bounded and printable.
MAX_LABEL_LENGTH = 128
# Longer than any real amount; bounds the work float() does on hostile strings.
MAX_AMOUNT_LENGTH = 64
MAX_CONTROL_TEXT_LENGTH = 200

# float() alone would also accept "1_000", " 1 ", "nan" and "infinity".
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True, slots=True)
class AccountBalance:
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


@dataclass(frozen=True, slots=True)
class Web3Balance:
    network: str
    address: str
    currency: str  # "" when sFOX sends none
    balance: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.network, self.address, self.currency)


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    """A message of the balances feed: account balances, Web3 wallet balances, or both."""

    sequence: int | None
    timestamp: float | None  # seconds since the epoch
    accounts: tuple[AccountBalance, ...]
    wallets: tuple[Web3Balance, ...]
    schema_errors: int

    @property
    def kind(self) -> str:
        return KIND_WEB3 if self.wallets and not self.accounts else KIND_BALANCES


@dataclass(frozen=True, slots=True)
class ControlMessage:
    """A reply or notice from sFOX: `type` and usually `action`, no `recipient`."""

    sequence: int | None
    type: str
    action: str | None
    detail: str | None  # error text, when sFOX sends one
    schema_errors: int = 0

    kind = KIND_CONTROL

    @property
    def success(self) -> bool:
        return self.type == "success"


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A JSON object that is not for the balances feed: another feed, or no recognisable shape."""

    sequence: int | None
    recipient: str | None
    schema_errors: int

    kind = KIND_UNKNOWN


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that is not a JSON object. `reason` is an error reason: decode or schema."""

    reason: str

    kind = KIND_UNKNOWN
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

    accounts: list[AccountBalance] = []
    wallets: list[Web3Balance] = []
    errors = 0
    for entry in payload:
        if isinstance(entry, dict) and entry.get("type") == "web3":
            wallet = parse_web3_entry(entry)
            if wallet is None:
                errors += 1
            else:
                wallets.append(wallet)
        else:
            balance = parse_account_entry(entry)
            if balance is None:
                errors += 1
            else:
                accounts.append(balance)
    return BalanceUpdate(sequence, timestamp, tuple(accounts), tuple(wallets), errors)


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


def parse_account_entry(entry: Any) -> AccountBalance | None:
    """One account-balance object, or None when any part of it is invalid."""
    if not isinstance(entry, dict):
        return None
    currency = entry.get("currency")
    if not isinstance(currency, str) or not currency or not _is_label(currency):
        return None
    fields: dict[str, float | None] = {"balance": None, "available": None, "held": None}
    wallets: list[tuple[str, float]] = []
    try:
        for key, raw in entry.items():
            if key in fields:
                fields[key] = parse_amount(raw)
            elif key.endswith(WALLET_SUFFIX):
                wallet = key[: -len(WALLET_SUFFIX)]
                if not wallet or not _is_label(wallet):
                    return None
                amount = parse_amount(raw)
                if amount is not None:
                    wallets.append((wallet, amount))
    except InvalidAmount:
        return None
    balance = AccountBalance(
        currency.lower(), fields["balance"], fields["available"], fields["held"], tuple(wallets)
    )
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
    if amount is None:
        return None
    return Web3Balance(network, address, currency.lower(), amount)


class InvalidAmount(ValueError):
    """A balance value that is not a finite number."""


def parse_amount(raw: Any) -> float | None:
    """A balance value as a float; None when absent or null; raises InvalidAmount otherwise.

    sFOX sends decimal strings on the WebSocket and JSON numbers over REST. Strings go straight to
    float(), which rounds correctly; no arithmetic happens on the way, so the exported value is the
    float64 nearest to what sFOX sent.
    """
    if raw is None:
        return None
    if isinstance(raw, str):
        if len(raw) > MAX_AMOUNT_LENGTH or not _DECIMAL.fullmatch(raw):
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
    valid_type = _is_label(message_type)
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


def sanitize_text(text: str, limit: int = MAX_CONTROL_TEXT_LENGTH) -> str:
    """Text from the network made safe for one log line: printable, bounded."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def _is_label(value: str) -> bool:
    return len(value) <= MAX_LABEL_LENGTH and value.isascii() and value.isprintable()
