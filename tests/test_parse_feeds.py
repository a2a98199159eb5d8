"""Parser tables for the feeds beside the balances: sFOX Connect's end-user balances, the ticker,
and the currency pairs of GET /v1/markets/currency-pairs, on the shapes of the protocol notes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sfox_exporter.sfox.decode import (
    AccountBalance,
    BadFrame,
    EndUserBalances,
    OtherMessage,
    Ticker,
    parse_currency_pairs,
    parse_frame,
)

from .test_parse import frame

# --- sFOX Connect: private.enterprise.users.balances ----------------------------------------------

def end_users(payload: Any, **envelope: Any) -> bytes:
    return frame({"sequence": 22, "recipient": "private.enterprise.users.balances",
                  "timestamp": 1710367225302228171, "payload": payload, **envelope})


ENTRY_BTC = {"currency": "btc", "balance": "0.5", "available": "0.25", "held": "0.25", "trading_wallet": "0.5",
             "borrow_wallet": "0", "collateral_wallet": "0", "lending_wallet": "0"}
ENTRY_USD = {"currency": "USD", "balance": 100, "available": 100, "held": 0}


@pytest.mark.parametrize(
    ("payload", "currencies", "errors"),
    [
        pytest.param({"user_id": "test3", "updates": [ENTRY_BTC, ENTRY_USD]}, ["btc", "usd"], 0, id="documented"),
        pytest.param({"user_id": "test3", "updates": ENTRY_BTC}, ["btc"], 0, id="one object"),
        pytest.param({"user_id": "test3", "updates": []}, [], 0, id="no currencies"),
        pytest.param({"user_id": "test3", "updates": [ENTRY_BTC, {"currency": "eth", "balance": "nan"}, 5]},
                     ["btc"], 2, id="invalid entries counted"),
        pytest.param({"user_id": "test3", "updates": [ENTRY_USD], "email": "a@b.c", "user_token": "secret",
                      "first_name": "Ada"}, ["usd"], 0, id="personal data dropped"),
    ],
)
def test_end_user_balances(payload: dict[str, Any], currencies: list[str], errors: int) -> None:
    event = parse_frame(end_users(payload))
    assert isinstance(event, EndUserBalances)
    assert (event.sequence, event.user_id, event.kind) == (22, "test3", "end_users")
    assert event.timestamp == pytest.approx(1710367225.302228171, abs=1e-6)
    assert [a.currency for a in event.accounts] == currencies
    assert event.schema_errors == errors
    assert "secret" not in repr(event) and "Ada" not in repr(event) and "a@b.c" not in repr(event)


def test_end_user_entries_read_like_the_balances_feed() -> None:
    event = parse_frame(end_users({"user_id": "u1", "updates": [ENTRY_BTC]}))
    assert isinstance(event, EndUserBalances)
    assert event.accounts == (AccountBalance("btc", 0.5, 0.25, 0.25, (
        ("trading", 0.5), ("collateral", 0.0), ("borrow", 0.0), ("lending", 0.0))),)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"updates": [ENTRY_BTC]}, id="no user_id"),
        pytest.param({"user_id": "", "updates": [ENTRY_BTC]}, id="empty user_id"),
        pytest.param({"user_id": 5, "updates": [ENTRY_BTC]}, id="numeric user_id"),
        pytest.param({"user_id": "a\nb", "updates": [ENTRY_BTC]}, id="control character in user_id"),
        pytest.param({"user_id": "x" * 129, "updates": [ENTRY_BTC]}, id="oversized user_id"),
        pytest.param({"user_id": "u1"}, id="no updates"),
        pytest.param({"user_id": "u1", "updates": "btc"}, id="updates not a list"),
        pytest.param({"user_id": "u1", "updates": None}, id="updates null"),
        pytest.param([{"user_id": "u1", "updates": []}], id="payload a list"),
        pytest.param(None, id="payload null"),
    ],
)
def test_end_user_messages_of_the_wrong_shape_are_one_schema_error(payload: Any) -> None:
    event = parse_frame(end_users(payload))
    assert isinstance(event, OtherMessage)
    assert (event.sequence, event.schema_errors, event.kind) == (22, 1, "end_users")


# --- market data: ticker.sfox.<pair> and GET /v1/markets/currency-pairs -------------------------

DOC_TICKER: dict[str, Any] = {"sequence": 4, "recipient": "ticker.sfox.btcusd", "timestamp": 1649901842979345289,
              "payload": {"amount": 0.00005737, "exchange": "coinbase", "high": 41512.43, "last": 41420.58,
                          "low": 41058.82, "open": 41141.31, "pair": "btcusd", "route": "Smart",
                          "source": "ticker-info", "timestamp": "2022-04-14T02:04:02.481Z", "volume": 1387.77211046,
                          "vwap": 41283.96339697249}}


def ticker(last: Any, recipient: str = "ticker.sfox.btcusd", **payload: Any) -> bytes:
    return frame({**DOC_TICKER, "recipient": recipient, "payload": {**DOC_TICKER["payload"], "last": last, **payload}})


def test_documented_ticker() -> None:
    event = parse_frame(frame(DOC_TICKER))
    assert isinstance(event, Ticker)
    assert (event.sequence, event.pair, event.last, event.schema_errors) == (4, "btcusd", 41420.58, 0)
    assert event.timestamp == pytest.approx(1649901842.979345289, abs=1e-6)


@pytest.mark.parametrize(("last", "price"), [(41420.58, 41420.58), ("41420.58", 41420.58), (3, 3.0), ("1e-8", 1e-8)])
def test_ticker_prices_are_numbers_or_numeric_strings(last: Any, price: float) -> None:
    event = parse_frame(ticker(last))
    assert isinstance(event, Ticker)
    assert event.last == price


def test_the_pair_comes_from_the_feed_name() -> None:
    event = parse_frame(ticker(1.5, recipient="ticker.sfox.ETHUSD", pair="btcusd"))
    assert isinstance(event, Ticker)
    assert event.pair == "ethusd"


@pytest.mark.parametrize("last", [0, -1, "0", "nan", "Infinity", "1e400", None, True, "", " 1", "1_0", [1], {}])
def test_tickers_without_a_usable_price_are_schema_errors(last: Any) -> None:
    event = parse_frame(ticker(last))
    assert isinstance(event, OtherMessage)
    assert (event.sequence, event.recipient, event.schema_errors) == (4, "ticker.sfox.btcusd", 1)


@pytest.mark.parametrize("payload", [None, [], "x", {"pair": "btcusd"}])
def test_ticker_payloads_of_the_wrong_shape(payload: Any) -> None:
    event = parse_frame(frame({**DOC_TICKER, "payload": payload}))
    assert isinstance(event, OtherMessage)
    assert event.schema_errors == 1


def test_a_ticker_with_a_bad_timestamp_keeps_its_price() -> None:
    event = parse_frame(frame({**DOC_TICKER, "timestamp": 10**21 - 1}))
    assert isinstance(event, Ticker)
    assert (event.timestamp, event.last, event.schema_errors) == (None, 41420.58, 1)


DOC_PAIRS = {
    "btcusd": {"formatted_symbol": "BTC/USD", "symbol": "btcusd", "base": "btc", "quote": "usd"},
    "usdtusd": {"formatted_symbol": "USDT/USD", "symbol": "usdtusd", "base": "usdt", "quote": "usd"},
    "usdteth": {"formatted_symbol": "USDT/ETH", "symbol": "usdteth", "base": "usdt", "quote": "eth"},
}


def test_documented_currency_pairs() -> None:
    assert parse_currency_pairs(json.dumps(DOC_PAIRS).encode()) == {
        "btcusd": ("btc", "usd"), "usdtusd": ("usdt", "usd"), "usdteth": ("usdt", "eth")}


def test_currency_pairs_are_lower_cased_and_invalid_ones_skipped() -> None:
    body = {
        "ETHUSD": {"base": "ETH", "quote": "USD"},
        "nobase": {"quote": "usd"},
        "numbers": {"base": 1, "quote": "usd"},
        "empty": {"base": "", "quote": "usd"},
        "control": {"base": "b\u0000", "quote": "usd"},
        "list": ["btc", "usd"],
        "huge": {"base": "btc", "quote": "usd", "precision": 1e400},
    }
    text = json.dumps(body).replace("1e400", "1e400").replace('"precision": Infinity', '"precision": 1e400')
    assert parse_currency_pairs(text) == {"ethusd": ("eth", "usd"), "huge": ("btc", "usd")}


@pytest.mark.parametrize("body", [b"", b"null", b"<html>", b'"text"', b"{", b"7", b"[{}"])
def test_currency_pair_bodies_that_are_neither_objects_nor_lists(body: bytes) -> None:
    assert parse_currency_pairs(body) is None


@pytest.mark.parametrize("data", [
    b'{"sequence":3,"recipient":"private.user.balances","timestamp":1649899310281716289,'
    b'"payload":[{"currency":"\xff","balance":"1"},{"currency":"btc","balance":"1"}]}',
    b'{"sequence":3,"recipient":"private.enterprise.users.balances","timestamp":1649899310281716289,'
    b'"payload":{"user_id":"u\xff","updates":[{"currency":"btc","balance":"1"}]}}',
    b'{"sequence":3,"recipient":"ticker.sfox.btcusd","timestamp":1649899310281716289,'
    b'"payload":{"last":"1\xff"}}',
    b'{"sequence":3,"recipient":"private.user.balances","payload":[{"currency":"btc","balance":"1"},{"x":[}]}',
])
def test_bad_utf8_or_json_inside_a_payload_is_a_decode_error_not_an_exception(data: bytes) -> None:
    """msgspec leaves payloads raw; bad bytes inside one raised out of parse_frame and cost the
    connection (found by a black-box probe)."""
    assert parse_frame(data) == BadFrame("decode")
