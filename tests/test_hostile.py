"""Property tests: no input, however hostile, breaks the parser or reaches /metrics in a bad form."""

from __future__ import annotations

import json
import math
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
    CachingParser,
    ControlMessage,
    OtherMessage,
    parse_frame,
    parse_rest_balances,
)

from .conftest import FakeClock, Samples

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
    assert isinstance(event, (BalanceUpdate, ControlMessage, OtherMessage, BadFrame))
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


def compact(message: Any) -> bytes:
    return json.dumps(message, allow_nan=True, separators=(",", ":")).encode()


def envelope(payload: Any, sequence: Any = 7, timestamp: Any = 1649899310281716289) -> dict[str, Any]:
    return {"sequence": sequence, "recipient": "private.user.balances", "timestamp": timestamp, "payload": payload}


mutations = st.sampled_from([
    lambda b: b,
    lambda b: b.replace(b"},{", b"}, {", 1),  # whitespace: not the compact format
    lambda b: b.replace(b'"sequence":', b'"sequence":0', 1),  # a leading zero: not JSON at all
    lambda b: b[:-1],  # truncated
    lambda b: b + b" ",
    lambda b: b.replace(b'"currency":"', b'"currency":"},{', 1),  # a separator inside a string
    lambda b: b.replace(b"[{", b'[{"n":[{},{}],', 1),  # a separator inside a nested value
    lambda b: b.replace(b'"payload":[', b'"payload":[7,', 1),
    lambda b: b.replace(b"}]}", b'}],"extra":1}', 1),
    lambda b: b.replace(b'"balance":"', b'"balance":"\\u00', 1),
])
# Mostly frames in sFOX's own compact format, drawn from a small pool of entries so that they repeat
# across messages (the cache's reason to exist), then the same with one mutation, then anything.
pool_entries = st.lists(plausible, min_size=1, max_size=6)
compact_frames = st.builds(lambda pool, picks, seq: compact(envelope([pool[i % len(pool)] for i in picks], seq)),
                           pool_entries, st.lists(st.integers(0, 5), max_size=8), st.integers(0, 2**64))
canonical_frames = st.builds(
    lambda pool, picks, seq: compact(envelope([pool[i % len(pool)] for i in picks], seq)),
    st.lists(canonical_entries, min_size=1, max_size=6), st.lists(st.integers(0, 5), max_size=8),
    st.integers(0, 2**64))
frames = st.one_of(
    canonical_frames, canonical_frames, canonical_frames, compact_frames, compact_frames,
    st.builds(lambda frame, mutate: mutate(frame), canonical_frames | compact_frames, mutations),
    st.builds(lambda message: compact(message), messages),
    st.binary(max_size=300),
)


@given(st.lists(frames, min_size=1, max_size=12))
@settings(max_examples=600)
def test_the_caching_parser_always_agrees_with_parse_frame(batch: list[bytes]) -> None:
    parser = CachingParser(keep_at_least=4)  # a small memory, so that it is also pruned
    for frame in batch + batch:  # the second pass finds its entries remembered
        assert parser.parse(frame) == parse_frame(frame)
        assert parser.parse(bytearray(frame)) == parse_frame(frame)


def test_the_caching_parser_reuses_unchanged_entries() -> None:
    parser = CachingParser()
    first = [{"currency": c, "balance": "1"} for c in ("btc", "eth", "usd")]
    second = [first[0], {"currency": "eth", "balance": "2"}, first[2]]
    a = parser.parse(compact(envelope(first)))
    b = parser.parse(compact(envelope(second, sequence=8)))
    assert isinstance(a, BalanceUpdate) and isinstance(b, BalanceUpdate)
    assert b.accounts[0] is a.accounts[0] and b.accounts[2] is a.accounts[2]  # the same objects
    assert b.accounts[1].balance == 2.0 and b.sequence == 8


EDGE_AMOUNTS = ["0", "-0", "1.5", "-0.00000001", "1E5", "1e-5", "0E-8", "99999999999999999999.99999999999999999999",
                "123456789012345678901", "1.000000000000000000001", "1e308", "1e309", "1e999", "-1E-999", "007",
                "1.", ".5", "+1", "NaN", "inf", "\u0661", " 1", "1_0", ""]
EDGE_CURRENCIES = ["btc", "USD", "x.y-z", "a" * 32, "a" * 33, "-btc", "\u00e9th", "b\"c", "b\\c", ""]


@pytest.mark.parametrize("currency", EDGE_CURRENCIES)
def test_canonical_entries_agree_with_parse_frame(currency: str) -> None:
    keys = ("balance", "available", "held", "trading_wallet", "collateral_wallet", "borrow_wallet", "lending_wallet")
    parser = CachingParser()
    for amount in EDGE_AMOUNTS:
        for position in range(7):
            entry = {"currency": currency, **{key: "2.5" for key in keys}}
            entry[keys[position]] = amount
            ordinary = {"currency": "eth", **{key: "1" for key in keys}}
            for payload in ([entry], [ordinary, entry], [entry, ordinary]):
                frame = compact(envelope(payload))
                assert parser.parse(frame) == parse_frame(frame), (currency, amount, position)
