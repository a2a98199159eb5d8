"""sFOX Connect end users' book: exact totals, full-snapshot semantics, per-user cap, shards."""

from __future__ import annotations

import math
import random
import zlib

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sfox_exporter.config import EndUsersConfig
from sfox_exporter.metrics.endusers import MAX_USER_CURRENCIES, EndUserBook
from sfox_exporter.metrics.endusers_render import EndUserCollector, EndUserRenderer
from sfox_exporter.metrics.exact import ExactSum
from sfox_exporter.sfox.connect import EndUserBalances
from sfox_exporter.sfox.decode import parse_frame
from sfox_exporter.sfox.entries import AccountBalance

CURRENCIES = ("btc", "eth", "usd", "usdc", "sol", "xrp")


def holding(currency: str, balance: float | None, available: float | None = None,
            held: float | None = None) -> AccountBalance:
    return AccountBalance(currency, balance, available, held, ())


def message(user: str, *accounts: AccountBalance, errors: int = 0) -> EndUserBalances:
    return EndUserBalances(None, None, user, accounts, errors, errors)


def totals(book: EndUserBook) -> dict[str, tuple[float, float, float, int]]:
    return {t.currency: (t.balance, t.available, t.held, t.holders) for t in book.view().currencies}


@pytest.mark.parametrize("batches", [
    [[0.1, 0.2], [-0.3]],  # exact: 0.1 + 0.2 - 0.3 is not 0 in binary
    [[1.7976931348623157e308], [-1.7976931348623157e308, 5e-324]],  # too large for the product, then subnormal
    [[5e-324, 1e300], [-2.5e-300, 123456.789], [-1e300]],  # a scale past 2**1023: no factor at all
    [[1e-8] * 1000, [3.0, -1e-8]],
    [[-0.0, 0.0], [2.0**-60]],
])
def test_an_exact_sum_is_math_fsum_of_everything_added(batches: list[list[float]]) -> None:
    total, added = ExactSum(), []
    for batch in batches:
        total.add_all(batch)
        added += batch
        assert total.value == math.fsum(added)


def test_a_million_random_updates_match_a_recomputation_exactly() -> None:
    """250,000 messages of 4 currencies: 1,000,000 amount updates over 2,000 users, magnitudes
    from 1e-8 to 1e8 so that a float running sum would drift. The book must equal math.fsum (the
    correctly rounded exact sum) of the final holdings, bit for bit, and its holder counts."""
    rng = random.Random(14)
    book = EndUserBook(EndUsersConfig(), max_series=10**9)
    current: dict[str, dict[str, tuple[float, float, float]]] = {}
    drifting = dict.fromkeys(CURRENCIES, 0.0)  # a naive float running sum, to show the test bites
    for _ in range(250_000):
        user = f"u{rng.randrange(2000)}"
        chosen = rng.sample(CURRENCIES, 4)
        entries = []
        for currency in chosen:
            amounts = tuple(rng.random() * 10.0 ** rng.randrange(-8, 9) * (rng.random() < 0.9) for _ in range(3))
            entries.append(holding(currency, *amounts))
        previous = current.get(user, {})
        for currency, amounts in previous.items():
            drifting[currency] -= amounts[0]
        current[user] = {e.currency: (e.balance, e.available, e.held) for e in entries}  # type: ignore[misc]
        for e in entries:
            drifting[e.currency] += e.balance  # type: ignore[operator]
        book.apply(message(user, *entries))
    got = totals(book)
    assert book.view().users == len(current)
    drifted = 0
    for currency in CURRENCIES:
        values = [holdings[currency] for holdings in current.values() if currency in holdings]
        expected = tuple(math.fsum(v[field] for v in values) for field in range(3))
        holders = sum(1 for v in values if v[0] != 0)
        assert got[currency] == (*expected, holders), currency
        drifted += drifting[currency] != expected[0]
    assert drifted, "the naive running sum should have drifted somewhere"


def test_totals_past_floats_range_are_infinite_not_an_error() -> None:
    # Each balance is a valid float; their sum is not one. Rendering it once raised OverflowError on
    # every scrape, and /metrics served nothing at all.
    book = EndUserBook(EndUsersConfig(), max_series=100)
    book.apply(message("a", holding("btc", 1e308, 1e308, 0.0)))
    book.apply(message("b", holding("btc", 1e308, -1e308, 0.0)))
    assert totals(book)["btc"] == (math.inf, 0.0, 0.0, 2)
    book.apply(message("c", holding("btc", -1e308, 0.0, 0.0)))
    assert totals(book)["btc"] == (1e308, 0.0, 0.0, 3)


def test_each_message_is_the_users_full_set_of_currencies() -> None:
    book = EndUserBook(EndUsersConfig(), max_series=100)
    book.apply(message("a", holding("btc", 1.5, 1.0, 0.5), holding("usd", 100.0, 100.0, 0.0)))
    book.apply(message("b", holding("btc", 0.25, 0.25, 0.0)))
    assert totals(book)["btc"] == (1.75, 1.25, 0.5, 2)
    book.apply(message("a", holding("usd", 50.0, 40.0, 10.0)))  # btc is gone for a
    assert totals(book) == {"btc": (0.25, 0.25, 0.0, 1), "usd": (50.0, 40.0, 10.0, 1)}
    book.apply(message("b"))  # an empty set: b holds nothing, but has been seen
    assert totals(book)["btc"] == (0.0, 0.0, 0.0, 0)
    assert book.view().users == 2


def test_a_message_with_invalid_entries_merges_and_one_all_invalid_changes_nothing() -> None:
    book = EndUserBook(EndUsersConfig(), max_series=100)
    book.apply(message("a", holding("btc", 1.0), holding("usd", 5.0)))
    book.apply(message("a", errors=2))  # every entry invalid: keep what a held
    assert totals(book)["usd"][0] == 5.0 and totals(book)["btc"][0] == 1.0
    book.apply(message("a", holding("btc", 2.0), errors=1))  # merged: usd may be the invalid one
    assert totals(book)["usd"][0] == 5.0 and totals(book)["btc"][0] == 2.0


def test_a_bad_sequence_or_timestamp_does_not_make_a_full_set_a_merge() -> None:
    """Only invalid entries make a message partial; an envelope error says nothing of them."""
    book = EndUserBook(EndUsersConfig(), max_series=100)
    book.apply(message("a", holding("btc", 1.0), holding("eth", 2.0)))
    book.apply(EndUserBalances(None, None, "a", (holding("btc", 1.0),), 1))  # a schema error, no invalid entry
    assert totals(book)["eth"][0] == 0.0
    book.apply(EndUserBalances(None, None, "b", (), 1))  # a valid empty set, with a bad sequence
    assert book.view().users == 2


def test_a_new_user_whose_every_entry_is_invalid_is_not_counted() -> None:
    book = EndUserBook(EndUsersConfig(), max_series=100)
    book.apply(message("a", errors=3))
    assert book.view().users == 0 and book.holdings("a") is None
    book.apply(message("b"))  # an empty set without errors: b is known to hold nothing
    assert book.view().users == 1


def test_max_series_caps_the_totals_too() -> None:
    """A currency's totals are four series for good: hostile or runaway currencies must not grow
    them past max_series, which caps the account as a whole."""
    book = EndUserBook(EndUsersConfig(), max_series=10)  # room for two currencies' totals
    assert book.apply(message("a", holding("btc", 1.0, 1.0, 0.0), holding("eth", 2.0, 2.0, 0.0),
                              holding("sol", 3.0, 3.0, 0.0))) == 1
    assert set(totals(book)) == {"btc", "eth"}
    assert book.apply(message("b", *(holding(f"x{n}", 1.0, 1.0, 0.0) for n in range(50)), holding("btc", 5.0))) == 50
    assert totals(book)["btc"][0] == 6.0 and book.view().series == 8
    assert book.apply(message("a", holding("eth", 4.0, 4.0, 0.0))) == 0  # btc gone for a: a full set still
    assert totals(book)["btc"][0] == 5.0 and totals(book)["eth"][0] == 4.0
    per_user = EndUserBook(EndUsersConfig(per_user_series=True), max_series=10)
    assert per_user.apply(message("a", holding("btc", 1.0, 1.0, 0.0))) == 0  # 4 + 2 series
    assert per_user.apply(message("b", holding("eth", 1.0, 1.0, 0.0))) == 1  # 8 + 2 + 2 would pass 10
    assert set(totals(per_user)) == {"btc", "eth"} and per_user.view().series == 10
    # Per-user series filling the room never keep a new currency out of the totals: they come first.
    crowded = EndUserBook(EndUsersConfig(per_user_series=True), max_series=12)
    assert [crowded.apply(message(u, holding("btc", 1.0, 1.0, 0.0))) for u in "abcd"] == [0, 0, 0, 0]
    # usd's totals take 4 series: a and b, updated longest ago, give way, and e's own are refused.
    assert crowded.apply(message("e", holding("usd", 100.0, 100.0, 0.0))) == 3
    assert totals(crowded)["usd"][0] == 100.0 and totals(crowded)["btc"][0] == 4.0
    assert crowded.view().series == 12  # within max_series, always
    assert [user for user, _ in crowded.exported()] == ["c", "d"]
    changes = crowded.take_changes()
    assert changes["a"] is None and changes["b"] is None  # their lines leave /metrics


def test_updates_as_a_list_or_one_object_decode_alike() -> None:
    entry = '{"currency":"btc","balance":"1.5","available":"1","held":"0.5","trading_wallet":"1.5"}'
    frames = [
        '{"sequence":1,"recipient":"private.enterprise.users.balances","timestamp":1710367225302228171,'
        f'"payload":{{"user_id":"u1","email":"x@y.z","updates":{updates}}}}}'
        for updates in (f"[{entry}]", entry)
    ]
    events = [parse_frame(frame) for frame in frames]
    assert all(isinstance(event, EndUserBalances) for event in events)
    assert events[0].accounts == events[1].accounts  # type: ignore[union-attr]
    assert "x@y.z" not in repr(events[0])


def test_shards_keep_their_users_only() -> None:
    users = [f"user-{i}" for i in range(200)]
    counts = []
    for index in range(3):
        book = EndUserBook(EndUsersConfig(shard=f"{index}/3"), max_series=100)
        for user in users:
            book.apply(message(user, holding("btc", 1.0)))
        kept = {u for u in users if zlib.crc32(u.encode()) % 3 == index}
        assert book.view().users == len(kept)
        assert all(book.holdings(u) is not None for u in kept)
        counts.append(book.view().users)
    assert sum(counts) == len(users) and min(counts) > 0


def test_a_book_carried_into_new_settings_keeps_what_they_let_it() -> None:
    """A reload's new shard, caps or per-user series take over the users held (sFOX replays nothing),
    in the order they came, with absent amounts still absent."""
    book = EndUserBook(EndUsersConfig(), max_series=100)
    users = [f"user-{i}" for i in range(40)]
    for n, user in enumerate(users):
        book.apply(message(user, holding("btc", 0.1 * n, 0.1 * n), holding("eth", 2.0, None, 1.0)))
    assert totals(book.carried_into(EndUsersConfig(), 100)[0]) == totals(book)
    sharded, refused = book.carried_into(EndUsersConfig(shard="1/2"), 100)
    assert refused == 0
    kept = [u for u in users if zlib.crc32(u.encode()) % 2 == 1]
    assert sharded.view().users == len(kept)
    assert all(sharded.holdings(u) == book.holdings(u) for u in kept)
    assert sharded.holdings(kept[0]) == (("btc", *[0.1 * users.index(kept[0])] * 2, None), ("eth", 2.0, None, 1.0))
    capped, refused = book.carried_into(EndUsersConfig(max_users=5, per_user_series=True), 16)
    assert refused == 35 + 3  # 35 users past max_users; 3 of the 5 kept have no room for their series
    assert capped.view().users == 5 and capped.holdings(users[4]) is not None and capped.holdings(users[5]) is None
    assert capped.series == 6  # the 8 series the totals leave room for hold 2 users of 3 (eth has no available)
    assert book.view().users == 40  # the old book is left as it was
    narrow, refused = book.carried_into(EndUsersConfig(), 4)  # one currency's totals fit: replayed
    assert [t.currency for t in narrow.view().currencies] == ["btc"] and narrow.view().users == 40
    assert refused == 40  # each user's eth, refused


def test_per_user_series_are_opt_in_and_capped() -> None:
    off = EndUserBook(EndUsersConfig(), max_series=100)
    off.apply(message("a", holding("btc", 1.0, 1.0)))
    assert EndUserRenderer({"p": off}).render() == []
    book = EndUserBook(EndUsersConfig(per_user_series=True), max_series=16)  # 8 of them the 2 currencies' totals
    refused = [book.apply(message(u, holding("btc", 1.0, 0.5), holding("eth", 2.0, 2.0))) for u in "abc"]
    assert refused == [0, 0, 1]  # 4 series fit, 8 would not
    assert totals(book)["btc"][0] == 3.0  # refused users still count in the totals
    text = b"".join(EndUserRenderer({"p": book}).render()).decode()
    assert text.count('user_id="a"') == 4 and 'user_id="c"' not in text
    assert book.apply(message("c", holding("btc", 7.0, 7.0), holding("eth", 1.0, 1.0))) == 1
    book.apply(message("a", holding("btc", 1.0, 0.5)))  # a shrinks to 2 series: room for 2 more
    assert book.apply(message("c", holding("btc", 7.0, 7.0))) == 0
    assert book.series == 8


def test_incremental_render_matches_prometheus_client() -> None:
    book = EndUserBook(EndUsersConfig(per_user_series=True), max_series=10**6)
    renderer = EndUserRenderer({'pl"at': book})
    rng = random.Random(3)
    for step in range(3000):
        user = f'u{rng.randrange(300)}\\"x' if step % 7 == 0 else f"u{rng.randrange(300)}"
        entries = [holding(c, rng.random() * 1e6, rng.random() if rng.random() < 0.8 else None)
                   for c in rng.sample(CURRENCIES, rng.randrange(4))]
        book.apply(message(user, *entries))
        if step % 500 == 0:
            renderer.render()  # renders in between, so the last one is incremental
    ours = b"".join(renderer.render()).decode()
    registry = CollectorRegistry()
    registry.register(EndUserCollector({'pl"at': book}))
    reference = generate_latest(registry).decode()

    def samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {(s.name, tuple(sorted(s.labels.items())), s.value)
                for family in text_string_to_metric_families(text) for s in family.samples}

    assert samples(ours) == samples(reference)
    assert len(samples(ours)) > 500


def test_end_users_past_max_users_are_refused_and_counted() -> None:
    """Every user id ever seen was kept: a feed of ever-new ids grew the exporter without end."""
    book = EndUserBook(EndUsersConfig(max_users=3), max_series=100)
    refused = [book.apply(EndUserBalances(None, None, f"u{n}", (AccountBalance("btc", 1.0, 1.0, 0.0, ()),), 0))
               for n in range(5)]
    assert refused == [0, 0, 0, 1, 1]
    view = book.view()
    assert view.users == 3 and view.currencies[0].balance == 3.0
    assert book.apply(EndUserBalances(None, None, "u1", (AccountBalance("btc", 2.0, 2.0, 0.0, ()),), 0)) == 0
    assert book.view().currencies[0].balance == 4.0  # one already held still moves


def test_a_user_holds_at_most_max_user_currencies() -> None:
    """2,000 currencies a user (room enough in the totals) cost 52 KB for each of thousands of users."""
    book = EndUserBook(EndUsersConfig(), max_series=100_000)
    entries = tuple(AccountBalance(f"c{n}", 1.0, 1.0, 0.0, ()) for n in range(MAX_USER_CURRENCIES + 44))
    assert book.apply(EndUserBalances(None, None, "u1", entries, 0)) == 44
    assert len(book.holdings("u1") or ()) == MAX_USER_CURRENCIES
    fewer = entries[:10] + entries[-5:]  # a full set again: its currencies replace the held ones
    assert book.apply(EndUserBalances(None, None, "u1", fewer, 0)) == 0
    assert len(book.holdings("u1") or ()) == 15
