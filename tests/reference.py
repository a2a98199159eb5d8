"""A plain reference decoder, written from the contract and the protocol notes with json.loads and
nothing of the exporter's own parsing, that the property tests hold parse_frame to.

It is slow and obvious on purpose: what it returns is what parse_frame must return, event for event.
Control messages are only told apart here (their details have tables of their own in test_parse).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sfox_exporter.sfox.decode import (
    AccountBalance,
    BadFrame,
    BalanceUpdate,
    ControlMessage,
    DocumentedBalance,
    EndUserBalances,
    OtherMessage,
    Ticker,
    Web3Balance,
)
from sfox_exporter.vocabulary import MessageKind

DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
KNOWN_WALLETS = ("trading", "collateral", "borrow", "lending")
MISSING = object()


class Bad(Exception):
    pass


def label(value: Any, empty: bool = False) -> bool:
    return isinstance(value, str) and (empty or value != "") and len(value) <= 128 and value.isprintable()


def whole_number(text: str) -> int | float:
    """A JSON integer too long for int() (4,300 digits) is still a number: too large, an infinity."""
    return int(text) if len(text) < 4300 else float(text)


def amount(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise Bad
    if isinstance(value, str):
        if len(value) > 64 or not DECIMAL.fullmatch(value):
            raise Bad
        number = float(value)
    elif isinstance(value, int):
        try:
            number = float(value)
        except OverflowError:
            raise Bad from None
    elif isinstance(value, float):
        number = value
    else:
        raise Bad
    if not math.isfinite(number):
        raise Bad
    return number


def account(entry: Any) -> AccountBalance | None:
    if not isinstance(entry, dict) or not label(entry.get("currency")):
        return None
    fields: dict[str, float] = {}
    wallets: dict[str, float] = {}
    try:
        for key, value in entry.items():
            if key in ("balance", "available", "held"):
                fields[key] = amount(value)
            elif key.endswith("_wallet"):
                if not label(key[: -len("_wallet")]):
                    return None
                wallets[key[: -len("_wallet")]] = amount(value)
    except Bad:
        return None
    if not fields and not wallets:
        return None
    ordered = [(name, wallets.pop(name)) for name in KNOWN_WALLETS if name in wallets] + list(wallets.items())
    return AccountBalance(entry["currency"].lower(), fields.get("balance"), fields.get("available"),
                          fields.get("held"), tuple(ordered))


def web3(entry: dict[str, Any]) -> Web3Balance | None:
    network = "" if entry.get("network") is None else entry["network"]
    currency = "" if entry.get("currency") is None else entry["currency"]
    if not (label(entry.get("address")) and label(network, empty=True) and label(currency, empty=True)):
        return None
    try:
        return Web3Balance(network, entry["address"], currency.lower(), amount(entry.get("balance")))
    except Bad:
        return None


def seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > 32 or not DECIMAL.fullmatch(value):
            return None
        # Exactly as written: "200000000000.1" ms is 200000000.0001 s rounded once, not twice.
        value = int(value) if value.isdigit() else Fraction(Decimal(value))
    if not isinstance(value, (int, float, Fraction)) or not 0 < value < 1e21:  # also refuses NaN
        return None
    for threshold, exponent in ((1e17, 9), (1e14, 6), (1e11, 3), (0, 0)):
        if value >= threshold:
            # An int divides by an int, so that a 19-digit time rounds once, not twice.
            result = float(value / (float(10**exponent) if isinstance(value, float) else 10**exponent))
            break
    return result if 94694400 <= result < 1e11 else None


def timestamp(message: dict[str, Any]) -> tuple[float | None, int]:
    raw = message.get("timestamp", MISSING)
    if raw is MISSING or raw is None:
        return None, 0
    value = seconds(raw)
    return value, int(value is None)


def reference_frame(data: bytes | str) -> object:
    try:
        message = json.loads(data, parse_int=whole_number)
    except (ValueError, RecursionError):
        return BadFrame("decode")
    if not isinstance(message, dict):
        return BadFrame("schema")
    sequence = message.get("sequence")
    bad_sequence = int(sequence is not None)
    if isinstance(sequence, int) and not isinstance(sequence, bool) and 0 <= sequence < 2**63:
        bad_sequence = 0
    else:
        sequence = None
    recipient = message.get("recipient")
    payload: Any = message.get("payload")
    if recipient is None:
        return ControlMessage if isinstance(message.get("type"), str) else OtherMessage(sequence, None, 1)
    when, errors = timestamp(message)
    errors += bad_sequence
    if recipient == "private.user.balances":
        entries = [payload] if isinstance(payload, dict) else payload
        if not isinstance(entries, list):
            return BalanceUpdate(sequence, when, (), (), errors + 1)
        accounts, wallets, all_web3 = [], [], bool(entries)
        for entry in entries:
            kind = entry.get("type") if isinstance(entry, dict) else None
            said_web3 = isinstance(entry, dict) and (kind.lower() == "web3" if isinstance(kind, str) else
                                                     kind is None and "address" in entry and "network" in entry)
            parsed = web3(entry) if said_web3 else account(entry)
            if parsed is None:
                errors += 1
                all_web3 = all_web3 and said_web3
            elif isinstance(parsed, Web3Balance):
                wallets.append(parsed)
            else:
                accounts.append(parsed)
                all_web3 = False
        return BalanceUpdate(sequence, when, tuple(accounts), tuple(wallets), errors,
                             MessageKind.WEB3 if all_web3 else MessageKind.BALANCES)
    if recipient == "private.enterprise.users.balances":
        updates = payload.get("updates") if isinstance(payload, dict) else None
        updates = [updates] if isinstance(updates, dict) else updates
        if not isinstance(updates, list) or not label(payload.get("user_id")):
            return OtherMessage(sequence, recipient, 1, MessageKind.END_USERS)
        parsed_accounts = [account(entry) for entry in updates]
        valid = tuple(a for a in parsed_accounts if a is not None)
        invalid = len(updates) - len(valid)
        return EndUserBalances(sequence, when, payload["user_id"], valid, errors + invalid, invalid)
    if not label(recipient, empty=True):
        return OtherMessage(sequence, None, 1)
    if recipient.startswith("ticker.sfox.") and len(recipient) > len("ticker.sfox."):
        try:
            last = amount(payload.get("last") if isinstance(payload, dict) else None)
        except Bad:
            return OtherMessage(sequence, recipient, 1)
        if last <= 0:
            return OtherMessage(sequence, recipient, 1)
        return Ticker(sequence, when, recipient[len("ticker.sfox."):].lower(), last, errors)
    return OtherMessage(sequence, recipient, errors)


def reference_rest(body: bytes | str) -> tuple[tuple[AccountBalance, ...], int] | None:
    try:
        document = json.loads(body, parse_int=whole_number)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, list):
        return None
    parsed = [account(entry) for entry in document]
    valid = tuple(a for a in parsed if a is not None)
    return valid, len(parsed) - len(valid)


def canonical(event: object) -> object:
    """An event as plain data to compare: entries of either path as AccountBalance-like tuples, floats
    by their exact bits (so that -0.0 and 0.0 differ), the fast path's `currencies` left out (the
    reference has no such field; tests/test_documented.py checks it)."""
    if isinstance(event, float):
        return event.hex()
    if isinstance(event, (AccountBalance, DocumentedBalance)):
        return ("entry", event.currency, canonical(event.balance), canonical(event.available),
                canonical(event.held), canonical(event.wallets))
    if isinstance(event, BalanceUpdate):
        return canonical(tuple(event._replace(currencies=None)))
    if isinstance(event, tuple):
        return (type(event).__name__, *(canonical(item) for item in event))
    return event
