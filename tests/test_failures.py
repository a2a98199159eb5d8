"""Every failure mode of CONTRACT.md's Behaviour section, against the simulator."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable

import pytest

from sfox_exporter.app import Exporter
from sfox_exporter.simulator import Simulator

from .conftest import KEY_MAIN, feed_up, http_get, make_config, scrape, scrape_until, wait_until

StartExporter = Callable[..., Exporter]


def errors(exporter: Exporter, reason: str, account: str = "main") -> float:
    return scrape(exporter.url).number("sfox_feed_errors_total", account=account, reason=reason)


def rest_calls(simulator: Simulator) -> int:
    return len(simulator.rest_requests())


# --- REST snapshots -------------------------------------------------------------------------------


def test_snapshot_after_every_reconnect_replaces_balances_wholesale(
        simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator))
    wait_until(feed_up(exporter))
    wait_until(lambda: exporter.snapshots["main"].completed >= 1)
    simulator.push(KEY_MAIN, [{"currency": "doge", "balance": "5", "available": "5", "held": "0"}])
    scrape_until(exporter.url, lambda s: s.get("sfox_balance", account="main", currency="doge") == 5)
    before = exporter.snapshots["main"].completed
    simulator.drop_connections(KEY_MAIN)
    wait_until(lambda: exporter.snapshots["main"].completed > before)
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_balance", account="main", currency="doge") is None)
    assert samples.get("sfox_balance", account="main", currency="btc") is not None  # REST had it


def test_sequence_gap_and_step_back_count_and_resync(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator))
    wait_until(feed_up(exporter))
    wait_until(lambda: exporter.snapshots["main"].completed >= 1)
    calls = rest_calls(simulator)
    simulator.skip_sequence(3, KEY_MAIN)
    simulator.set_balance(KEY_MAIN, "usd", available="1")
    scrape_until(exporter.url, lambda s: s.number("sfox_feed_errors_total", account="main", reason="sequence") == 1)
    wait_until(lambda: rest_calls(simulator) > calls, message="a resync after the gap")
    simulator.skip_sequence(-2, KEY_MAIN)
    simulator.set_balance(KEY_MAIN, "usd", available="2")
    samples = scrape_until(exporter.url, lambda s: s.number("sfox_feed_errors_total", account="main",
                                                            reason="sequence") == 2)
    assert samples.get("sfox_balance_available", account="main", currency="usd") == 2
    assert samples.get("sfox_feed_up", account="main") == 1  # a resync, not a reconnect
    assert samples.get("sfox_feed_reconnects_total", account="main") == 0


def test_rest_calls_stay_within_5_per_10_seconds(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator))
    wait_until(feed_up(exporter))
    anomalies = 0

    def anomaly() -> None:  # each one asks for a resync; one at a time, so a loaded machine cannot merge them
        nonlocal anomalies
        anomalies += 1
        simulator.skip_sequence(1, KEY_MAIN)
        simulator.set_balance(KEY_MAIN, "usd", available=str(anomalies))
        scrape_until(exporter.url,
                     lambda s: s.number("sfox_feed_errors_total", account="main", reason="sequence") >= anomalies)

    while rest_calls(simulator) < 5:
        assert anomalies < 40, "resync requests did not lead to REST snapshots"
        anomaly()
    for _ in range(3):  # more demand inside the same 10 s: without the limit, a sixth call would follow at once
        anomaly()
    wait_until(lambda: rest_calls(simulator) >= 6, timeout=15)
    times = [r.at for r in simulator.rest_requests()]
    assert max(sum(1 for t in times if start <= t < start + 10) for start in times) <= 5
    assert times[5] - times[0] >= 10
    assert not simulator.observed.limit_violations


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(simulator: Simulator, start_exporter: StartExporter, status: int) -> None:
    """On a 503 (sFOX's "temporarily offline for maintenance") too: sFOX documents no Retry-After."""
    simulator.fail_rest(status, times=1, retry_after="2")
    exporter = start_exporter(make_config(simulator, backoff_initial_seconds=0.2))
    wait_until(lambda: rest_calls(simulator) >= 2, timeout=10)
    first, second = simulator.rest_requests()[:2]
    assert first.status == status
    assert second.at - first.at >= 1.95
    assert errors(exporter, "rest") == 1


def test_429_with_retry_after_0_still_waits_the_backoff(simulator: Simulator, start_exporter: StartExporter) -> None:
    """Retry-After 0 from a rate-limited route once made five calls within 20 ms."""
    simulator.fail_rest(429, times=2, retry_after="0")
    start_exporter(make_config(simulator, backoff_initial_seconds=1.0, backoff_max_seconds=4.0))
    wait_until(lambda: rest_calls(simulator) >= 3, timeout=15)
    first, second, third = simulator.rest_requests()[:3]
    assert (first.status, second.status, third.status) == (429, 429, 200)
    assert second.at - first.at >= 0.45 and third.at - second.at >= 0.95  # the lower half of each backoff


def test_500_is_counted_retried_and_never_stalls_the_feed(simulator: Simulator,
                                                          start_exporter: StartExporter) -> None:
    simulator.fail_rest(500, times=4)
    exporter = start_exporter(make_config(simulator))
    wait_until(feed_up(exporter))
    simulator.set_balance(KEY_MAIN, "eth", available="7")
    scrape_until(exporter.url, lambda s: s.get("sfox_balance_available", account="main", currency="eth") == 7)
    wait_until(lambda: exporter.snapshots["main"].completed >= 1)
    samples = scrape(exporter.url)
    assert samples.get("sfox_feed_errors_total", account="main", reason="rest") == 4
    assert samples.get("sfox_balance", account="main", currency="sol") is not None  # from the snapshot
    assert [r.status for r in simulator.rest_requests()][:5] == [500, 500, 500, 500, 200]


def test_slow_rest_times_out_and_the_feed_goes_on(simulator: Simulator, start_exporter: StartExporter) -> None:
    simulator.rest_delay = 3.0
    exporter = start_exporter(make_config(simulator, rest_timeout_seconds=0.3))
    wait_until(feed_up(exporter))
    started = time.monotonic()
    simulator.set_balance(KEY_MAIN, "eth", available="8")
    scrape_until(exporter.url, lambda s: s.get("sfox_balance_available", account="main", currency="eth") == 8)
    assert time.monotonic() - started < 1.0
    scrape_until(exporter.url, lambda s: s.number("sfox_feed_errors_total", account="main", reason="rest") >= 1,
                 timeout=3)


def test_rest_401_is_counted(simulator: Simulator, start_exporter: StartExporter) -> None:
    simulator.fail_rest(401, times=1)
    exporter = start_exporter(make_config(simulator))
    scrape_until(exporter.url, lambda s: s.number("sfox_feed_errors_total", account="main", reason="rest") >= 1)
    wait_until(lambda: exporter.snapshots["main"].completed >= 1)


# --- the connection ---------------------------------------------------------------------------------


def test_half_open_connection_is_replaced_within_ping_interval_plus_timeout(
        simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, ping_interval_seconds=0.5, ping_timeout_seconds=0.5,
                                          rest_snapshot=False))
    wait_until(feed_up(exporter))
    started = time.monotonic()
    assert simulator.half_open(KEY_MAIN) == 1
    scrape_until(exporter.url, lambda s: s.number("sfox_feed_errors_total", account="main",
                                                  reason="connection") >= 1, timeout=5)
    detected = time.monotonic() - started
    assert detected < 0.5 + 0.5 + 0.5  # the bound, plus slack for a busy machine
    wait_until(lambda: len(simulator.requests("subscribe", KEY_MAIN)) == 2)
    wait_until(feed_up(exporter))


def test_quiet_feed_is_not_a_failure(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, ping_interval_seconds=0.2, ping_timeout_seconds=0.2,
                                          rest_snapshot=False))
    wait_until(feed_up(exporter))
    deadline = time.monotonic() + 1.5  # seven ping intervals without a single message
    while time.monotonic() < deadline:
        assert exporter.state.statuses()["main"] == "up"
        time.sleep(0.05)
    assert errors(exporter, "connection") == 0


def test_auth_rejection_logs_once_per_episode_and_recovers(
        simulator: Simulator, start_exporter: StartExporter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    simulator.reject_auth(KEY_MAIN)
    exporter = start_exporter(make_config(simulator, rest_snapshot=False))
    wait_until(lambda: len(simulator.requests("authenticate", KEY_MAIN)) >= 4)
    samples = scrape(exporter.url)
    assert samples.get("sfox_feed_up", account="main") == 0
    assert samples.number("sfox_feed_errors_total", account="main", reason="auth") >= 3
    assert not simulator.requests("subscribe")

    def rejections() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno >= logging.ERROR and "rejected the API key" in r.getMessage()]

    assert len(rejections()) == 1
    simulator.reject_auth(KEY_MAIN, False)
    wait_until(feed_up(exporter))
    # Logged a moment after the status changes: waited for, not read at once.
    wait_until(lambda: any("accepted the API key again" in r.getMessage() for r in caplog.records), timeout=5)
    simulator.reject_auth(KEY_MAIN)  # a second episode gets its own line
    simulator.drop_connections(KEY_MAIN)
    wait_until(lambda: len(rejections()) == 2)


def test_auth_backoff_grows(simulator: Simulator, start_exporter: StartExporter) -> None:
    simulator.reject_auth(KEY_MAIN)
    start_exporter(make_config(simulator, backoff_initial_seconds=0.1, backoff_max_seconds=10, rest_snapshot=False))
    wait_until(lambda: len(simulator.requests("authenticate", KEY_MAIN)) >= 5, timeout=15)
    times = [r.at for r in simulator.requests("authenticate", KEY_MAIN)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[3] > gaps[0] * 3  # 0.05-0.1 s, then 0.4-0.8 s: exponential, not a tight loop


def test_subscribe_error_is_counted(simulator: Simulator, start_exporter: StartExporter) -> None:
    simulator.refused_feeds.add("private.user.balances")
    exporter = start_exporter(make_config(simulator, rest_snapshot=False))
    scrape_until(exporter.url, lambda s: s.number("sfox_feed_errors_total", account="main", reason="subscribe") >= 2)
    assert scrape(exporter.url).get("sfox_feed_up", account="main") == 0


def test_unreachable_sfox_backs_off_and_counts(start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(None, rest_snapshot=False))
    samples = scrape_until(exporter.url, lambda s: s.number("sfox_feed_reconnects_total", account="main") >= 2)
    assert samples.number("sfox_feed_errors_total", account="main", reason="connection") >= 2
    assert samples.get("sfox_feed_up", account="main") == 0


# --- staleness --------------------------------------------------------------------------------------


def test_stale_balances_leave_metrics_and_come_back(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, stale_after_seconds=1.0))
    wait_until(feed_up(exporter))
    simulator.push_all(KEY_MAIN)
    scrape_until(exporter.url, lambda s: s.get("sfox_web3_wallet_balance", account="main", currency="sol"))
    simulator.reject_auth(KEY_MAIN)
    simulator.drop_connections(KEY_MAIN)
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_feed_stale", account="main") == 1, timeout=5)
    assert not samples.all("sfox_balance", account="main")
    assert not samples.all("sfox_wallet_balance", account="main")
    assert not samples.all("sfox_web3_wallet_balance", account="main")
    assert samples.get("sfox_feed_up", account="main") == 0
    assert samples.number("sfox_feed_messages_total", account="main", kind="balances") >= 1  # health stays
    status, _, body = http_get(exporter.url + "/readyz")
    assert status == 503 and b"main" in body
    simulator.reject_auth(KEY_MAIN, False)
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_balance", account="main", currency="btc"))
    assert samples.get("sfox_feed_stale", account="main") == 0
    assert http_get(exporter.url + "/readyz")[0] == 200


# --- hostile input ----------------------------------------------------------------------------------


def test_malformed_frames_are_counted_and_valid_entries_applied(
        simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, rest_snapshot=False))
    wait_until(feed_up(exporter))
    simulator.send_raw("{not json")
    simulator.send_raw(b"\xff\xfe invalid utf-8")
    simulator.send_raw(b"\x00\x01binary", binary=True)
    simulator.send_raw("[1,2,3]")
    simulator.push(KEY_MAIN, [{"currency": "usd", "balance": "12", "available": "12", "held": "0"},
                              {"currency": "eth", "balance": "NaN"},
                              {"currency": "x" * 500, "balance": "1"},
                              {"currency": "btc", "balance": "1", "available": {"nested": 1}}])
    simulator.push(KEY_MAIN, "not a list")
    # Until the last message is in too ("not a list": its schema error is the fifth), not only the usd
    # entry before it: a loaded machine showed the scrape between the two.
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_balance", account="main", currency="usd") == 12
                           and s.number("sfox_feed_errors_total", account="main", reason="schema") >= 5)
    assert samples.get("sfox_feed_errors_total", account="main", reason="decode") == 3
    assert samples.get("sfox_feed_errors_total", account="main", reason="schema") == 5
    assert samples.get("sfox_feed_messages_total", account="main", kind="unknown") == 4
    assert samples.get("sfox_balance", account="main", currency="eth") is None
    assert samples.get("sfox_feed_up", account="main") == 1
    assert samples.get("sfox_feed_reconnects_total", account="main") == 0
    assert samples.get("sfox_feed_errors_total", account="main", reason="sequence") == 0


def test_max_series_caps_each_account(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, max_series=30, rest_snapshot=False))
    wait_until(feed_up(exporter))
    simulator.push(KEY_MAIN, [{"currency": f"c{i}", "balance": "1", "available": "1", "held": "0",
                               "trading_wallet": "1"} for i in range(100)])
    samples = scrape_until(exporter.url, lambda s: s.number("sfox_feed_errors_total", account="main",
                                                            reason="cardinality") == 93)
    assert len(samples.all("sfox_balance", account="main")) == 7  # 7 currencies x 4 series = 28
    assert samples.get("sfox_feed_series", account="main") == 28


def test_multi_megabyte_frames_do_not_stall_the_feed(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, rest_snapshot=False))
    wait_until(feed_up(exporter))
    simulator.set_balance(KEY_MAIN, "usd", available="41")  # in the book before the cap fills up
    big = [{"currency": f"coin{i}", "balance": "1.5", "available": "1", "held": "0.5", "trading_wallet": "1.5",
            "collateral_wallet": "0", "borrow_wallet": "0", "lending_wallet": "0"} for i in range(5500)]
    simulator.push(KEY_MAIN, big)  # about 0.95 MB, just under the 1 MiB message cap
    simulator.send_raw('{"sequence": 1, "padding": "' + "x" * 6_000_000 + '"}')  # over the cap: skipped
    simulator.set_balance(KEY_MAIN, "usd", available="42")
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_balance_available", account="main",
                                                         currency="usd") == 42, timeout=10)
    assert samples.get("sfox_feed_up", account="main") == 1
    assert samples.get("sfox_feed_reconnects_total", account="main") == 0
    assert samples.number("sfox_feed_errors_total", account="main", reason="cardinality") > 0


def test_messages_over_the_size_limit_are_skipped_not_fatal(simulator: Simulator,
                                                             start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, rest_snapshot=False))
    wait_until(feed_up(exporter))
    simulator.send_raw("[" + " " * (17 * 2**20) + "]")
    simulator.set_balance(KEY_MAIN, "usd", available="43")
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_balance_available", account="main",
                                                         currency="usd") == 43, timeout=15)
    assert samples.get("sfox_feed_errors_total", account="main", reason="decode") == 1
    assert samples.get("sfox_feed_reconnects_total", account="main") == 0


def test_timestamps_in_any_unit(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, rest_snapshot=False))
    wait_until(feed_up(exporter))
    entry = [{"currency": "usd", "balance": "1"}]
    for timestamp in (1700000000123, 1700000000123456, 1700000000123456789, 1700000000):
        simulator.push(KEY_MAIN, entry, timestamp=timestamp)
        expected = 1700000000.123 if timestamp > 10**10 else 1700000000.0
        scrape_until(exporter.url, lambda s, e=expected: abs(  # type: ignore[misc]
            s.number("sfox_balances_updated_timestamp_seconds", account="main") - e) < 1e-3)


def test_a_blocked_ip_waits_for_retry_after(simulator: Simulator, start_exporter: StartExporter) -> None:
    simulator.block_ip(2)
    exporter = start_exporter(make_config(simulator, backoff_initial_seconds=0.05, rest_snapshot=False))
    scrape_until(exporter.url, lambda s: s.number("sfox_feed_errors_total", account="main", reason="connection") >= 1)
    refused_at = time.monotonic()
    wait_until(feed_up(exporter), timeout=10)
    assert time.monotonic() - refused_at > 1.0  # not the 0.05 s backoff: the 2 s sFOX asked for
    assert errors(exporter, "connection") == 1  # one refused handshake, not a burst of them
