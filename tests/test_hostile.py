"""Property tests: no input, however hostile, breaks the parser or reaches /metrics in a bad form."""

from __future__ import annotations

import gc
import json
import math
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfox_exporter.metrics.exposition import Exposition
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.decode import (
    MAX_LABEL_LENGTH,
    BadFrame,
    BalanceUpdate,
    ControlMessage,
    EndUserBalances,
    OtherMessage,
    Ticker,
    parse_balances_frame,
    parse_currency_pairs,
    parse_end_users_frame,
    parse_frame,
    parse_rest_balances,
)

from .conftest import FakeClock, Samples
from .reference import canonical, reference_frame, reference_rest

PARSERS = (parse_frame, parse_balances_frame, parse_end_users_frame)
FIELDS = ["currency", "balance", "available", "held", "trading_wallet", "collateral_wallet", "borrow_wallet",
          "lending_wallet", "_wallet", "x\u0000_wallet", "type", "address", "network"]

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**320)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=12), children, max_size=5), max_leaves=20)
amounts = (st.from_regex(r"-?[0-9]{0,80}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,4})?", fullmatch=True)
           | st.sampled_from(["NaN", "nan", "inf", "-Infinity", "1_0", " 1", "0x10", "", "1e999"]) | scalars)
labels = st.text(max_size=200) | st.sampled_from(["BTC", "usd", "USDC", "\u00e9th", "a\"b\\c", "x" * 129])
entries = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), amounts | labels,
                          max_size=9).map(lambda e: {**e, "type": "web3"} if e.get("type") == "web3" else e)
good_amounts = (st.decimals(allow_nan=False, allow_infinity=False, places=8).map(str)
                | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**20, 10**20))
maybe_bad_amounts = st.one_of(good_amounts, good_amounts, good_amounts, amounts)
currencies = st.sampled_from(["btc", "USD", "usdc", "Eth", "sol"]) | labels
account_entries = st.fixed_dictionaries(
    {"currency": currencies},
    optional={name: maybe_bad_amounts for name in ("balance", "available", "held", "trading_wallet",
                                                     "collateral_wallet", "borrow_wallet", "lending_wallet")},
)
web3_entries = st.fixed_dictionaries(
    {"type": st.just("web3"), "address": st.sampled_from(["0xabc", "7EcDhSYG"]) | labels,
     "balance": maybe_bad_amounts},
    optional={"network": st.sampled_from(["Ethereum", "Solana"]) | labels | json_values, "currency": currencies},
)
edge_amounts = st.sampled_from(["0", "-0", "1e999", "-1E-999", "1E5", "0.0", "007", "1.", ".5", "+1", "1e1000",
                                 "12345678901234567890.12345678901234567890", "123456789012345678901",
                                 "\u0661", " 1", "NaN"])
decimal_strings = st.decimals(allow_nan=False, allow_infinity=False, places=8).map(str)
canonical_amounts = st.one_of(decimal_strings, decimal_strings, decimal_strings, st.integers(0, 10**12).map(str),
                              st.integers(-10**25, 10**25).map(str), edge_amounts)
canonical_entries = st.builds(
    lambda currency, values: dict(zip(
        ("currency", "balance", "available", "held", "trading_wallet", "collateral_wallet", "borrow_wallet",
         "lending_wallet"), (currency, *values), strict=True)),
    st.sampled_from(["btc", "USD", "usdc", "x.y-z", "a" * 32, "a" * 33, "-btc", "b\"c"]) | labels,
    st.lists(canonical_amounts, min_size=7, max_size=7),
)
plausible = account_entries | web3_entries | canonical_entries | canonical_entries
payloads = st.one_of(st.lists(plausible, max_size=8), st.lists(plausible, max_size=8), plausible,
                     st.lists(plausible | entries | json_values, max_size=8), entries, json_values)
messages = st.fixed_dictionaries(
    {"recipient": st.one_of(*[st.just("private.user.balances")] * 4, st.text(max_size=30), json_values),
     "payload": payloads},
    optional={"sequence": json_values, "timestamp": amounts, "type": st.text(max_size=10) | json_values,
              "action": json_values},
)


def valid_label(value: str, allow_empty: bool = False) -> bool:
    return (allow_empty or value != "") and len(value) <= MAX_LABEL_LENGTH and value.isprintable()


def check_event(event: object) -> None:
    assert isinstance(event, (BalanceUpdate, EndUserBalances, Ticker, ControlMessage, OtherMessage, BadFrame))
    if isinstance(event, EndUserBalances):
        assert valid_label(event.user_id)
        check_event(BalanceUpdate(event.sequence, event.timestamp, event.accounts, (), event.schema_errors))
    if isinstance(event, Ticker):
        assert math.isfinite(event.last) and event.last > 0 and valid_label(event.pair)
    if isinstance(event, BalanceUpdate):
        for entry in event.accounts:
            assert valid_label(entry.currency) and entry.currency == entry.currency.lower()
            values = [entry.balance, entry.available, entry.held, *(v for _, v in entry.wallets)]
            assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in values)
            assert all(valid_label(wallet) for wallet, _ in entry.wallets)
            assert entry.series_count > 0
        for wallet in event.wallets:
            assert valid_label(wallet.address)
            assert valid_label(wallet.network, allow_empty=True)
            assert valid_label(wallet.currency, allow_empty=True) and wallet.currency == wallet.currency.lower()
            assert math.isfinite(wallet.balance)
        assert event.timestamp is None or (math.isfinite(event.timestamp) and event.timestamp > 0)
    if isinstance(event, ControlMessage):
        assert valid_label(event.type)
        assert event.detail is None or (len(event.detail) <= 210 and event.detail.isprintable())
    assert event.sequence is None or (isinstance(event.sequence, int) and event.sequence >= 0)


@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_break_the_parser(data: bytes) -> None:
    check_event(parse_frame(data))
    parsed = parse_rest_balances(data)
    assert parsed is None or all(math.isfinite(e.balance or 0.0) for e in parsed[0])


@given(json_values)
def test_arbitrary_json_never_breaks_the_parser(value: Any) -> None:
    check_event(parse_frame(json.dumps(value, allow_nan=True)))


@given(messages)
@settings(max_examples=500)
def test_balance_shaped_messages_yield_only_valid_values(message: dict[str, Any]) -> None:
    check_event(parse_frame(json.dumps(message, allow_nan=True).encode()))


@given(st.lists(messages, min_size=1, max_size=6))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_nothing_bad_reaches_metrics(batch: list[dict[str, Any]]) -> None:
    state = State(["main"], clock=FakeClock(), max_series=25)
    for message in batch:
        state.ingest("main", parse_frame(json.dumps(message, allow_nan=True)))
    rest = parse_rest_balances(json.dumps([m.get("payload") for m in batch], allow_nan=True))
    state.apply_snapshot("main", rest[0] if rest else (), 0)
    text = Exposition(state, "test").render().body.decode()
    samples = Samples(text)  # it parses
    assert all(math.isfinite(value) for _, _, value in samples.samples)
    for _, sample_labels, _ in samples.samples:
        assert all(len(v) <= MAX_LABEL_LENGTH and v.isprintable() for v in sample_labels.values())
    balance_series = [s for s in samples.samples if s[0] in (
        "sfox_balance", "sfox_balance_available", "sfox_balance_held", "sfox_wallet_balance",
        "sfox_web3_wallet_balance")]
    assert len(balance_series) <= 25
    assert samples.get("sfox_feed_series", account="main") == len(balance_series)


@given(st.lists(plausible, max_size=10))
@settings(max_examples=400)
def test_every_entry_is_either_applied_or_counted(payload: list[dict[str, Any]]) -> None:
    event = parse_frame(json.dumps({"sequence": 1, "recipient": "private.user.balances",
                                    "timestamp": 1649899310281716289, "payload": payload}, allow_nan=True))
    assert isinstance(event, BalanceUpdate)
    check_event(event)
    assert len(event.accounts) + len(event.wallets) + event.schema_errors == len(payload)




# --- parse_frame against the plain reference decoder (tests/reference.py) -----------------------

times = st.one_of(
    st.integers(10**18, 2 * 10**18), st.integers(10**15, 2 * 10**15), st.integers(1, 10**22),
    st.sampled_from([94694399, 94694400, 10**11 - 1, 10**11, 10**20 - 1, 10**20, 10**21, "1649899310281716289",
                     "1e18", " 1", 1.6e18, 1e400, None, True, "soon", 0, -1]),
    amounts,
)
user_payloads = st.fixed_dictionaries(
    {"user_id": st.sampled_from(["test3", "u-1"]) | labels | json_values, "updates": payloads},
    optional={"email": st.text(max_size=20), "user_token": st.text(max_size=20), "status": json_values},
)
ticker_payloads = st.fixed_dictionaries(
    {"last": good_amounts | amounts},
    optional={"pair": st.text(max_size=8), "volume": good_amounts | amounts, "timestamp": st.text(max_size=30)},
) | json_values
data_messages = st.one_of(
    st.fixed_dictionaries({"recipient": st.just("private.user.balances"), "payload": payloads},
                          optional={"sequence": st.integers(0, 2**64) | json_values, "timestamp": times}),
    st.fixed_dictionaries({"recipient": st.just("private.enterprise.users.balances"),
                           "payload": user_payloads | json_values},
                          optional={"sequence": st.integers(0, 2**64), "timestamp": times}),
    st.fixed_dictionaries({"recipient": st.sampled_from(["ticker.sfox.btcusd", "ticker.sfox.ETHUSD", "ticker.sfox."]),
                           "payload": ticker_payloads},
                          optional={"sequence": st.integers(0, 2**64), "timestamp": times}),
    messages,
)
layouts = st.sampled_from([
    lambda m: json.dumps(m, allow_nan=True, separators=(",", ":")).encode(),  # sFOX's own
    lambda m: json.dumps(m, allow_nan=True).encode(),
    lambda m: json.dumps(m, allow_nan=True, indent=2, sort_keys=True).encode(),
    lambda m: json.dumps(m, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass"),
    lambda m: json.dumps(m, allow_nan=True, separators=(",", ":")),  # text, as websocket-client may hand it
])
mutations = st.sampled_from([
    lambda b: b,
    lambda b: b.replace(b'"balance":"', b'"balance":NaN,"balance":"', 1),  # a duplicate key, the first not JSON
    lambda b: b.replace(b'"balance":"', b'"balance":"x","balance":"', 1),  # a duplicate key, the first invalid
    lambda b: b.replace(b'"balance":"', b'"balance":"1","balance":"', 1),
    lambda b: b.replace(b'"last":', b'"last":"x","last":', 1),
    lambda b: b.replace(b'"user_id":', b'"user_id":5,"user_id":', 1),
    lambda b: b.replace(b'"currency":"', b'"frozen":1e400,"currency":"', 1),  # out of float's range, unexported
    lambda b: b.replace(b'"currency":"', b'"staking_wallet":"2","currency":"', 1),
    lambda b: b.replace(b'"currency":"', b'"x":[' + b"[" * 50 + b"]" * 50 + b'],"currency":"', 1),
    lambda b: b.replace(b'"currency":"', b'"currency":"\\ud800', 1),  # a lone surrogate
    lambda b: b.replace(b'"held":"', b'"held":Infinity,"x":"', 1),
    lambda b: b.replace(b'"timestamp":', b'"timestamp":1e400,"t":', 1),
    lambda b: b.replace(b"[{", b"[7,{", 1),
    lambda b: b.replace(b"[{", b'[{"type":"account",', 1),
    lambda b: b.replace(b"}]", b"},{}]", 1),
    lambda b: b[:-1],
    lambda b: b"\xef\xbb\xbf" + b,  # a UTF-8 byte-order mark
])


def agree(frame: bytes | str) -> None:
    """Every parser a connection may use (the general one, and each feed's fast path first) returns
    what the reference does."""
    expected = reference_frame(frame)
    for parse in PARSERS:
        event = parse(frame)
        if expected is ControlMessage:
            assert isinstance(event, ControlMessage)
        else:
            assert canonical(event) == canonical(expected), parse.__name__
        check_event(event)


@given(data_messages, layouts, mutations)
@settings(max_examples=1500)
def test_parse_frame_agrees_with_the_reference_decoder(message: dict[str, Any], layout: Any, mutate: Any) -> None:
    frame = layout(message)
    agree(frame)
    if isinstance(frame, bytes):
        agree(mutate(frame))


@given(st.binary(max_size=300))
def test_parse_frame_agrees_with_the_reference_on_any_bytes(data: bytes) -> None:
    agree(data)


@given(st.lists(plausible | entries | json_values, max_size=8), mutations)
@settings(max_examples=400)
def test_rest_bodies_agree_with_the_reference(body: list[Any], mutate: Any) -> None:
    for data in (json.dumps(body, allow_nan=True).encode(), mutate(json.dumps(body, separators=(",", ":")).encode())):
        parsed = parse_rest_balances(data)
        assert parsed == reference_rest(data)


@given(st.dictionaries(labels, st.fixed_dictionaries({"base": labels | json_values, "quote": labels | json_values},
                                                     optional={"symbol": labels}) | json_values, max_size=6))
def test_currency_pairs_never_break_and_keep_only_labels(body: dict[str, Any]) -> None:
    pairs = parse_currency_pairs(json.dumps(body, allow_nan=True))
    assert pairs is not None
    for symbol, (base, quote) in pairs.items():
        for value in (symbol, base, quote):
            assert valid_label(value) and value == value.lower()
    usable = {symbol for symbol, entry in body.items() if isinstance(entry, dict)
              and all(isinstance(v, str) and valid_label(v) for v in (symbol, entry.get("base"), entry.get("quote")))}
    assert set(pairs) == {symbol.lower() for symbol in usable}


@pytest.mark.parametrize(("body", "expected"), [
    ('[{"symbol":"btcusd","base":"BTC","quote":"usd"},{"base":"usdt","quote":"eth"},{"base":"x"},7,'
     '{"symbol":"XBTUSD","base":"btc","quote":"usd"},{"symbol":7,"base":"sol","quote":"usd"}]',
     {"btcusd": ("btc", "usd"), "usdteth": ("usdt", "eth"), "xbtusd": ("btc", "usd"), "solusd": ("sol", "usd")}),
    ("[]", {}),
    ('"btcusd"', None),
    ("7", None),
])
def test_currency_pairs_as_a_list_are_read_too(body: str, expected: dict[str, tuple[str, str]] | None) -> None:
    """sFOX documents an object keyed by symbol; a list of the same objects must not cost valuation."""
    assert parse_currency_pairs(body) == expected
    assert parse_currency_pairs(body.replace(":", ": ").encode()) == expected


# --- time linear in the size of a message ------------------------------------------------------


def balances_frame(count: int, invalid: bool) -> bytes:
    """`count` entries, every one new; with `invalid`, one bad entry sends every entry its own way."""
    entries = [f'{{"currency":"c{n}","balance":"{n}.5","available":"{n}","held":"0.5","trading_wallet":"{n}",'
               f'"collateral_wallet":"0","borrow_wallet":"0","lending_wallet":"0.{n}"}}' for n in range(count)]
    if invalid:
        entries[count // 2] = '{"currency":"bad","balance":"nan"}'
    return (b'{"sequence":7,"recipient":"private.user.balances","timestamp":1649899310281716289,"payload":['
            + ",".join(entries).encode() + b"]}")


def best_time(frame: bytes, expected: int) -> float:
    """The fastest of five decodes: the least disturbed by whatever else runs on the machine. The
    garbage collector is held off meanwhile: a full pass over the whole test process's heap, which
    the 50,000 new objects can set off, is no time of the decoder's."""
    times = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            started = time.perf_counter()
            event = parse_frame(frame)
            times.append(time.perf_counter() - started)
            assert isinstance(event, BalanceUpdate) and len(event.accounts) == expected
            del event
    finally:
        gc.enable()
    return min(times)


@pytest.mark.parametrize("invalid", [False, True], ids=["all valid", "one invalid"])
def test_decoding_time_is_linear_in_the_number_of_entries(invalid: bool) -> None:
    small = best_time(balances_frame(5_000, invalid), 5_000 - invalid)
    large = best_time(balances_frame(50_000, invalid), 50_000 - invalid)
    assert large < 2.0, f"50,000 entries took {large:.2f} s"
    # Ten times the entries: about ten times the time; a quadratic decoder takes a hundred.
    assert large < 30 * small, f"5,000 entries: {small * 1e3:.1f} ms, 50,000: {large * 1e3:.1f} ms"
