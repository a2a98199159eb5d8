"""Parser tables: real sFOX message shapes from the docs and notes, and the ways they go wrong."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any

import pytest

from sfox_exporter.sfox.decode import (
    AccountBalance,
    BadFrame,
    BalanceUpdate,
    ControlMessage,
    InvalidAmount,
    OtherMessage,
    Web3Balance,
    parse_amount,
    parse_balances_frame,
    parse_frame,
    parse_rest_balances,
    parse_timestamp,
)
from tests.reference import reference_frame, reference_rest

# Verbatim from sFOX's balances page.
DOC_ACCOUNT_MESSAGE = {
    "sequence": 10,
    "recipient": "private.user.balances",
    "timestamp": 1649899310281716289,
    "payload": [
        {"currency": "btc", "balance": "0.17572419", "available": "0.17572419", "held": "0",
         "trading_wallet": "0.17572419", "collateral_wallet": "0", "borrow_wallet": "0", "lending_wallet": "0"},
        {"currency": "usd", "balance": "100", "available": "100", "held": "0",
         "trading_wallet": "100", "collateral_wallet": "0", "borrow_wallet": "0", "lending_wallet": "0"},
    ],
}
DOC_WEB3_MESSAGE = {
    "sequence": 11,
    "recipient": "private.user.balances",
    "timestamp": 1649899310281716289,
    "payload": {"address": "0x0bCdB57ae247F434C91b1d4521fFd6601f7e8999", "balance": "250.5",
                "currency": "USDC", "network": "Ethereum", "type": "web3"},
}
WALLETS_ZERO = (("trading", 0.17572419), ("collateral", 0.0), ("borrow", 0.0), ("lending", 0.0))


def frame(message: Any) -> bytes:
    return json.dumps(message).encode()


def balances(payload: Any, **envelope: Any) -> bytes:
    return frame({"sequence": 5, "recipient": "private.user.balances", "timestamp": 1649899310281716289,
                  "payload": payload, **envelope})


def test_documented_account_message() -> None:
    event = parse_frame(frame(DOC_ACCOUNT_MESSAGE))
    assert isinstance(event, BalanceUpdate)
    assert event.kind == "balances"
    assert event.sequence == 10
    assert event.timestamp == pytest.approx(1649899310.281716289, abs=1e-6)
    assert event.schema_errors == 0
    assert event.accounts[0] == AccountBalance("btc", 0.17572419, 0.17572419, 0.0, WALLETS_ZERO)
    assert event.accounts[1].currency == "usd"
    assert event.accounts[1].balance == 100.0


def test_documented_web3_message() -> None:
    event = parse_frame(frame(DOC_WEB3_MESSAGE))
    assert isinstance(event, BalanceUpdate)
    assert event.kind == "web3"
    assert event.wallets == (
        Web3Balance("Ethereum", "0x0bCdB57ae247F434C91b1d4521fFd6601f7e8999", "usdc", 250.5),
    )


@pytest.mark.parametrize(
    ("payload", "expected_accounts", "expected_wallets", "errors"),
    [
        pytest.param([], 0, 0, 0, id="empty list"),
        pytest.param([{"currency": "ETH", "balance": 1.5, "available": 1, "held": 0.5}], 1, 0, 0,
                     id="REST-style numbers"),
        pytest.param({"currency": "btc", "balance": "1"}, 1, 0, 0, id="single account object"),
        pytest.param([{"type": "web3", "address": "a1", "network": "Solana", "balance": "2"},
                      {"type": "web3", "address": "a2", "network": "Solana", "balance": "3"}], 0, 2, 0,
                     id="web3 as a list"),
        pytest.param([{"currency": "btc", "balance": "1"}, {"currency": "usd", "balance": "nan"}], 1, 0, 1,
                     id="one bad entry among good"),
        pytest.param([{"currency": "btc", "balance": "1"}, "junk", 7, None], 1, 0, 3, id="non-object entries"),
        pytest.param([{"balance": "1"}], 0, 0, 1, id="missing currency"),
        pytest.param([{"currency": "", "balance": "1"}], 0, 0, 1, id="empty currency"),
        pytest.param([{"currency": "btc"}], 0, 0, 1, id="no amounts at all"),
        pytest.param([{"currency": "btc", "balance": "1e999"}], 0, 0, 1, id="overflow to infinity"),
        pytest.param([{"currency": "btc", "balance": "Infinity"}], 0, 0, 1, id="infinity string"),
        pytest.param([{"currency": "btc", "balance": True}], 0, 0, 1, id="boolean"),
        pytest.param([{"currency": "btc", "balance": "1_000"}], 0, 0, 1, id="underscored digits"),
        pytest.param([{"currency": "btc", "balance": " 1"}], 0, 0, 1, id="padded number"),
        pytest.param([{"currency": "btc", "balance": [1]}], 0, 0, 1, id="list value"),
        pytest.param([{"currency": "b\u0000tc", "balance": "1"}], 0, 0, 1, id="control character in label"),
        pytest.param([{"currency": "b\u200btc", "balance": "1"}], 0, 0, 1, id="zero-width space in label"),
        pytest.param([{"currency": "\ud800", "balance": "1"}], 0, 0, 1, id="lone surrogate in label"),
        pytest.param([{"currency": "\u00c9th", "balance": "1"}], 1, 0, 0, id="printable non-ASCII label"),
        pytest.param([{"currency": "x" * 129, "balance": "1"}], 0, 0, 1, id="oversized label"),
        pytest.param([{"currency": "btc", "balance": "1", "_wallet": "1"}], 0, 0, 1, id="nameless wallet"),
        pytest.param([{"currency": "btc", "balance": "1", "held": None}], 0, 0, 1, id="null is not a number"),
        pytest.param([{"currency": "btc", "balance": "1", "borrow_wallet": None}], 0, 0, 1, id="null wallet"),
        pytest.param([{"currency": "btc", "balance": "1"}, {"currency": "usd", "held": "2"}], 2, 0, 0,
                     id="absent fields are not errors"),
        pytest.param([{"currency": "btc", "balance": "\u0661\u0662\u0663"}], 0, 0, 1, id="arabic-indic digits"),
        pytest.param([{"currency": "btc", "balance": "\uff11"}], 0, 0, 1, id="fullwidth digit"),
        pytest.param([{"type": "web3", "network": "Ethereum", "balance": "2"}], 0, 0, 1, id="web3 without address"),
        pytest.param([{"type": "web3", "address": "a", "balance": None}], 0, 0, 1, id="web3 without balance"),
        pytest.param([{"type": "web3", "address": "a", "network": 5, "balance": "1"}], 0, 0, 1,
                     id="web3 network not a string"),
        pytest.param([{"type": "Web3", "address": "a", "network": "Base", "currency": "USDC", "balance": "2"},
                      {"type": "WEB3", "address": "b", "balance": "3"}], 0, 2, 0, id="web3 in another case"),
        pytest.param([{"address": "a", "network": "Base", "currency": "USDC", "balance": "2"}], 0, 1, 0,
                     id="web3 without a type"),
        pytest.param([{"type": "Web3", "currency": "usdc", "balance": "2"}], 0, 0, 1,
                     id="web3 in another case without address is no account entry"),
    ],
)
def test_entries_are_validated_one_by_one(payload: Any, expected_accounts: int, expected_wallets: int,
                                          errors: int) -> None:
    event = parse_frame(balances(payload))
    assert isinstance(event, BalanceUpdate)
    assert (len(event.accounts), len(event.wallets), event.schema_errors) == (
        expected_accounts, expected_wallets, errors)


def test_currency_is_lower_cased_everywhere() -> None:
    event = parse_frame(balances([{"currency": "USDC", "balance": "1"},
                                  {"type": "web3", "address": "x", "currency": "EtH", "balance": "1"}]))
    assert isinstance(event, BalanceUpdate)
    assert event.accounts[0].currency == "usdc"
    assert event.wallets[0].currency == "eth"


def test_web3_currency_and_network_default_to_empty() -> None:
    event = parse_frame(balances({"type": "web3", "address": "0xabc", "balance": "1"}))
    assert isinstance(event, BalanceUpdate)
    assert event.wallets == (Web3Balance("", "0xabc", "", 1.0),)


def test_new_wallet_fields_become_wallets() -> None:
    event = parse_frame(balances([{"currency": "btc", "balance": "2", "staking_wallet": "1.25"}]))
    assert isinstance(event, BalanceUpdate)
    assert event.accounts[0].wallets == (("staking", 1.25),)


def test_unknown_fields_are_ignored() -> None:
    event = parse_frame(balances([{"currency": "btc", "balance": "2", "frozen": "x", "type": "account"}]))
    assert isinstance(event, BalanceUpdate)
    assert event.schema_errors == 0
    assert event.accounts[0].balance == 2.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.17572419", 0.17572419),
        ("100", 100.0),
        ("-5.5", -5.5),
        ("1e-8", 1e-8),
        ("123456789.123456789123", float("123456789.123456789123")),
        ("0.1", 0.1),
        (".5", 0.5),
        ("5.", 5.0),
        (7, 7.0),
        (2.25, 2.25),
        (10**30, 1e30),
    ],
)
def test_amounts_are_the_nearest_float_to_what_sfox_sent(text: Any, expected: float | None) -> None:
    assert parse_amount(text) == expected


@pytest.mark.parametrize("raw", [None, True, "", "abc", "1_000", " 1", "0x10", "1,5", "NaN", "-Infinity", "1e400",
                                 "\u0661", "\uff15", "1" * 65, float("nan"), [1], {}])
def test_anything_but_a_finite_number_is_refused(raw: Any) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(raw)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (1649899310281716289, 1649899310.281716289),  # nanoseconds, as every sFOX example
        (1649899310281716, 1649899310.281716),  # microseconds, as older docs say
        (1649899310281, 1649899310.281),  # milliseconds
        (1649899310, 1649899310.0),  # seconds
        (1649899310.5, 1649899310.5),
        ("1649899310281716289", 1649899310.281716289),
        (1.649899310281716e18, 1649899310.281716),
    ],
)
def test_timestamps_are_read_by_magnitude(raw: Any, seconds: float) -> None:
    value = parse_timestamp(raw)
    assert value is not None
    assert value == pytest.approx(seconds, abs=1e-5)


def test_a_31_digit_timestamp_string_is_scaled_exactly() -> None:
    """Decimal's default 28 digits rounded it before float() did: one unit in the last place off."""
    spelt = "1649899310281716465.950012207032"
    assert parse_timestamp(spelt) == float(Fraction(spelt) / 10**9)


@pytest.mark.parametrize("spelt", ["1649899310281716289.0", "1.649899310281716289e18", "+1649899310281716289",
                                   "164989931028171628.9e1", "1649899310281716289.000000000000"])
def test_a_timestamp_string_is_rounded_once_however_spelt(spelt: str) -> None:
    """float() and then a division rounded twice: 1649899310.281716, not 1649899310.2817163 (a black-box probe)."""
    exact = parse_timestamp("1649899310281716289")
    assert exact == 1649899310281716289 / 10**9 == 1649899310.2817163
    assert parse_timestamp(spelt) == exact


@pytest.mark.parametrize("raw", [None, True, -5, 0, "soon", float("nan"), float("inf"), 10**30, [1], {},
                                 94694399, 10**20, 9.5e20, 1e11 * 10**9, "1e400", "1e999999999", "-1e18", "0.0"])
def test_unusable_timestamps_are_none(raw: Any) -> None:
    assert parse_timestamp(raw) is None


def test_missing_timestamp_leaves_it_none() -> None:
    event = parse_frame(frame({"sequence": 1, "recipient": "private.user.balances", "payload": []}))
    assert isinstance(event, BalanceUpdate)
    assert event.timestamp is None


@pytest.mark.parametrize(
    ("message", "type_", "action", "success", "detail"),
    [
        ({"type": "success", "sequence": 1, "timestamp": 1727391983733911769,
          "payload": {"action": "authenticate"}, "action": "authenticate"}, "success", "authenticate", True, None),
        ({"type": "error", "sequence": 2, "timestamp": 1649898453577592461,
          "payload": {"action": "authenticate"}, "action": "authenticate"}, "error", "authenticate", False, None),
        ({"type": "success", "sequence": 1, "timestamp": 1703708043956093955,
          "payload": {"action": "subscribe", "feeds": ["private.user.balances"]}, "action": "subscribe"},
         "success", "subscribe", True, None),
        ({"type": "success", "sequence": 1, "timestamp": 1703708043956093955}, "success", None, True, None),
        ({"type": "error", "payload": {"action": "subscribe"}}, "error", "subscribe", False, None),
        ({"type": "error", "error": {"message": "invalid api key"}}, "error", None, False, "invalid api key"),
        ({"type": "error", "message": "bad\nthing"}, "error", None, False, "bad?thing"),
    ],
)
def test_control_messages(message: dict[str, Any], type_: str, action: str | None, success: bool,
                          detail: str | None) -> None:
    event = parse_frame(frame(message))
    assert isinstance(event, ControlMessage)
    assert (event.type, event.action, event.success, event.detail) == (type_, action, success, detail)
    assert event.kind == "control"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "decode"),
        (b"", "decode"),
        (b"\xff\xfe\x00garbage", "decode"),
        (b'{"a": 1', "decode"),
        (b"[" * 100000 + b"]" * 100000, "decode"),
        (b"[1, 2]", "schema"),
        (b'"text"', "schema"),
        (b"42", "schema"),
        (b"null", "schema"),
    ],
)
def test_frames_that_are_not_objects(data: bytes, reason: str) -> None:
    event = parse_frame(data)
    assert isinstance(event, BadFrame)
    assert event.reason == reason
    assert event.kind == "unknown"


def test_other_feeds_are_unknown_but_not_errors() -> None:
    event = parse_frame(frame({"sequence": 3, "recipient": "trades.sfox.btcusd", "payload": {}}))
    assert isinstance(event, OtherMessage)
    assert (event.kind, event.sequence, event.schema_errors) == ("unknown", 3, 0)


def test_objects_of_no_known_shape_are_schema_errors() -> None:
    event = parse_frame(frame({"sequence": 3, "hello": "world"}))
    assert isinstance(event, OtherMessage)
    assert event.schema_errors == 1


@pytest.mark.parametrize("payload", ["text", 5, None, True])
def test_balances_payload_of_wrong_type(payload: Any) -> None:
    event = parse_frame(balances(payload))
    assert isinstance(event, BalanceUpdate)
    assert (event.accounts, event.wallets, event.schema_errors) == ((), (), 1)


@pytest.mark.parametrize(("sequence", "expected", "errors"), [
    (7, 7, 0), (None, None, 0), ("7", None, 1), (-1, None, 1), (True, None, 1), (1.5, None, 1), (7.0, None, 1),
    (2**63, None, 1), ({"n": 7}, None, 1),
])
def test_sequence_must_be_a_natural_number(sequence: Any, expected: int | None, errors: int) -> None:
    """One that is there and unreadable is a schema error, on every path: else sequence checking
    would stop without a word."""
    for frame_ in (balances([], sequence=sequence), balances(DOC_ACCOUNT_MESSAGE["payload"], sequence=sequence),
                   frame({"sequence": sequence, "recipient": "trades.sfox.btcusd", "payload": {}}),
                   frame({"sequence": sequence, "type": "success", "action": "subscribe"})):
        for parse in (parse_frame, parse_balances_frame):
            event = parse(frame_)
            assert (event.sequence, event.schema_errors) == (expected, errors), (frame_, parse)


def test_rest_body_numbers_and_strings() -> None:
    body = json.dumps([
        {"currency": "BTC", "balance": 0.5, "available": 0.25, "held": 0.25, "trading_wallet": 0.5},
        {"currency": "usd", "balance": "100.5", "available": "100.5", "held": "0"},
        {"currency": "bad", "balance": "NaN"},
    ])
    parsed = parse_rest_balances(body)
    assert parsed is not None
    entries, invalid = parsed
    assert [e.currency for e in entries] == ["btc", "usd"]
    assert entries[0].wallets == (("trading", 0.5),)
    assert invalid == 1


@pytest.mark.parametrize("body", [b"", b"{}", b'{"data": []}', b"<html>", b"null"])
def test_rest_body_that_is_not_an_array(body: bytes) -> None:
    assert parse_rest_balances(body) is None


def test_json_nan_literals_never_become_values() -> None:
    event = parse_frame(b'{"recipient":"private.user.balances","payload":[{"currency":"btc","balance":NaN}]}')
    assert isinstance(event, BalanceUpdate)
    assert event.accounts == ()
    assert event.schema_errors == 1
    assert parse_frame(b'{"recipient":"private.user.balances","payload":[{"currency":"btc","balance":Infinity}]}'
                       ).schema_errors == 1


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"type": "web3", "address": "0xa", "balance": "not a number"}, "web3"),
        ([{"type": "web3", "address": "0xa", "balance": "x"}, {"type": "web3", "address": "0xb", "balance": "1"}],
         "web3"),
        ([{"type": "web3", "address": "0xa", "balance": "1"}, {"currency": "btc", "balance": "1"}], "balances"),
        ([{"currency": "btc", "balance": "x"}], "balances"),
        ([], "balances"),
    ],
)
def test_the_kind_follows_what_the_entries_say_they_are(payload: Any, kind: str) -> None:
    event = parse_frame(balances(payload))
    assert isinstance(event, BalanceUpdate)
    assert event.kind == kind


# --- the hardening issue: sFOX's message-format shape, and timestamps outside the window ----------

# The shape of sFOX's message-format page: no *_wallet field, an extra wallet_display_id, a currency at "0".
FORMAT_PAGE_ENTRIES = [
    {"currency": "btc", "balance": "0.5", "available": "0.5", "held": "0", "wallet_display_id": "a1b2c3"},
    {"currency": "usd", "balance": "0", "available": "0", "held": "0", "wallet_display_id": "d4e5f6"},
]


def test_the_message_format_page_shape_is_accepted() -> None:
    event = parse_frame(balances(FORMAT_PAGE_ENTRIES))
    assert isinstance(event, BalanceUpdate)
    assert event.schema_errors == 0
    assert event.accounts == (AccountBalance("btc", 0.5, 0.5, 0.0, ()), AccountBalance("usd", 0.0, 0.0, 0.0, ()))


@pytest.mark.parametrize("display_id", [7, None, {"x": [1]}, "x" * 500, "\u0000"])
def test_wallet_display_id_is_never_exported_whatever_it_holds(display_id: Any) -> None:
    event = parse_frame(balances([{"currency": "btc", "balance": "1", "wallet_display_id": display_id}]))
    assert isinstance(event, BalanceUpdate)
    assert event.schema_errors == 0
    assert event.accounts == (AccountBalance("btc", 1.0, None, None, ()),)


@pytest.mark.parametrize(
    ("timestamp", "seconds", "errors"),
    [
        pytest.param(1649899310281716289, 1649899310.281716289, 0, id="nanoseconds"),
        pytest.param(94694400, 94694400.0, 0, id="1973-01-01 in seconds"),
        pytest.param(10**20 - 10**6, 99999999999.999, 0, id="just before 5138 in nanoseconds"),
        pytest.param(10**20, None, 1, id="year 5138 in nanoseconds"),
        pytest.param(946_728_000_000_000_000_000, None, 1, id="year ~30,000 in nanoseconds"),
        pytest.param(94694399, None, 1, id="1972 in seconds"),
        pytest.param(1, None, 1, id="year 1970"),
        pytest.param(-62135596800, None, 1, id="year 1, negative"),
        pytest.param("soon", None, 1, id="not a number"),
        pytest.param(None, None, 0, id="null: nothing said"),
    ],
)
def test_timestamps_outside_the_window_are_not_used(timestamp: Any, seconds: float | None, errors: int) -> None:
    event = parse_frame(balances([{"currency": "btc", "balance": "1"}], timestamp=timestamp))
    assert isinstance(event, BalanceUpdate)
    assert event.timestamp == (None if seconds is None else pytest.approx(seconds, abs=1e-5))
    assert event.schema_errors == errors
    assert event.accounts == (AccountBalance("btc", 1.0, None, None, ()),)  # applied all the same


def test_compact_and_spaced_frames_decode_alike() -> None:
    compact = json.dumps(DOC_ACCOUNT_MESSAGE, separators=(",", ":")).encode()
    spaced = json.dumps(DOC_ACCOUNT_MESSAGE, indent=4).encode()
    assert parse_frame(compact) == parse_frame(spaced) == parse_frame(spaced.decode()) == parse_frame(
        bytearray(compact)) == parse_frame(memoryview(compact))


def test_new_wallets_follow_the_documented_ones() -> None:
    entry = {"currency": "btc", "staking_wallet": "3", "lending_wallet": "2", "trading_wallet": "1"}
    event = parse_frame(balances([entry]))
    assert isinstance(event, BalanceUpdate)
    assert event.accounts[0].wallets == (("trading", 1.0), ("lending", 2.0), ("staking", 3.0))


@pytest.mark.parametrize(("text", "sign"), [("-0", -1.0), ("-0.0", -1.0), ("0", 1.0), ("-1e-400", -1.0)])
def test_the_sign_of_zero_is_kept(text: str, sign: float) -> None:
    for frame_bytes in (balances([{"currency": "btc", "balance": text}]), balances({"balance": text, "currency": "x"})):
        event = parse_frame(frame_bytes)
        assert isinstance(event, BalanceUpdate)
        assert event.accounts[0].balance == 0.0
        assert math.copysign(1.0, event.accounts[0].balance) == sign


@pytest.mark.parametrize(("text", "valid"), [("1" * 64, True), ("1" * 65, False), ("0." + "1" * 62, True),
                                             ("0." + "1" * 63, False), ("\\u0031", True), ("\\u0031" * 65, False)])
def test_amount_strings_are_bounded_on_every_path(text: str, valid: bool) -> None:
    body = b'[{"currency":"btc","balance":"' + text.encode() + b'","held":"1"}]'
    event = parse_frame(b'{"recipient":"private.user.balances","payload":' + body + b"}")
    assert isinstance(event, BalanceUpdate)
    assert (len(event.accounts), event.schema_errors) == ((1, 0) if valid else (0, 1))
    assert parse_rest_balances(body) == (event.accounts, event.schema_errors)


def test_an_integer_past_ints_digit_limit_is_a_number_too_large_not_a_lost_message() -> None:
    """json.loads refuses integers of more than 4,300 digits: the whole message was lost as `decode`
    (even for one in a field not exported), and every REST snapshot failed with a traceback."""
    huge = "9" * 5000
    frame = ('{"sequence":3,"recipient":"private.user.balances","timestamp":1649899310281716289,"payload":['
             f'{{"currency":"btc","balance":{huge}}},{{"currency":"eth","balance":"1","wallet_display_id":{huge}}}]}}')
    for event in (parse_frame(frame.encode()), reference_frame(frame)):
        assert isinstance(event, BalanceUpdate)
        assert [account.currency for account in event.accounts] == ["eth"] and event.schema_errors == 1
    body = f'[{{"currency":"usd","balance":"5"}},{{"currency":"btc","balance":{huge}}}]'
    for rest in (parse_rest_balances(body.encode()), reference_rest(body)):
        assert rest is not None and [account.currency for account in rest[0]] == ["usd"] and rest[1] == 1
