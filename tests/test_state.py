"""State: the balance book, feed health, staleness, the series cap and snapshot merging."""

from __future__ import annotations

from sfox_exporter.config import Threshold
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.connect import EndUserBalances
from sfox_exporter.sfox.decode import AccountBalance, BadFrame, BalanceUpdate, ControlMessage, OtherMessage, Web3Balance
from sfox_exporter.vocabulary import ErrorReason, FeedStatus

from .conftest import FakeClock


def entry(currency: str, balance: float, wallets: tuple[tuple[str, float], ...] = ()) -> AccountBalance:
    return AccountBalance(currency, balance, balance, 0.0, wallets)


def update(*entries: AccountBalance, wallets: tuple[Web3Balance, ...] = (), timestamp: float | None = 1.7e9,
           errors: int = 0) -> BalanceUpdate:
    return BalanceUpdate(1, timestamp, entries, wallets, errors)


def make_state(clock: FakeClock | None = None, **options: object) -> State:
    return State(["main", "other"], clock=clock or FakeClock(), **options)  # type: ignore[arg-type]


def test_update_applies_per_currency_and_keeps_others() -> None:
    state = make_state()
    state.ingest("main", update(entry("btc", 1), entry("usd", 100)))
    state.ingest("main", update(entry("btc", 2)))
    view = state.snapshot().accounts[0]
    assert {c: e.balance for c, e in view.balances.items()} == {"btc": 2.0, "usd": 100.0}
    assert view.messages["balances"] == 2
    assert view.updated_timestamp == 1.7e9


def test_accounts_are_separate() -> None:
    state = make_state()
    state.ingest("main", update(entry("btc", 1)))
    main, other = state.snapshot().accounts
    assert "btc" in main.balances and not other.balances


def test_counters_by_kind_and_reason() -> None:
    clock = FakeClock()
    state = make_state(clock)
    state.ingest("main", ControlMessage(1, "success", "authenticate", None))
    state.ingest("main", BadFrame("decode"))
    state.ingest("main", OtherMessage(3, None, schema_errors=1))
    state.ingest("main", update(entry("btc", 1), errors=2))
    view = state.snapshot().accounts[0]
    assert dict(view.messages) == {"balances": 1, "web3": 0, "end_users": 0, "control": 1, "unknown": 2}
    assert view.errors["decode"] == 1
    assert view.errors["schema"] == 3
    assert view.last_message_time == clock.time()


def test_update_without_timestamp_uses_arrival_time() -> None:
    clock = FakeClock()
    state = make_state(clock)
    state.ingest("main", update(entry("btc", 1), timestamp=None))
    assert state.snapshot().accounts[0].updated_timestamp == clock.time()


def test_message_with_nothing_valid_does_not_move_the_updated_timestamp() -> None:
    state = make_state()
    state.ingest("main", update(timestamp=5.0, errors=1))
    assert state.snapshot().accounts[0].updated_timestamp is None


def test_every_mutation_bumps_the_version() -> None:
    state = make_state()
    versions = [state.version()]
    state.ingest("main", update(entry("btc", 1)))
    versions.append(state.version())
    state.count_error("main", ErrorReason.REST)
    versions.append(state.version())
    state.set_status("main", FeedStatus.UP)
    versions.append(state.version())
    assert versions == sorted(set(versions))
    assert state.version() == versions[-1]  # reading changes nothing


def test_stale_balances_are_withdrawn_and_health_stays() -> None:
    clock = FakeClock()
    state = make_state(clock, stale_after_seconds=600)
    state.set_status("main", FeedStatus.UP)
    state.ingest("main", update(entry("btc", 1), wallets=(Web3Balance("Ethereum", "0xa", "eth", 1),)))
    state.set_status("main", FeedStatus.BACKING_OFF)
    clock.advance(599)
    assert state.snapshot().accounts[0].balances
    clock.advance(1)
    view = state.snapshot().accounts[0]
    assert view.withdrawn
    assert not view.balances and not view.wallets and view.series == 0
    assert view.messages["balances"] == 1  # health stays
    # Fresh data after the feed is back brings series back, without the stale ones.
    state.set_status("main", FeedStatus.UP)
    state.ingest("main", update(entry("usd", 5)))
    view = state.snapshot().accounts[0]
    assert not view.withdrawn
    assert set(view.balances) == {"usd"}


def test_staleness_is_applied_when_the_feed_returns_between_scrapes() -> None:
    clock = FakeClock()
    state = make_state(clock, stale_after_seconds=10)
    state.set_status("main", FeedStatus.UP)
    state.ingest("main", update(entry("btc", 1)))
    state.set_status("main", FeedStatus.CONNECTING)
    clock.advance(11)
    state.set_status("main", FeedStatus.UP)  # no scrape in between
    assert not state.snapshot().accounts[0].balances


def test_stale_after_zero_never_withdraws() -> None:
    clock = FakeClock()
    state = make_state(clock, stale_after_seconds=0)
    state.ingest("main", update(entry("btc", 1)))
    clock.advance(10**6)
    assert state.snapshot().accounts[0].balances


def test_feed_that_never_came_up_goes_stale_from_start() -> None:
    clock = FakeClock()
    state = make_state(clock, stale_after_seconds=30)
    state.apply_snapshot("main", [entry("btc", 1)], 0)  # REST works, WebSocket never does
    clock.advance(31)
    assert state.snapshot().accounts[0].withdrawn


def test_series_cap_refuses_new_series_and_counts() -> None:
    state = make_state(max_series=7)
    wallets = (("trading", 1.0), ("lending", 0.0))
    state.ingest("main", update(entry("btc", 1, wallets)))  # 5 series
    state.ingest("main", update(entry("eth", 1, wallets)))  # would make 10
    state.ingest("main", update(entry("btc", 2, wallets)))  # an update of an existing one is fine
    state.ingest("main", update(wallets=(Web3Balance("n", "a", "c", 1), Web3Balance("n", "b", "c", 1),
                                         Web3Balance("n", "c", "c", 1))))
    view = state.snapshot().accounts[0]
    assert set(view.balances) == {"btc"}
    assert view.balances["btc"].balance == 2.0
    assert len(view.wallets) == 2
    assert view.series == 7
    assert view.errors["cardinality"] == 2


def test_snapshot_replaces_account_balances_wholesale() -> None:
    state = make_state()
    state.ingest("main", update(entry("btc", 1), entry("doge", 5),
                                wallets=(Web3Balance("Ethereum", "0xa", "eth", 1),)))
    since = state.generation("main")
    state.apply_snapshot("main", [entry("btc", 1.5), entry("usd", 10)], since)
    view = state.snapshot().accounts[0]
    assert {c: e.balance for c, e in view.balances.items()} == {"btc": 1.5, "usd": 10.0}
    assert len(view.wallets) == 1  # REST has no Web3 wallets; they stay
    assert view.snapshot_time is not None
    assert view.series == 7


def test_a_snapshot_with_invalid_entries_is_merged_not_taken_as_the_whole_list() -> None:
    """The currency of an invalid entry ({"currency": "btc", "balance": "NaN"}) may be one the account
    holds: taken as the whole list, the snapshot withdrew it, where the same entry on the feed keeps it."""
    state = make_state()
    state.ingest("main", update(entry("btc", 1), entry("doge", 5)))
    state.apply_snapshot("main", [entry("usd", 10), entry("doge", 6)], state.generation("main"), complete=False)
    view = state.snapshot().accounts[0]
    assert {c: e.balance for c, e in view.balances.items()} == {"btc": 1.0, "doge": 6.0, "usd": 10.0}
    assert view.series == 3 * entry("btc", 1).series_count
    state.apply_snapshot("main", [entry("usd", 10)], state.generation("main"))
    assert set(state.snapshot().accounts[0].balances) == {"usd"}
    capped = make_state(max_series=3 * entry("a", 1).series_count)
    capped.ingest("main", update(entry("btc", 1), entry("eth", 1)))
    for n in range(5):  # each brings a new currency and an invalid entry: merged, within the cap
        capped.apply_snapshot("main", [entry(f"c{n}", 1)], capped.generation("main"), complete=False)
    view = capped.snapshot().accounts[0]
    assert set(view.balances) == {"btc", "eth", "c0"} and view.series == 3 * entry("a", 1).series_count


def test_feed_updates_newer_than_the_snapshot_request_survive_it() -> None:
    state = make_state()
    since = state.generation("main")  # the REST request goes out
    state.ingest("main", update(entry("btc", 2)))  # the feed moves on meanwhile
    state.apply_snapshot("main", [entry("btc", 1), entry("usd", 10)], since)  # the older answer arrives
    balances = state.snapshot().accounts[0].balances
    assert balances["btc"].balance == 2.0
    assert balances["usd"].balance == 10.0


def test_thresholds_belong_to_their_account() -> None:
    limits = [Threshold("main", "usd", "available", 1000), Threshold("other", "btc", "balance", 1)]
    state = make_state(thresholds=limits)
    main, other = state.snapshot().accounts
    assert main.thresholds == (limits[0],)
    assert other.thresholds == (limits[1],)


def test_snapshot_is_a_copy() -> None:
    state = make_state()
    state.ingest("main", update(entry("btc", 1)))
    before = state.snapshot()
    state.ingest("main", update(entry("btc", 2), entry("eth", 3)))
    assert set(before.accounts[0].balances) == {"btc"}
    assert before.accounts[0].balances["btc"].balance == 1.0


def test_an_end_users_message_is_the_enterprise_accounts_last_balance_message() -> None:
    """sfox_balances_updated_timestamp_seconds is per account, Connect accounts included."""
    clock = FakeClock()
    state = make_state(clock)
    state.ingest("main", EndUserBalances(4, 1.71e9, "user-1", (entry("btc", 1.0),), 0))
    state.ingest("other", EndUserBalances(4, None, "user-1", (), 0))  # no usable timestamp: local time
    state.ingest("main", EndUserBalances(5, 1.72e9, "user-2", (), 2, 2))  # every entry invalid: nothing applied
    views = {view.name: view for view in state.snapshot().accounts}
    assert views["main"].updated_timestamp == 1.71e9
    assert views["other"].updated_timestamp == clock.time()
