"""Config reloads through /-/reload: what changes, what keeps its connection, and failures."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

import pytest

from sfox_exporter.app import Exporter
from sfox_exporter.clock import SystemClock
from sfox_exporter.config import AccountConfig, Config, ConfigError, KeySource, Threshold
from sfox_exporter.simulator import Simulator
from sfox_exporter.workers import UnitSpec, Workers

from .conftest import KEY_MAIN, KEY_OTHER, feed_up, http_get, make_config, scrape, scrape_until, wait_until


class Source:
    """A config source whose next answer the test sets."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.error: str | None = None
        self.calls = 0

    def __call__(self) -> tuple[Config, None]:
        self.calls += 1
        if self.error is not None:
            raise ConfigError(self.error)
        return self.config, None


def post_reload(exporter: Exporter) -> tuple[int, bytes]:
    status, _, body = http_get(exporter.url + "/-/reload", method="POST")
    return status, body


def authentications(simulator: Simulator, key: str) -> int:
    return len(simulator.requests("authenticate", key))


def test_removing_an_account_and_adding_thresholds_opens_no_connection(
        simulator: Simulator, start_exporter: Callable[..., Exporter]) -> None:
    config = make_config(simulator, {"main": KEY_MAIN, "other": KEY_OTHER})
    source = Source(config)
    exporter = start_exporter(config, enable_lifecycle=True, config_source=source)
    wait_until(lambda: feed_up(exporter)() and feed_up(exporter, "other")())
    opened = simulator.observed.connections_opened
    source.config = dataclasses.replace(
        config, accounts=config.accounts[:1],
        thresholds=(Threshold("main", "usd", "held", above=5000.0), Threshold("main", "usd", below=10.0)))

    assert post_reload(exporter) == (200, b"config reloaded\n")

    samples = scrape(exporter.url)
    assert samples.get("sfox_balance_high_threshold", account="main", currency="usd", field="held") == 5000
    assert samples.get("sfox_balance_low_threshold", account="main", currency="usd", field="available") == 10
    assert samples.all("sfox_feed_up", account="other") == []
    assert samples.get("sfox_exporter_config_last_reload_successful") == 1
    assert samples.get("sfox_exporter_demo_mode") == 0
    wait_until(lambda: simulator.connection_count(KEY_OTHER) == 0, message="the removed account's connection closed")
    assert simulator.observed.connections_opened == opened  # main kept its connection
    assert [feed.name for feed in exporter.feeds] == ["main"]
    assert exporter.health()[0]


def test_an_added_account_connects_and_a_changed_one_reconnects_while_the_unchanged_one_stays(
        simulator: Simulator, start_exporter: Callable[..., Exporter]) -> None:
    config = make_config(simulator, {"main": KEY_MAIN})
    source = Source(config)
    exporter = start_exporter(config, enable_lifecycle=True, config_source=source)
    wait_until(feed_up(exporter))
    main_auths = authentications(simulator, KEY_MAIN)
    environ = {"KEY_MAIN": KEY_MAIN, "KEY_OTHER": KEY_OTHER, "KEY_OTHER_ROTATED": KEY_OTHER}
    other = AccountConfig("other", KeySource(env="KEY_OTHER", environ=environ))
    source.config = dataclasses.replace(config, accounts=(*config.accounts, other))

    assert post_reload(exporter)[0] == 200
    scrape_until(exporter.url, lambda s: s.get("sfox_feed_up", account="other") == 1)
    assert authentications(simulator, KEY_MAIN) == main_auths

    other_auths = authentications(simulator, KEY_OTHER)
    changed = AccountConfig("other", KeySource(env="KEY_OTHER_ROTATED", environ=environ))
    source.config = dataclasses.replace(config, accounts=(*config.accounts, changed))
    assert post_reload(exporter)[0] == 200
    wait_until(lambda: authentications(simulator, KEY_OTHER) > other_auths, message="the changed account reconnected")
    scrape_until(exporter.url, lambda s: s.get("sfox_feed_up", account="other") == 1)
    assert authentications(simulator, KEY_MAIN) == main_auths


def test_a_failed_reload_keeps_the_running_config_and_says_why_once(
        simulator: Simulator, start_exporter: Callable[..., Exporter], caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(simulator, {"main": KEY_MAIN}, thresholds=(Threshold("main", "usd", below=1.0),))
    source = Source(config)
    exporter = start_exporter(config, enable_lifecycle=True, config_source=source)
    wait_until(feed_up(exporter))
    opened = simulator.observed.connections_opened
    source.error = "thresholds[0].account: 'nope' is not a configured account (main)"

    with caplog.at_level(logging.INFO, logger="sfox_exporter"):
        status, body = post_reload(exporter)

    assert status == 500
    assert b"'nope' is not a configured account" in body
    failures = [r for r in caplog.records if "reload" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR
    assert "keeping the running config" in failures[0].getMessage()
    assert KEY_MAIN not in caplog.text
    samples = scrape(exporter.url)
    assert samples.get("sfox_exporter_config_last_reload_successful") == 0
    assert samples.get("sfox_balance_low_threshold", account="main", currency="usd", field="available") == 1
    assert samples.get("sfox_feed_up", account="main") == 1
    assert simulator.observed.connections_opened == opened

    source.error = None
    assert post_reload(exporter)[0] == 200
    assert scrape(exporter.url).get("sfox_exporter_config_last_reload_successful") == 1


def test_reload_needs_the_lifecycle_flag(simulator: Simulator, start_exporter: Callable[..., Exporter]) -> None:
    config = make_config(simulator)
    source = Source(config)
    exporter = start_exporter(config, config_source=source)
    assert post_reload(exporter)[0] == 403
    assert source.calls == 0
    assert http_get(exporter.url + "/-/reload")[0] == 405


def test_reloads_run_one_at_a_time(simulator: Simulator, start_exporter: Callable[..., Exporter]) -> None:
    config = make_config(simulator)
    inside = threading.Semaphore(0)
    release = threading.Event()
    concurrent = []

    def slow_source() -> tuple[Config, None]:
        concurrent.append(inside.acquire(blocking=False))  # True only if another reload is inside
        inside.release()
        release.wait(10)
        inside.acquire()
        return config, None

    exporter = start_exporter(config, enable_lifecycle=True, config_source=slow_source)
    assert exporter.reloader is not None
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda: results.append(exporter.reloader.reload())) for _ in range(3)]  # type: ignore[union-attr]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(concurrent) >= 1)
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == [None, None, None]
    assert concurrent == [False, False, False]


def test_an_account_given_another_key_shows_nothing_of_the_old_one(
        simulator: Simulator, start_exporter: Callable[..., Exporter]) -> None:
    """Another key may be another sFOX account: its Web3 wallets, which no snapshot replaces, and
    its balances must not linger under the account's name."""
    config = make_config(simulator, {"main": KEY_MAIN})
    source = Source(config)
    exporter = start_exporter(config, enable_lifecycle=True, config_source=source)
    wait_until(feed_up(exporter))
    simulator.push(KEY_MAIN, {"type": "web3", "network": "ethereum", "address": "0xold", "balance": "7"})
    scrape_until(exporter.url, lambda s: s.get("sfox_web3_wallet_balance", account="main", currency="",
                                               network="ethereum", address="0xold") == 7)
    environ = {"KEY_MAIN": KEY_MAIN, "KEY_SWAPPED": KEY_OTHER}
    source.config = dataclasses.replace(config, accounts=(AccountConfig("main", KeySource(env="KEY_SWAPPED",
                                                                                          environ=environ)),))
    assert post_reload(exporter)[0] == 200
    assert exporter.state.snapshot().accounts[0].wallets == {}  # at once, before the new key's data
    wait_until(lambda: exporter.snapshots["main"].completed >= 1, message="the new key's snapshot")
    samples = scrape(exporter.url)
    assert samples.all("sfox_web3_wallet_balance", account="main") == []
    assert samples.number("sfox_feed_messages_total", account="main", kind="web3") == 1  # counters carry on


class _Unit:
    """A unit whose one thread is alive until it is retired."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.stop.wait, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def retire(self) -> None:
        self.stop.set()

    def threads(self) -> list[threading.Thread]:
        return [self.thread]


def test_units_being_replaced_are_not_taken_for_dead_threads() -> None:
    """/healthz reports dead threads: a unit stopping for a reload is no such thing (503s were seen
    through ordinary reloads, which a liveness probe takes for a dead process)."""
    workers = Workers(SystemClock())
    workers.apply({"a": UnitSpec(1, _Unit), "b": UnitSpec(1, _Unit)}, 5)
    seen: list[bool] = []

    def between() -> None:  # the old "a" has stopped; the new one is not built yet
        seen.append(all(thread.is_alive() for thread in workers.threads()))

    changes = workers.apply({"a": UnitSpec(2, _Unit), "b": UnitSpec(1, _Unit)}, 5, between=between)
    assert changes.changed == ("a",) and seen == [True]
    assert all(thread.is_alive() for thread in workers.threads()) and len(workers.threads()) == 2
    workers.stop_all(5)


def test_the_rest_rate_limit_outlives_the_unit_a_reload_replaces(simulator: Simulator,
                                                                 start_exporter: Callable[..., Exporter]) -> None:
    """Each new unit once started with a limit of its own: reloads every 0.5 s made 12 REST calls
    in 10 s for one account, where sFOX allows 5."""
    config = make_config(simulator)
    exporter = start_exporter(config)
    first = exporter.snapshots["main"]
    exporter.reconfigure(dataclasses.replace(config, feed=dataclasses.replace(config.feed, ping_interval_seconds=7.0)),
                         None)
    assert exporter.snapshots["main"] is not first and exporter.snapshots["main"].window is first.window


def test_a_reload_that_moves_the_metrics_says_so(simulator: Simulator, start_exporter: Callable[..., Exporter]) -> None:
    """Scrapes of the old path fail from then on: the reload's line was the only place to say why."""
    config = make_config(simulator)
    exporter = start_exporter(config)
    moved = dataclasses.replace(config, web=dataclasses.replace(config.web, telemetry_path="/m2"))
    summary = exporter.reconfigure(moved, None)
    assert summary.endswith("; metrics moved from /metrics to /m2")
    assert http_get(exporter.url + "/m2")[0] == 200 and http_get(exporter.url + "/metrics")[0] == 404
    assert "moved" not in exporter.reconfigure(moved, None)
