"""Balance entries: one currency of an account, or one Web3 wallet, validated one by one.

Two ways in, one set of rules. Bytes go through msgspec structs first: msgspec is compiled, well
kept and widely used, and its typed structs check the documented shapes and turn decimal strings
into floats in C, so a list of valid entries costs two decodes and no Python per amount. An entry
the structs refuse (a field they do not know, such as a new `staking_wallet`, a value of the wrong
type, a number spelt "+1") takes the plain path: json.loads and the dict rules below, which are
the reference semantics. The structs refuse more than the rules do, never less, so both paths
agree on every entry; tests/test_hostile.py holds them to a reference decoder.

Rules: `currency` and every other label is bounded and printable; an amount is a JSON number or a
decimal string (ASCII digits, no padding, no underscores, at most 64 characters) whose value is a
finite float; null is not a number; fields this exporter does not export are ignored.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

# Label values end up in every scrape and in Prometheus's index, so they are bounded and printable.
MAX_LABEL_LENGTH = 128
# Longer than any real amount; bounds the work float() does on hostile strings.
MAX_AMOUNT_LENGTH = 64
WALLET_SUFFIX = "_wallet"
KNOWN_WALLETS = ("trading", "collateral", "borrow", "lending")

# float() alone would also accept "1_000", " 1 ", "nan", "infinity" and digits of other scripts.
# \Z, not $: $ would let a trailing newline through, and float() would then strip it.
_DECIMAL_PATTERN = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z"
is_decimal = re.compile(_DECIMAL_PATTERN).match
_isfinite = math.isfinite

# For the rare messages (Web3, tickers): msgspec calls back into Python for a pattern, which is
# too slow for every amount of every balances message.
Amount = Annotated[str, Meta(pattern=_DECIMAL_PATTERN, max_length=MAX_AMOUNT_LENGTH)] | float
Finite = Annotated[float, Meta(ge=-sys.float_info.max, le=sys.float_info.max)]  # NaN fails both
Bounded = Annotated[str, Meta(max_length=MAX_AMOUNT_LENGTH)]


class AccountBalance(NamedTuple):
    """One currency of the trading account. Absent fields are None.

    `wallets` lists the four documented wallets in their documented order, then any other
    `*_wallet` field in the order sFOX sent it."""

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


class Invalid:
    """An entry that failed validation, remembering whether it said it was a Web3 wallet."""

    __slots__ = ("web3",)

    def __init__(self, web3: bool) -> None:
        self.web3 = web3


INVALID_ACCOUNT = Invalid(web3=False)
INVALID_WEB3 = Invalid(web3=True)
Entry = AccountBalance | Web3Balance | Invalid


def is_label(value: str) -> bool:
    """Bounded and printable: no control or format characters, no separators but the space, no
    lone surrogates (which could not even be encoded for /metrics)."""
    return len(value) <= MAX_LABEL_LENGTH and value.isprintable()


# --- the typed path ---------------------------------------------------------------------------


class _AccountValues(Struct, forbid_unknown_fields=True):
    """An account entry of the documented shape, decoded in msgspec's lax mode: decimal strings
    become floats in C, and the bounds refuse NaN and the infinities. Lax mode reads only JSON's
    own number syntax, a subset of ours ("+1", ".5" and "007" take the plain path).

    No `type` field: an entry that names its type goes the Web3 or the plain way, which tell
    account from web3 by it."""

    currency: str
    balance: Finite | UnsetType = UNSET
    available: Finite | UnsetType = UNSET
    held: Finite | UnsetType = UNSET
    trading_wallet: Finite | UnsetType = UNSET
    collateral_wallet: Finite | UnsetType = UNSET
    borrow_wallet: Finite | UnsetType = UNSET
    lending_wallet: Finite | UnsetType = UNSET
    # In sFOX's message-format example; not exported, so any value will do.
    wallet_display_id: Any = None


class _AccountLengths(Struct, forbid_unknown_fields=True):
    """The same entry decoded strictly, for what lax mode cannot say: a string amount's length."""

    currency: str
    balance: Bounded | float | UnsetType = UNSET
    available: Bounded | float | UnsetType = UNSET
    held: Bounded | float | UnsetType = UNSET
    trading_wallet: Bounded | float | UnsetType = UNSET
    collateral_wallet: Bounded | float | UnsetType = UNSET
    borrow_wallet: Bounded | float | UnsetType = UNSET
    lending_wallet: Bounded | float | UnsetType = UNSET
    wallet_display_id: Any = None


class _Web3Entry(Struct, forbid_unknown_fields=True):
    type: Literal["web3"]
    address: str
    balance: Amount
    network: str | None = None
    currency: str | None = None


_decode_values = msgspec.json.Decoder(_AccountValues, strict=False).decode
_decode_lengths = msgspec.json.Decoder(_AccountLengths).decode
_decode_values_list = msgspec.json.Decoder(list[_AccountValues], strict=False).decode
_decode_lengths_list = msgspec.json.Decoder(list[_AccountLengths]).decode
_decode_web3 = msgspec.json.Decoder(_Web3Entry).decode
decode_raw_list = msgspec.json.Decoder(list[Raw]).decode
_astuple = msgspec.structs.astuple


def _lax_safe(raw: Raw) -> bool:
    """Whether lax mode reads every amount of `raw` as float() would. It reads the string "-0" as
    0.0, not -0.0; and an escaped string could spell "-0" too. sFOX sends neither."""
    data = bytes(raw)
    return b'"-0"' not in data and b"\\" not in data


def typed_accounts(raw: Raw) -> list[AccountBalance | None] | None:
    """The account entries of a raw list, each None when invalid; None when some entry is not of
    the documented shape, or not for the typed path at all, so that each must go its own way."""
    if not _lax_safe(raw):
        return None
    try:
        _decode_lengths_list(raw)
        return [_account(entry) for entry in _decode_values_list(raw)]
    except msgspec.ValidationError:
        return None


def _typed_account(raw: Raw) -> AccountBalance | Invalid | None:
    """One entry by the typed path: its AccountBalance or None; INVALID_ACCOUNT when the typed path
    cannot say (then the plain path must)."""
    if not _lax_safe(raw):
        return INVALID_ACCOUNT
    try:
        _decode_lengths(raw)
        return _account(_decode_values(raw))
    except msgspec.ValidationError:
        return INVALID_ACCOUNT


def _account(entry: _AccountValues) -> AccountBalance | None:
    currency = entry.currency
    if not currency or not is_label(currency):
        return None
    _, balance, available, held, trading, collateral, borrow, lending, _ = _astuple(entry)
    if trading is not UNSET and collateral is not UNSET and borrow is not UNSET and lending is not UNSET:
        wallets: tuple[tuple[str, float], ...] = (
            ("trading", trading), ("collateral", collateral), ("borrow", borrow), ("lending", lending))
    else:
        wallets = tuple((name, amount) for name, amount in zip(KNOWN_WALLETS, (trading, collateral, borrow, lending),
                                                                strict=True) if amount is not UNSET)
        if balance is UNSET and available is UNSET and held is UNSET and not wallets:
            return None
    return AccountBalance(currency.lower(), None if balance is UNSET else balance,
                          None if available is UNSET else available, None if held is UNSET else held, wallets)


def _web3_from_struct(entry: _Web3Entry) -> Web3Balance | None:
    address, network, currency = entry.address, entry.network or "", entry.currency or ""
    if not (address and is_label(address) and is_label(network) and is_label(currency)):
        return None
    amount = float(entry.balance)
    return Web3Balance(network, entry.address, currency.lower(), amount) if _isfinite(amount) else None


# Everything msgspec refuses in a whole input: bad JSON, bad UTF-8, numbers out of range, absurd
# nesting, the wrong shape (ValidationError is a DecodeError). The plain path then judges it.
REFUSED = (msgspec.DecodeError, ValueError, RecursionError)
_MAX_INT_DIGITS = 4300  # Python's default int_max_str_digits: int() refuses longer strings


def whole_input_decoder(kind: Any) -> Callable[[bytes | bytearray | memoryview | str], Any]:
    """msgspec's decode of `kind`, for a whole frame or REST body: bytes that are not UTF-8 raise
    msgspec.DecodeError, as they make json.loads refuse the input. msgspec checks UTF-8 only where
    it makes a str, never in a field it skips or a piece it keeps Raw, so without this an invalid
    byte there would let the input through. ASCII, all sFOX sends, is checked at C speed; surrogates
    pass, as json.loads lets them."""
    decode = msgspec.json.Decoder(kind).decode

    def checked(data: bytes | bytearray | memoryview | str) -> Any:
        if not isinstance(data, str):
            raw = bytes(data) if isinstance(data, memoryview) else data
            if not raw.isascii():
                try:
                    codecs.decode(raw, "utf-8", "surrogatepass")
                except UnicodeDecodeError:
                    raise msgspec.DecodeError("not UTF-8") from None
        return decode(data)

    return checked


def plain(raw: Raw) -> Any:
    """The plain path's view of a piece msgspec already checked as JSON (None past json's nesting
    limit, which sits a little below msgspec's)."""
    try:
        return loads(bytes(raw))
    except (RecursionError, ValueError):
        return None


def loads(data: bytes | bytearray | str) -> Any:
    """json.loads, with an integer past Python's limit on digits read as float() reads it, an
    infinity: valid JSON, whose value is then judged as any number too large is (a schema error of
    its entry), where json.loads raised and lost the frame, or failed every REST snapshot."""
    return json.loads(data, parse_int=_integer)


def _integer(text: str) -> int | float:
    return int(text) if len(text) < _MAX_INT_DIGITS else float(text)


def entry_from_raw(raw: Raw) -> Entry:
    """One element of a balances payload: a Web3 wallet when it says so, else an account balance."""
    account = _typed_account(raw)
    if account is not INVALID_ACCOUNT:
        return account or INVALID_ACCOUNT
    try:
        return _web3_from_struct(_decode_web3(raw)) or INVALID_WEB3
    except msgspec.ValidationError:
        pass
    return parse_entry(plain(raw))


def account_from_raw(raw: Raw) -> AccountBalance | None:
    """One account-balance object (REST, Connect), whatever its `type` says."""
    account = _typed_account(raw)
    return parse_account_entry(plain(raw)) if account is INVALID_ACCOUNT else account  # type: ignore[return-value]


def raw_accounts(raw: Raw) -> list[AccountBalance | None] | None:
    """Account entries of raw JSON, a list or one object; None for anything else."""
    first = memoryview(raw)[0]
    if first == ord("{"):
        return [account_from_raw(raw)]
    if first != ord("["):
        return None
    accounts = typed_accounts(raw)
    return [account_from_raw(entry) for entry in decode_raw_list(raw)] if accounts is None else accounts


# --- the plain path: the reference rules, on what json.loads returns ----------------------------


def parse_entry(entry: Any) -> Entry:
    """One element of a balances payload: a Web3 wallet when it says so, else an account balance."""
    if isinstance(entry, dict) and says_web3(entry):
        return parse_web3_entry(entry) or INVALID_WEB3
    return parse_account_entry(entry) or INVALID_ACCOUNT


def says_web3(entry: dict[str, Any]) -> bool:
    """A `type` of "web3" in any case ("Web3"), or none and a Web3 wallet's address and network: read
    as an account entry, a Web3 message would overwrite the account's own balance of its currency."""
    kind = entry.get("type")
    if isinstance(kind, str):
        return kind.lower() == "web3"
    return kind is None and "address" in entry and "network" in entry


_AMOUNT_FIELDS = {"balance": 0, "available": 1, "held": 2}
_KNOWN_ORDER = {name: index for index, name in enumerate(KNOWN_WALLETS)}


def parse_account_entry(entry: Any) -> AccountBalance | None:
    """One account-balance object, or None when any part of it is invalid."""
    if not isinstance(entry, dict):
        return None
    currency = entry.get("currency")
    if not isinstance(currency, str) or not currency or not is_label(currency):
        return None
    amounts: list[float | None] = [None, None, None]
    wallets: list[tuple[str, float]] = []
    for key, raw in entry.items():
        slot = _AMOUNT_FIELDS.get(key)
        wallet = ""
        if slot is None:
            if not key.endswith(WALLET_SUFFIX):
                continue  # currency, or a field this exporter does not export
            wallet = key[: -len(WALLET_SUFFIX)]
            if not wallet or not is_label(wallet):
                return None
        try:
            amount = parse_amount(raw)
        except InvalidAmount:
            return None
        if slot is not None:
            amounts[slot] = amount
        else:
            wallets.append((wallet, amount))
    # Documented wallets first, in their documented order: the order the typed path gives.
    wallets.sort(key=lambda item: _KNOWN_ORDER.get(item[0], len(KNOWN_WALLETS)))
    balance = AccountBalance(currency.lower(), amounts[0], amounts[1], amounts[2], tuple(wallets))
    return balance if balance.series_count else None


def parse_web3_entry(entry: dict[str, Any]) -> Web3Balance | None:
    address = entry.get("address")
    network = entry.get("network")
    currency = entry.get("currency")
    network = "" if network is None else network
    currency = "" if currency is None else currency
    if not (isinstance(address, str) and address and is_label(address)):
        return None
    if not (isinstance(network, str) and is_label(network)):
        return None
    if not (isinstance(currency, str) and is_label(currency)):
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
        if len(raw) > MAX_AMOUNT_LENGTH or not is_decimal(raw):
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
    if not _isfinite(value):
        raise InvalidAmount
    return value
