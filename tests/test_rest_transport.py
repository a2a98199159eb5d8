"""REST snapshots against hostile raw-socket servers: rest_timeout_seconds bounds the whole call."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable

import pytest

from sfox_exporter.app import Exporter
from sfox_exporter.clock import SystemClock
from sfox_exporter.config import AccountConfig, FeedConfig, KeySource, Secret, SfoxEndpoints
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.snapshot import MAX_BODY_BYTES, FetchResult, SnapshotWorker, fetch_balances
from sfox_exporter.simulator import Simulator

from .conftest import make_config, scrape_until, wait_until
from .fakes import RawServer

BODY = b'[{"currency": "btc", "balance": 1, "available": 1, "held": 0}]'
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY)


def trickled_headers(conn: socket.socket, server: RawServer) -> None:
    server.read_request(conn)
    server.trickle(conn, HEAD + BODY, interval=0.2)


def trickled_body(conn: socket.socket, server: RawServer) -> None:
    server.read_request(conn)
    conn.sendall(HEAD)
    server.trickle(conn, BODY, interval=0.2)


@pytest.mark.parametrize("handler", [trickled_headers, trickled_body])
def test_rest_timeout_bounds_the_whole_call(handler: Callable[[socket.socket, RawServer], None]) -> None:
    with RawServer(handler) as server:
        started = time.monotonic()
        result = fetch_balances(server.url("http", "/v1/user/balance"), Secret("k" * 32), 1.5, "test")
        elapsed = time.monotonic() - started
    assert result.status is None and "TimeoutError" in result.error
    assert 1.4 <= elapsed < 3.0
    assert "k" * 32 not in result.error


def test_a_body_over_the_cap_is_refused() -> None:
    def huge(conn: socket.socket, server: RawServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
        chunk = b" " * 65536
        while not server.stop.is_set():
            conn.sendall(chunk)

    with RawServer(huge) as server:
        result = fetch_balances(server.url("http", "/v1/user/balance"), Secret("k" * 32), 10, "test")
    assert result.status is None and f"larger than {MAX_BODY_BYTES}" in result.error


def test_a_redirect_is_not_followed() -> None:
    with RawServer(lambda conn, server: None) as target:
        def redirect(conn: socket.socket, server: RawServer) -> None:
            server.read_request(conn)
            conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {target.url('http', '/')}\r\n"
                         "Content-Length: 0\r\n\r\n".encode())

        with RawServer(redirect) as origin:
            result = fetch_balances(origin.url("http", "/v1/user/balance"), Secret("k" * 32), 5, "test")
        assert result.status == 302 and target.accepted == 0


def test_a_trickled_rest_answer_is_counted_and_logged(simulator: Simulator,
                                                     start_exporter: Callable[..., Exporter],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sfox_exporter.sfox.snapshot")
    with RawServer(trickled_headers) as server:
        config = make_config(simulator, rest_timeout_seconds=1.0, backoff_initial_seconds=30.0)
        config = dataclasses.replace(config, sfox=SfoxEndpoints(simulator.ws_url, server.url("http", "")))
        exporter = start_exporter(config)
        scrape_until(exporter.url, lambda s: s.number("sfox_feed_errors_total", account="main", reason="rest") >= 1,
                     timeout=10)
        # The error is counted a moment before it is logged: the line is waited for, not read at once.
        wait_until(lambda: any("REST balance snapshot failed (TimeoutError" in r.getMessage() for r in caplog.records
                               if r.name == "sfox_exporter.sfox.snapshot"), timeout=5, message="the failure logged")


def test_a_snapshot_that_returns_after_its_account_was_retired_is_not_applied(
        caplog: pytest.LogCaptureFixture) -> None:
    """A reload that removes an account, or gives it another key, retires its worker while a slow
    call is out: what comes back was another account's, or nobody's, and must not be shown."""
    state = State(["main"], clock=SystemClock())
    stop, calling, answer = threading.Event(), threading.Event(), threading.Event()
    body = b'[{"currency":"btc","balance":"1","available":"1","held":"0"}]'

    def slow(url: str, key: Secret, timeout: float, agent: str) -> FetchResult:
        calling.set()
        answer.wait(5)
        return FetchResult(200, body)

    account = AccountConfig("main", KeySource(fixed=Secret("k")))
    worker = SnapshotWorker(account, rest_url="http://sfox.invalid", feed=FeedConfig(), state=state,
                            clock=SystemClock(), stop=stop, fetch=slow, user_agent="test")
    worker.start()
    worker.request("start")
    assert calling.wait(5)
    stop.set()  # retired while the call is out
    state.reconfigure([], thresholds=(), max_series=100, stale_after_seconds=0)  # and the account removed
    answer.set()
    worker.wake()
    worker.thread.join(5)
    assert not worker.thread.is_alive() and worker.completed == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no KeyError traceback
