"""The fast path (sfox/documented.py): which frames it takes, that it agrees with the general path on
them, and that the State applies its messages exactly as entry by entry."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfox_exporter.metrics.state import State
from sfox_exporter.sfox import documented
from sfox_exporter.sfox.decode import (
    AccountBalance,
    BadFrame,
    BalanceUpdate,
    DocumentedBalance,
    EndUserBalances,
    parse_balances_frame,
    parse_currency_pairs,
    parse_end_users_frame,
    parse_frame,
    parse_rest_balances,
    parser_for,
)
from sfox_exporter.sfox.session import ACCOUNT_FEED, ENTERPRISE_FEED, ticker_feed

from .conftest import FakeClock
from .reference import canonical, reference_frame, reference_rest

AMOUNTS = ("balance", "available", "held", "trading_wallet", "collateral_wallet", "borrow_wallet", "lending_wallet")


def entry(currency: str = "btc", value: str = "0.17572419", **changes: Any) -> dict[str, Any]:
    return {"currency": currency, **dict.fromkeys(AMOUNTS, value), **changes}


def balances_frame(*entries: dict[str, Any], spaced: bool = False, **envelope: Any) -> bytes:
    message = {"sequence": 10, "recipient": ACCOUNT_FEED, "timestamp": 1649899310281716289,
               "payload": list(entries), **envelope}
    return json.dumps(message, separators=(", ", ": ") if spaced else (",", ":")).encode()


def end_user_frame(*entries: dict[str, Any], user_id: Any = "user-1", **extra: Any) -> bytes:
    return json.dumps({"sequence": 4, "recipient": ENTERPRISE_FEED, "timestamp": 1649899310281716289,
                       "payload": {"user_id": user_id, "updates": list(entries), **extra}}).encode()


TAKEN = {
    "sFOX's documented example": balances_frame(entry("btc"), entry("usd", "100", held="0")),
    "spaced JSON": balances_frame(entry("btc"), entry("usd", "100"), spaced=True),
    "upper-case currency": balances_frame(entry("BTC"), entry("Usd")),
    "JSON numbers": balances_frame(entry("btc", 0.5)),  # type: ignore[arg-type]
    "negative amounts": balances_frame(entry("btc", "-1.5")),
    "-0.0 spelt with a fraction": balances_frame(entry("btc", "-0.0")),
    "an amount of 64 characters": balances_frame(entry("btc", "1." + "0" * 62)),
    "no entries": balances_frame(),
    "unknown envelope fields": balances_frame(entry(), extra={"anything": [1, 2]}),
}
GENERAL = {
    "the string -0 (lax mode would lose its sign)": balances_frame(entry("btc", "-0")),
    "an amount of 65 characters": balances_frame(entry("btc", "1." + "0" * 63)),
    "an escape": balances_frame(entry("b\\u0074c")).replace(b"\\\\", b"\\"),
    "a field missing": balances_frame({k: v for k, v in entry().items() if k != "held"}),
    "a null amount": balances_frame(entry(held=None)),
    "another wallet": balances_frame(entry(staking_wallet="1")),
    "a display id": balances_frame(entry(wallet_display_id="Trading")),
    "a type": balances_frame(entry(type="web3")),
    "an empty currency": balances_frame(entry("")),
    "a currency of 129 characters": balances_frame(entry("x" * 129)),
    "an unprintable currency": balances_frame(entry("b\u200bc")),
    "a payload object": json.dumps({"sequence": 1, "recipient": ACCOUNT_FEED, "payload": entry()}).encode(),
    "another recipient": balances_frame(entry(), recipient="private.user.other"),
    "a control message": b'{"type":"success","sequence":1,"action":"authenticate"}',
    "not JSON": b"{",
    "text": balances_frame(entry()).decode(),
    "a non-ASCII currency": balances_frame(entry("\u00e9th")),
}
# msgspec checks UTF-8 only in what it decodes into a str: bytes that are no UTF-8 in a field it
# skips, or in a payload it keeps raw, must still make the frame undecodable, as json.loads says.
NOT_UTF8 = {
    "an unknown envelope field": b'{"recipient":"private.user.balances","x":"\xff","payload":[]}',
    "an unknown key": b'{"recipient":"private.user.balances","\x80":0,"payload":[]}',
    "an end user's other field": b'{"recipient":"private.enterprise.users.balances","payload":{"user_id":"u",'
                                 b'"name":"\xc0\x80","updates":[]}}',
    "another feed's payload": b'{"recipient":"other.feed","payload":"\xe2\x82"}',
}


@pytest.mark.parametrize("frame", TAKEN.values(), ids=TAKEN.keys())
def test_documented_frames_take_the_fast_path_and_agree(frame: bytes) -> None:
    assert documented.balances(frame) is not None
    event = parse_balances_frame(frame)
    assert isinstance(event, BalanceUpdate)
    assert all(type(account) is DocumentedBalance for account in event.accounts)
    assert event.currencies == [account.currency for account in event.accounts]
    assert canonical(event) == canonical(reference_frame(frame)) == canonical(parse_frame(frame))


@pytest.mark.parametrize("frame", GENERAL.values(), ids=GENERAL.keys())
def test_anything_else_takes_the_general_path_with_the_same_result(frame: bytes | str) -> None:
    assert documented.balances(frame) is None
    assert canonical(parse_balances_frame(frame)) == canonical(parse_frame(frame))


@pytest.mark.parametrize("frame", NOT_UTF8.values(), ids=NOT_UTF8.keys())
def test_bytes_that_are_no_utf8_anywhere_make_the_frame_undecodable(frame: bytes) -> None:
    assert reference_frame(frame) == BadFrame("decode")
    for parse in (parse_frame, parse_balances_frame, parse_end_users_frame):
        assert parse(frame) == BadFrame("decode")


def test_a_rest_body_that_is_no_utf8_is_no_array() -> None:
    body = b'[{"currency":"btc","balance":1,"note":"\xff"}]'
    assert reference_rest(body) is None and parse_rest_balances(body) is None


def test_a_pairs_body_that_is_no_utf8_is_no_object() -> None:
    body = b'{"btcusd":{"base":"btc","quote":"usd","name":"\xff"}}'
    with pytest.raises(ValueError):
        json.loads(body)
    assert parse_currency_pairs(body) is None
    assert parse_currency_pairs(body.replace(b"\xff", b"\xc3\xa9")) == {"btcusd": ("btc", "usd")}


def test_encoded_surrogates_pass_as_json_loads_lets_them() -> None:
    frame = b'{"recipient":"other.feed","payload":"\xed\xa0\x80"}'
    assert canonical(parse_frame(frame)) == canonical(reference_frame(frame))


def test_end_users_of_the_documented_shape_take_the_fast_path() -> None:
    frame = end_user_frame(entry("BTC"), entry("usd", "100"), email="someone@example.com", user_token="t")
    assert documented.end_user(frame) is not None
    event = parse_end_users_frame(frame)
    assert isinstance(event, EndUserBalances)
    assert [account.currency for account in event.accounts] == ["btc", "usd"]
    assert canonical(event) == canonical(reference_frame(frame))
    assert "someone" not in repr(event)  # the other fields are skipped unread


@pytest.mark.parametrize("frame", [
    end_user_frame(entry(), user_id=""), end_user_frame(entry(), user_id=5), end_user_frame(entry(), user_id="a\nb"),
    end_user_frame(entry(held=None)), end_user_frame(entry("btc", "-0")),
], ids=["empty user_id", "numeric user_id", "unprintable user_id", "null amount", "-0"])
def test_end_users_in_doubt_take_the_general_path(frame: bytes) -> None:
    assert documented.end_user(frame) is None
    assert canonical(parse_end_users_frame(frame)) == canonical(reference_frame(frame))


@given(st.lists(st.sampled_from([b'"', b"-", b"0", b"1", b"x"]), max_size=40).map(b"".join))
def test_the_walk_over_dashes_finds_minus_zero_as_a_search_does(data: bytes) -> None:
    assert documented._minus_zero(data) == (b'"-0"' in data)  # noqa: SLF001 - the helper on its own


def test_each_connection_parses_with_its_own_feed_fast_path() -> None:
    assert parser_for((ACCOUNT_FEED,)) is parse_balances_frame
    assert parser_for((ENTERPRISE_FEED,)) is parse_end_users_frame
    assert parser_for((ticker_feed("btcusd"),)) is parse_frame


def test_a_documented_entry_reads_as_an_account_balance() -> None:
    event = parse_balances_frame(balances_frame(entry("btc", "2")))
    assert isinstance(event, BalanceUpdate)
    fast = event.accounts[0]
    general = AccountBalance("btc", 2.0, 2.0, 2.0, (("trading", 2.0), ("collateral", 2.0), ("borrow", 2.0),
                                                       ("lending", 2.0)))
    assert (fast.currency, fast.balance, fast.available, fast.held, fast.wallets, fast.series_count) == (
        general.currency, general.balance, general.available, general.held, general.wallets, general.series_count)


# --- the State's dict-at-a-time apply -----------------------------------------------------------


def fast(*entries: dict[str, Any]) -> BalanceUpdate:
    event = parse_balances_frame(balances_frame(*entries))
    assert isinstance(event, BalanceUpdate) and event.currencies is not None
    return event


def general(*entries: AccountBalance) -> BalanceUpdate:
    return BalanceUpdate(1, 1.7e9, entries, (), 0)


def book(state: State) -> dict[str, Any]:
    view = state.snapshot().accounts[0]
    return {"series": view.series, "errors": dict(view.errors),
            "balances": {currency: canonical(e) for currency, e in view.balances.items()}}


def test_a_documented_message_applies_as_entry_by_entry_would() -> None:
    fast_state, slow_state = State(["main"], clock=FakeClock()), State(["main"], clock=FakeClock())
    messages = [fast(entry("btc", "1"), entry("usd", "2")), fast(entry("btc", "3"), entry("eth", "4")),
                fast(entry("btc", "5"), entry("btc", "6"))]  # a currency twice: the last one counts
    for message in messages:
        fast_state.ingest("main", message)
        slow_state.ingest("main", message._replace(currencies=None))
    assert book(fast_state) == book(slow_state)
    assert book(fast_state)["series"] == 3 * 7
    assert book(fast_state)["balances"]["btc"] == canonical(messages[-1].accounts[-1])


def test_an_irregular_currency_is_counted_entry_by_entry() -> None:
    state = State(["main"], clock=FakeClock())
    state.ingest("main", general(AccountBalance("btc", 1.0, None, None, ())))  # one series only
    state.ingest("main", fast(entry("btc", "2"), entry("usd", "3")))
    assert book(state)["series"] == 14
    state.ingest("main", general(AccountBalance("btc", 1.0, None, None, ())))
    state.ingest("main", fast(entry("usd", "4")))  # btc, irregular again, is not touched
    assert book(state)["series"] == 8


def test_the_series_cap_holds_on_the_fast_path() -> None:
    state = State(["main"], clock=FakeClock(), max_series=20)
    state.ingest("main", fast(entry("btc"), entry("usd"), entry("eth")))  # 21 series: one currency too many
    result = book(state)
    assert (result["series"], result["errors"]["cardinality"]) == (14, 1)
    assert set(result["balances"]) == {"btc", "usd"}


def test_a_snapshot_then_the_fast_path_keep_the_count_right() -> None:
    state = State(["main"], clock=FakeClock())
    state.ingest("main", fast(entry("btc")))
    state.apply_snapshot("main", [AccountBalance("btc", 1.0, None, None, ()),
                                  AccountBalance("usd", 1.0, 1.0, 1.0, ())], state.generation("main"))
    assert book(state)["series"] == 4
    state.ingest("main", fast(entry("btc"), entry("usd"), entry("eth")))
    assert book(state)["series"] == 21
