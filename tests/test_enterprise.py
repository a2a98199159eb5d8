"""Enterprise (sFOX Connect) accounts end to end against the simulator."""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from sfox_exporter.app import Exporter
from sfox_exporter.config import AccountKind, AuthFlag, Config, EndUsersConfig
from sfox_exporter.simulator import EnterpriseLedger, Ledger, Simulator
from sfox_exporter.simulator.enterprise import END_USERS_FEED, USERS_FEED, user_id, user_record

from .conftest import KEY_MAIN, feed_up, make_config, scrape, scrape_until, wait_until

KEY_PLATFORM = "test-key-platform-0123456789abcdef"


@pytest.fixture
def connect_simulator() -> Iterator[Simulator]:
    with Simulator({KEY_MAIN: Ledger.demo("main")}, enterprise={KEY_PLATFORM: EnterpriseLedger("platform", users=50)},
                   push_interval=None) as sim:
        yield sim


def enterprise_config(simulator: Simulator, flag: AuthFlag = AuthFlag.BOOLEAN, *, kind: AccountKind =
                      AccountKind.ENTERPRISE, **end_users: object) -> Config:
    config = make_config(simulator, accounts={"main": KEY_MAIN, "platform": KEY_PLATFORM})
    main, platform = config.accounts
    platform = dataclasses.replace(platform, kind=kind, enterprise_auth_flag=flag)
    return dataclasses.replace(config, accounts=(main, platform), end_users=EndUsersConfig(**end_users))  # type: ignore[arg-type]


def push_all(simulator: Simulator) -> None:
    for payload in simulator.enterprise[KEY_PLATFORM].payloads():
        simulator.push(KEY_PLATFORM, payload, recipient=END_USERS_FEED)


@pytest.mark.parametrize("flag", [AuthFlag.BOOLEAN, AuthFlag.STRING])
def test_enterprise_account_beside_a_user_account(connect_simulator: Simulator, flag: AuthFlag,
                                                  start_exporter: Callable[..., Exporter]) -> None:
    exporter = start_exporter(enterprise_config(connect_simulator, flag))
    wait_until(feed_up(exporter, "platform"))
    wait_until(feed_up(exporter, "main"))
    push_all(connect_simulator)
    ledger = connect_simulator.enterprise[KEY_PLATFORM]
    expected = sum((ledger.holdings(u).get("btc", Decimal(0)) for u in ledger.users), Decimal(0))
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_end_users", account="platform") == 50)
    assert samples.number("sfox_end_users_balance", account="platform", currency="btc") == pytest.approx(
        float(expected), rel=1e-12)
    assert samples.get("sfox_end_user_balance", account="platform", user_id="user-000001", currency="btc") is None
    assert samples.get("sfox_end_users", account="main") is None
    assert samples.number("sfox_feed_messages_total", account="platform", kind="end_users") >= 50
    assert samples.number("sfox_feed_up", account="main") == 1
    # The enterprise account takes no REST snapshot: sFOX has none for end users.
    assert {r.key for r in connect_simulator.rest_requests()} <= {KEY_MAIN}


def test_without_the_enterprise_flag_authentication_fails(connect_simulator: Simulator,
                                                          start_exporter: Callable[..., Exporter]) -> None:
    exporter = start_exporter(enterprise_config(connect_simulator, kind=AccountKind.USER))
    wait_until(lambda: scrape(exporter.url).number("sfox_feed_errors_total", account="platform", reason="auth") >= 1)
    assert exporter.state.statuses()["platform"] != "up"


def test_a_full_set_replaces_the_users_currencies(connect_simulator: Simulator,
                                                  start_exporter: Callable[..., Exporter]) -> None:
    exporter = start_exporter(enterprise_config(connect_simulator, per_user_series=True))
    wait_until(feed_up(exporter, "platform"))
    sim = connect_simulator
    payload = sim.enterprise[KEY_PLATFORM].set("user-000001", btc="1.5", eth="2")
    sim.push(KEY_PLATFORM, payload, recipient=END_USERS_FEED)
    scrape_until(exporter.url, lambda s: s.get("sfox_end_user_balance", account="platform", user_id="user-000001",
                                               currency="eth") == 2)
    # One object rather than a list; eth left out is gone for the user.
    sim.push(KEY_PLATFORM, {"user_id": "user-000001", "updates": {"currency": "btc", "balance": "3", "available": "2",
                                                                  "held": "1"}}, recipient=END_USERS_FEED)
    samples = scrape_until(exporter.url, lambda s: s.get(
        "sfox_end_user_balance", account="platform", user_id="user-000001", currency="btc") == 3)
    assert samples.get("sfox_end_user_balance", account="platform", user_id="user-000001", currency="eth") is None
    assert samples.number("sfox_end_user_balance_available", account="platform", user_id="user-000001",
                          currency="btc") == 2
    assert samples.number("sfox_end_users_balance", account="platform", currency="eth") == 0
    assert samples.number("sfox_end_users_holding", account="platform", currency="btc") == 1


def test_personal_data_is_never_served_or_logged(connect_simulator: Simulator, caplog: pytest.LogCaptureFixture,
                                                 start_exporter: Callable[..., Exporter]) -> None:
    caplog.set_level(logging.DEBUG)
    exporter = start_exporter(enterprise_config(connect_simulator, per_user_series=True))
    wait_until(feed_up(exporter, "platform"))
    secrets = {"name": "Zebediah Quux", "email": "zq@example.invalid", "phone": "+15550001234",
               "token": "utok-9f8e7d6c5b4a"}
    record = user_record("user-000002", **secrets)
    connect_simulator.push(KEY_PLATFORM, record, recipient=USERS_FEED)
    connect_simulator.push(KEY_PLATFORM, {**record, "updates": [{"currency": "btc", "balance": "1"}]},
                           recipient=END_USERS_FEED)
    samples = scrape_until(exporter.url, lambda s: s.get(
        "sfox_end_user_balance", account="platform", user_id="user-000002", currency="btc") == 1)
    assert samples.number("sfox_feed_messages_total", account="platform", kind="unknown") >= 1
    served = samples.text + exporter.landing_page()
    logged = caplog.text
    for value in secrets.values():
        assert value not in served
        assert value not in logged


def test_a_reload_that_rebuilds_the_connection_keeps_the_end_users(connect_simulator: Simulator,
                                                                   start_exporter: Callable[..., Exporter]) -> None:
    """sFOX replays nothing: a new book after a reload that only changed a ping interval would show
    no end users until each changed again. New book settings take over what the old book held."""
    config = enterprise_config(connect_simulator)
    exporter = start_exporter(config)
    wait_until(feed_up(exporter, "platform"))
    push_all(connect_simulator)
    scrape_until(exporter.url, lambda s: s.get("sfox_end_users", account="platform") == 50)
    book = exporter.end_users["platform"]
    slower = dataclasses.replace(config, feed=dataclasses.replace(config.feed, ping_interval_seconds=7.0))
    assert "account:platform" in exporter.reconfigure(slower, None).split(";")[0]  # restarted
    wait_until(feed_up(exporter, "platform"))
    assert exporter.end_users["platform"] is book
    assert scrape(exporter.url).get("sfox_end_users", account="platform") == 50
    totals = scrape(exporter.url).get("sfox_end_users_balance", account="platform", currency="btc")
    wider = dataclasses.replace(slower, feed=dataclasses.replace(slower.feed, max_series=20_000))
    exporter.reconfigure(wider, None)
    assert exporter.end_users["platform"] is not book
    served = scrape(exporter.url)
    assert served.get("sfox_end_users", account="platform") == 50
    assert served.get("sfox_end_users_balance", account="platform", currency="btc") == totals
    sharded = dataclasses.replace(wider, end_users=EndUsersConfig(shard="0/2"))
    exporter.reconfigure(sharded, None)
    kept = [user_id(n) for n in range(50) if zlib.crc32(user_id(n).encode()) % 2 == 0]
    assert 0 < len(kept) < 50
    assert scrape(exporter.url).get("sfox_end_users", account="platform") == len(kept)
    assert exporter.end_users["platform"].holdings(kept[0]) == book.holdings(kept[0])


def test_a_reload_that_drops_accounts_forgets_what_was_kept_for_them(connect_simulator: Simulator,
                                                                     start_exporter: Callable[..., Exporter]) -> None:
    """Reloads through ever new account names must not leave a book's owner behind for each name
    ever configured. The REST window stays: removed and added back within 10 s, an account would
    otherwise get 5 more calls than sFOX allows."""
    config = enterprise_config(connect_simulator)
    exporter = start_exporter(config)
    wait_until(feed_up(exporter, "platform"))
    units = exporter.account_units
    window = units.rest_windows["main"]
    assert set(units.book_owners) == {"platform"}
    exporter.reconfigure(dataclasses.replace(config, accounts=config.accounts[1:]), None)
    assert set(units.book_owners) == {"platform"}
    exporter.reconfigure(dataclasses.replace(config, accounts=config.accounts[:1]), None)
    assert units.book_owners == {} and units.rest_windows["main"] is window
