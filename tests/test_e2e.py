"""End to end: the exporter against the simulator, scraped over HTTP."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable
from decimal import Decimal

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from sfox_exporter.app import Exporter
from sfox_exporter.config import Threshold
from sfox_exporter.simulator import Simulator

from .conftest import KEY_MAIN, KEY_OTHER, feed_up, http_get, make_config, scrape, scrape_until, wait_until

StartExporter = Callable[..., Exporter]


def test_balances_flow_from_feed_to_metrics(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, {"main": KEY_MAIN, "other": KEY_OTHER},
                                          thresholds=(Threshold("main", "usd", "available", 1000),),
                                          rest_snapshot=False))
    wait_until(lambda: simulator.subscriber_count() == 2)
    simulator.push_all(KEY_MAIN)
    simulator.push_all(KEY_OTHER)
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_web3_wallet_balance", account="other",
                                                          currency="sol") is not None)
    ledger = simulator.ledger(KEY_MAIN)
    for currency, holding in ledger.holdings.items():
        fields = holding.feed_entry()
        assert samples.get("sfox_balance", account="main", currency=currency) == float(fields["balance"])
        assert samples.get("sfox_balance_available", account="main", currency=currency) == float(fields["available"])
        assert samples.get("sfox_balance_held", account="main", currency=currency) == float(fields["held"])
        for wallet in ("trading", "collateral", "borrow", "lending"):
            assert samples.get("sfox_wallet_balance", account="main", currency=currency, wallet=wallet) == float(
                fields[f"{wallet}_wallet"])
    assert samples.get("sfox_web3_wallet_balance", account="main", network="Ethereum", currency="usdc",
                       address="0x0bCdB57ae247F434C91b1d4521fFd6601f7e8999") == 250.5
    assert samples.get("sfox_balance_low_threshold", account="main", currency="usd", field="available") == 1000
    assert samples.get("sfox_feed_up", account="main") == 1
    assert samples.get("sfox_feed_up", account="other") == 1
    assert samples.get("sfox_feed_messages_total", account="main", kind="control") == 2
    assert samples.get("sfox_feed_messages_total", account="main", kind="web3") == 3
    assert samples.get("sfox_feed_reconnects_total", account="main") == 0
    assert samples.number("sfox_balances_updated_timestamp_seconds", account="main") > time.time() - 60


def test_values_are_correct_to_the_last_digit(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, rest_snapshot=False))
    wait_until(lambda: simulator.subscriber_count(KEY_MAIN))
    digits = "12345678.123456789"
    simulator.set_balance(KEY_MAIN, "btc", available=digits, held="0.000000011")
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_balance_held", account="main", currency="btc"))
    assert samples.get("sfox_balance_available", account="main", currency="btc") == float(digits)
    total = float(Decimal(digits) + Decimal("0.000000011"))
    assert samples.get("sfox_balance", account="main", currency="btc") == total
    assert samples.get("sfox_balance_held", account="main", currency="btc") == 1.1e-08


def test_rest_snapshot_seeds_balances_before_any_push(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator))
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_balance", account="main", currency="eth"))
    rest = {entry["currency"]: entry for entry in simulator.ledger(KEY_MAIN).rest_entries()}
    assert samples.get("sfox_balance", account="main", currency="eth") == rest["eth"]["balance"]
    assert samples.get("sfox_balances_snapshot_timestamp_seconds", account="main") is not None
    assert all(r.key == KEY_MAIN for r in simulator.rest_requests())


def test_reconnects_after_the_connection_is_killed(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, rest_snapshot=False))
    wait_until(lambda: simulator.subscriber_count(KEY_MAIN))
    simulator.set_balance(KEY_MAIN, "usd", available="500")
    wait_until(lambda: scrape(exporter.url).get("sfox_balance_available", account="main", currency="usd") == 500)
    assert simulator.drop_connections(KEY_MAIN) == 1
    scrape_until(exporter.url, lambda s: s.number("sfox_feed_reconnects_total", account="main") >= 1)
    wait_until(lambda: simulator.subscriber_count(KEY_MAIN) == 1)
    simulator.set_balance(KEY_MAIN, "usd", available="750")
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_balance_available", account="main",
                                                          currency="usd") == 750)
    assert samples.number("sfox_feed_errors_total", account="main", reason="connection") >= 1
    assert samples.get("sfox_feed_up", account="main") == 1
    assert len(simulator.requests("authenticate", KEY_MAIN)) == 2


def test_clean_close_from_sfox_also_reconnects(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, rest_snapshot=False))
    wait_until(lambda: simulator.subscriber_count(KEY_MAIN))
    simulator.drop_connections(KEY_MAIN, abort=False)
    wait_until(lambda: len(simulator.requests("subscribe", KEY_MAIN)) == 2)
    wait_until(feed_up(exporter))


def test_endpoints(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator, {"main": KEY_MAIN, "other": KEY_OTHER}))
    wait_until(lambda: http_get(exporter.url + "/readyz")[0] == 200)
    status, headers, body = http_get(exporter.url + "/healthz")
    assert status == 200 and body == b"ok\n"
    status, headers, body = http_get(exporter.url + "/")
    assert status == 200 and b'href="/metrics"' in body and b"main" in body and b"other" in body
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, _, _ = http_get(exporter.url + "/nope")
    assert status == 404
    status, headers, _ = http_get(exporter.url + "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = http_get(exporter.url + "/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


def test_readyz_names_the_accounts_that_are_not_up(simulator: Simulator, start_exporter: StartExporter) -> None:
    simulator.reject_auth(KEY_OTHER)
    exporter = start_exporter(make_config(simulator, {"main": KEY_MAIN, "other": KEY_OTHER}))
    wait_until(feed_up(exporter, "main"))
    wait_until(lambda: b"auth rejected" in http_get(exporter.url + "/readyz")[2])
    status, _, body = http_get(exporter.url + "/readyz")
    assert status == 503
    assert b"other" in body and b"main" not in body


def test_openmetrics_and_gzip_on_request(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator))
    wait_until(feed_up(exporter))
    status, headers, body = http_get(exporter.url + "/metrics", {
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        "Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert headers["Content-Encoding"] == "gzip"
    families = {f.name: f for f in parse_openmetrics(gzip.decompress(body).decode())}
    assert families["sfox_feed_messages"].type == "counter"
    assert families["sfox_feed_up"].samples[0].value == 1
    assert "process_resident_memory_bytes" in {s.name for f in families.values() for s in f.samples}


def test_concurrent_scrapes_do_not_block_each_other(simulator: Simulator, start_exporter: StartExporter) -> None:
    exporter = start_exporter(make_config(simulator))
    wait_until(feed_up(exporter))
    host, port = exporter.url.removeprefix("http://").split(":")
    idle = socket.create_connection((host, int(port)))  # a client that connects and says nothing
    slow = socket.create_connection((host, int(port)))
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and one that never finishes its request
    try:
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(http_get(exporter.url + "/metrics")[0]))
                   for _ in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert results == [200] * 8
        assert time.monotonic() - started < 5
    finally:
        idle.close()
        slow.close()


def test_stop_ends_every_thread(simulator: Simulator) -> None:
    exporter = Exporter(make_config(simulator, {"main": KEY_MAIN, "other": KEY_OTHER}))
    exporter.start()
    wait_until(feed_up(exporter, "other"))
    started = time.monotonic()
    exporter.stop()
    assert time.monotonic() - started < 5
    threads = [feed.thread for feed in exporter.feeds] + [w.thread for w in exporter.snapshots.values()]
    assert not any(thread.is_alive() for thread in threads)
    wait_until(lambda: simulator.connection_count() == 0)
