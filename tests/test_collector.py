"""The Collector on a private registry, and the fast renderer against prometheus_client's own."""

from __future__ import annotations

import gzip
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from sfox_exporter.config import Threshold
from sfox_exporter.metrics.collector import SfoxCollector
from sfox_exporter.metrics.exposition import Exposition
from sfox_exporter.metrics.state import State
from sfox_exporter.metrics.table import METRICS, MetricDef, Sample
from sfox_exporter.sfox.decode import AccountBalance, BalanceUpdate, Web3Balance, parse_balances_frame
from sfox_exporter.vocabulary import ERROR_REASONS, FeedStatus

from .conftest import FakeClock, Samples

# The repository keeps its own copy of the contract, so this test never depends on files beside the checkout.
CONTRACT = Path(__file__).resolve().parent.parent / "docs" / "CONTRACT.md"

# Every metric of CONTRACT.md with its type and labels, as the contract fixes them.
CONTRACT_METRICS = {
    "sfox_balance": ("gauge", {"account", "currency"}),
    "sfox_balance_available": ("gauge", {"account", "currency"}),
    "sfox_balance_held": ("gauge", {"account", "currency"}),
    "sfox_wallet_balance": ("gauge", {"account", "currency", "wallet"}),
    "sfox_web3_wallet_balance": ("gauge", {"account", "currency", "network", "address"}),
    "sfox_balance_low_threshold": ("gauge", {"account", "currency", "field"}),
    "sfox_balances_updated_timestamp_seconds": ("gauge", {"account"}),
    "sfox_feed_up": ("gauge", {"account"}),
    "sfox_feed_last_message_timestamp_seconds": ("gauge", {"account"}),
    "sfox_feed_messages_total": ("counter", {"account", "kind"}),
    "sfox_feed_errors_total": ("counter", {"account", "reason"}),
    "sfox_feed_reconnects_total": ("counter", {"account"}),
    "sfox_balance_high_threshold": ("gauge", {"account", "currency", "field"}),
    "sfox_exporter_build_info": ("gauge", {"version", "revision", "python_version"}),
}

BTC = AccountBalance("btc", 0.17572419, 0.15, 0.02572419,
                     (("trading", 0.17572419), ("collateral", 0.0), ("borrow", 0.0), ("lending", 0.0)))
USD = AccountBalance("usd", 100.0, 100.0, 0.0, (("trading", 100.0),))
WEB3 = Web3Balance("Ethereum", "0x0bCdB57ae247F434C91b1d4521fFd6601f7e8999", "usdc", 250.5)
ODD = AccountBalance('we"ird\\cur', 1.0, None, None, ())


def populated_state(clock: FakeClock | None = None) -> State:
    state = State(["main", "treasury"], clock=clock or FakeClock(),
                  thresholds=[Threshold("main", "usd", "available", 1000),
                              Threshold("main", "usd", "held", above=250)])
    state.set_status("main", FeedStatus.UP)
    state.ingest("main", BalanceUpdate(10, 1649899310.281716, (BTC, USD, ODD), (WEB3,), 0))
    return state


def collect(state: State) -> Samples:
    registry = CollectorRegistry()
    registry.register(SfoxCollector(state, "1.2.3"))
    return Samples(generate_latest(registry).decode())


def test_every_contract_metric_with_its_type_and_labels() -> None:
    samples = collect(populated_state())
    for name, (metric_type, labels) in CONTRACT_METRICS.items():
        family = name.removesuffix("_total") if metric_type == "counter" else name
        assert samples.types.get(family) == metric_type, name
        found = samples.all(name)
        assert found, f"no samples for {name}"
        assert all(set(sample_labels) == labels for sample_labels, _ in found), name


def test_contract_metrics_table_matches_the_contract_file() -> None:
    text = CONTRACT.read_text()
    for name in CONTRACT_METRICS:
        assert f"`{name}`" in text
    exported = {metric.name for metric in METRICS} | {"sfox_exporter_build_info"}
    assert set(CONTRACT_METRICS) <= exported


def test_values_are_exact() -> None:
    samples = collect(populated_state())
    assert samples.get("sfox_balance", account="main", currency="btc") == 0.17572419
    assert samples.get("sfox_balance_available", account="main", currency="btc") == 0.15
    assert samples.get("sfox_balance_held", account="main", currency="btc") == 0.02572419
    assert samples.get("sfox_wallet_balance", account="main", currency="btc", wallet="trading") == 0.17572419
    assert samples.get("sfox_wallet_balance", account="main", currency="usd", wallet="lending") is None
    assert samples.get("sfox_web3_wallet_balance", account="main", network="Ethereum",
                       address=WEB3.address, currency="usdc") == 250.5
    assert samples.get("sfox_balance_low_threshold", account="main", currency="usd", field="available") == 1000
    assert samples.get("sfox_balance_low_threshold", account="main", currency="usd", field="held") is None
    assert samples.get("sfox_balance_high_threshold", account="main", currency="usd", field="held") == 250
    assert samples.get("sfox_balance_high_threshold", account="main", currency="usd", field="available") is None
    assert samples.get("sfox_balances_updated_timestamp_seconds", account="main") == 1649899310.281716
    assert samples.get("sfox_feed_up", account="main") == 1
    assert samples.get("sfox_feed_up", account="treasury") == 0
    assert samples.get("sfox_exporter_build_info", version="1.2.3") == 1
    assert samples.get("sfox_balance", account="main", currency='we"ird\\cur') == 1.0


def test_counters_start_at_zero_for_every_kind_and_reason() -> None:
    samples = collect(State(["main"], clock=FakeClock()))
    for kind in ("balances", "web3", "control", "unknown"):
        assert samples.get("sfox_feed_messages_total", account="main", kind=kind) == 0
    for reason in ERROR_REASONS:
        assert samples.get("sfox_feed_errors_total", account="main", reason=reason) == 0
    assert samples.get("sfox_feed_reconnects_total", account="main") == 0
    assert set(ERROR_REASONS) == {"decode", "schema", "auth", "subscribe", "sequence", "connection", "rest",
                                  "cardinality"}


def test_timestamps_absent_until_known() -> None:
    samples = collect(State(["main"], clock=FakeClock()))
    assert samples.get("sfox_balances_updated_timestamp_seconds", account="main") is None
    assert samples.get("sfox_feed_last_message_timestamp_seconds", account="main") is None


def sample_set(text: str, openmetrics: bool = False) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    if openmetrics:
        return {(s.name, tuple(sorted(s.labels.items())), s.value) for f in parse_openmetrics(text) for s in f.samples}
    return {(n, tuple(sorted(labels.items())), v) for n, labels, v in Samples(text).samples}


def test_fast_text_matches_generate_latest() -> None:
    state = populated_state()
    registry = CollectorRegistry()
    registry.register(SfoxCollector(state, "1.2.3"))
    exposition = Exposition(state, "1.2.3")
    fast = exposition.render(None, None)
    assert fast.content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert sample_set(fast.body.decode()) == sample_set(generate_latest(registry).decode())
    assert Samples(fast.body.decode()).types == Samples(generate_latest(registry).decode()).types


@pytest.mark.parametrize("accept", ['application/openmetrics-text; version="1.0.0"',
                                    "application/openmetrics-text; version=abc"])
def test_an_accept_header_prometheus_client_cannot_parse_still_gets_metrics(accept: str) -> None:
    rendered = Exposition(populated_state(), "1.2.3").render(accept, None)
    quoted = '"' in accept
    assert rendered.content_type.startswith("application/openmetrics-text" if quoted else "text/plain")
    assert b"sfox_balance{" in rendered.body


@pytest.mark.parametrize(("accept", "openmetrics"), [
    ("application/openmetrics-text;q=0, text/plain", False),
    ("application/openmetrics-text; version=1.0.0; Q=0.000,text/plain;q=0.5", False),
    ("application/openmetrics-text; version=1.0.0; q=0.5, text/plain;q=0", True),
    ("text/plain;q=0.2, application/openmetrics-text;version=1.0.0;q=0.9", True),
])
def test_openmetrics_refused_with_q_0_is_not_sent(accept: str, openmetrics: bool) -> None:
    rendered = Exposition(populated_state(), "1.2.3").render(accept, None)
    assert rendered.content_type.startswith("application/openmetrics-text" if openmetrics else "text/plain")
    assert rendered.body.endswith(b"# EOF\n") is openmetrics


def test_a_family_that_cannot_render_leaves_the_others_on_metrics(caplog: pytest.LogCaptureFixture) -> None:
    def broken(view: object) -> Iterator[Sample]:
        yield ("main",), 1.0
        raise OverflowError("a bug of tomorrow")

    table = (*METRICS[:3], MetricDef("sfox_broken", "gauge", "Fails.", ("account",), broken), *METRICS[3:])
    state = populated_state()
    exposition = Exposition(state, "1.2.3", metrics=table)
    with caplog.at_level(logging.ERROR, logger="sfox_exporter.metrics"):
        text = exposition.render().body.decode()
        state.touch()
        again = exposition.render().body.decode()
    assert "sfox_broken" not in text and again == text
    assert Samples(text).get("sfox_balance", account="main", currency="btc") is not None
    assert Samples(text).get("sfox_feed_up", account="main") == 1  # families after it too
    assert [r.getMessage() for r in caplog.records] == ["cannot render sfox_broken; it is left out of /metrics "
                                                         "until it can be"]  # once, not every scrape


@pytest.mark.parametrize("version", ["2.0.0", "1.0.0.<b>x", "0.9"])
def test_the_content_type_names_the_version_written(version: str) -> None:
    rendered = Exposition(populated_state(), "1.2.3").render(f"application/openmetrics-text; version={version}", None)
    assert rendered.content_type in ("application/openmetrics-text; version=1.0.0; charset=utf-8",
                                      "text/plain; version=0.0.4; charset=utf-8")
    assert version not in rendered.content_type


def test_fast_openmetrics_matches_prometheus_client() -> None:
    state = populated_state()
    registry = CollectorRegistry()
    registry.register(SfoxCollector(state, "1.2.3"))
    rendered = Exposition(state, "1.2.3").render("application/openmetrics-text; version=1.0.0", None)
    assert rendered.content_type.startswith("application/openmetrics-text")
    text = rendered.body.decode()
    assert text.endswith("# EOF\n")
    assert sample_set(text, True) == sample_set(generate_openmetrics(registry).decode(), True)


def test_gzip_when_asked() -> None:
    state = populated_state()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    exposition = Exposition(state, "1.2.3", registry)
    for accept in (None, "application/openmetrics-text; version=1.0.0"):
        rendered = exposition.render(accept, "gzip, deflate")
        assert rendered.content_encoding == "gzip"
        again = exposition.render(accept, "gzip")  # from the cached compressor state
        plain = exposition.render(accept, None).body
        for body in (rendered.body, again.body):
            text = gzip.decompress(body)
            assert text.split(b"# HELP process_")[0] == plain.split(b"# HELP process_")[0]
            assert b"process_resident_memory_bytes" in text


def test_output_is_reused_until_the_state_changes() -> None:
    state = populated_state()
    exposition = Exposition(state, "1.2.3")
    first = exposition.render(None, None).parts[0]
    assert exposition.render(None, None).parts[0] is first  # the same bytes object: nothing re-rendered
    gzipped = exposition.render(None, "gzip").parts[0]
    assert exposition.render(None, "gzip").parts[0] is gzipped
    state.ingest("main", BalanceUpdate(11, 1.7e9, (AccountBalance("btc", 9.0, 9.0, 0.0, ()),), (), 0))
    changed = exposition.render(None, None).parts[0]
    assert changed is not first
    assert Samples(changed.decode()).get("sfox_balance", account="main", currency="btc") == 9.0


def test_staleness_shows_without_any_new_message() -> None:
    clock = FakeClock()
    state = State(["main"], clock=clock, stale_after_seconds=60)
    state.set_status("main", FeedStatus.UP)
    state.ingest("main", BalanceUpdate(1, 1.7e9, (USD,), (), 0))
    exposition = Exposition(state, "1")
    state.set_status("main", FeedStatus.CONNECTING)
    assert Samples(exposition.render().body.decode()).get("sfox_balance", account="main", currency="usd") == 100
    clock.advance(61)
    samples = Samples(exposition.render().body.decode())
    assert samples.get("sfox_balance", account="main", currency="usd") is None
    assert samples.get("sfox_feed_stale", account="main") == 1
    assert samples.get("sfox_feed_up", account="main") == 0


def test_no_value_is_ever_non_finite() -> None:
    samples = collect(populated_state())
    assert all(math.isfinite(value) for _, _, value in samples.samples)


# Amounts whose lines differ in the last character only, or not at all though the floats differ.
_AMOUNTS = st.sampled_from([0.0, -0.0, 1.0, 2.5, -3.25, 5e-324, 1e-300, 1.7976931348623157e308, 0.1 + 0.2])
_CURRENCIES = st.sampled_from(["btc", "usd", "eth"])
_ENTRY = st.builds(lambda currency, a, b, c: AccountBalance(currency, a, b, c, (("trading", a), ("borrow", c))),
                   _CURRENCIES, _AMOUNTS, _AMOUNTS | st.none(), _AMOUNTS)
_WEB3 = st.builds(lambda address, amount: Web3Balance("Ethereum", address, "usdc", amount),
                  st.sampled_from(["0xa", "0xb"]), _AMOUNTS)


def _documented_frame(sequence: int, entries: list[tuple[str, float]]) -> BalanceUpdate:
    """A frame of sFOX's documented shape, through the fast path (DocumentedBalance entries)."""
    payload = [{"currency": currency, **{field: repr(amount) for field in (
        "balance", "available", "held", "trading_wallet", "collateral_wallet", "borrow_wallet", "lending_wallet")}}
        for currency, amount in entries]
    event = parse_balances_frame(json.dumps({"sequence": sequence, "recipient": "private.user.balances",
                                             "payload": payload}).encode())
    assert isinstance(event, BalanceUpdate)
    return event


_STEP = st.one_of(
    st.tuples(st.just("update"), st.sampled_from(["main", "treasury"]), st.lists(_ENTRY, max_size=3),
              st.lists(_WEB3, max_size=2)),
    st.tuples(st.just("documented"), st.lists(st.tuples(_CURRENCIES, _AMOUNTS), max_size=3)),
    st.tuples(st.just("status"), st.sampled_from(list(FeedStatus))),
    st.tuples(st.just("time"), st.sampled_from([1.0, 61.0])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_STEP, max_size=12))
def test_cached_rendering_is_always_a_fresh_rendering(steps: list[tuple[object, ...]]) -> None:
    """The renderer's per-line and per-account caches never serve an old line: after any sequence
    of changes its text is byte for byte that of a renderer that never rendered before."""
    clock = FakeClock()
    state = State(["main", "treasury"], clock=clock, stale_after_seconds=60)
    exposition = Exposition(state, "1.2.3")
    for sequence, step in enumerate(steps, start=1):
        match step:
            case ("update", str(account), list(entries), list(wallets)):
                state.ingest(account, BalanceUpdate(sequence, 1.7e9, tuple(entries), tuple(wallets), 0))
            case ("documented", list(entries)):
                state.ingest("main", _documented_frame(sequence, entries))
            case ("status", FeedStatus() as status):
                state.set_status("main", status)
            case ("time", float(seconds)):
                clock.advance(seconds)
        for accept in (None, "application/openmetrics-text; version=1.0.0"):
            assert exposition.render(accept).body == Exposition(state, "1.2.3").render(accept).body
