"""The sans-I/O session: frames and time in, actions out. No sockets, no threads, no clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sfox_exporter.config import Secret
from sfox_exporter.sfox.actions import (
    Action,
    Deliver,
    Ended,
    Ignored,
    Resync,
    SendPing,
    SendPong,
    SendRequest,
    StatusChanged,
    WentUp,
)
from sfox_exporter.sfox.decode import BalanceUpdate, ControlMessage
from sfox_exporter.sfox.frames import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, OP_TOO_BIG
from sfox_exporter.sfox.session import ACCOUNT_FEED, ENTERPRISE_FEED, Phase, Session, SessionSettings, ticker_feed
from sfox_exporter.vocabulary import ErrorReason, FeedStatus

KEY = "session-test-key-0123456789abcdef"
AUTH_OK = {"type": "success", "sequence": 1, "payload": {"action": "authenticate"}, "action": "authenticate"}
AUTH_ERROR = {"type": "error", "sequence": 1, "payload": {"action": "authenticate"}, "action": "authenticate"}
SUB_OK = {"type": "success", "sequence": 2, "payload": {"action": "subscribe", "feeds": [ACCOUNT_FEED]},
          "action": "subscribe"}
SUB_ERROR = {"type": "error", "sequence": 2, "action": "subscribe"}


def settings(**overrides: Any) -> SessionSettings:
    return SessionSettings(**{"feeds": (ACCOUNT_FEED,), "ping_interval": 20.0, "ping_timeout": 10.0, **overrides})


def frame(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def balances(sequence: int, currency: str = "btc") -> bytes:
    return frame({"sequence": sequence, "recipient": ACCOUNT_FEED, "timestamp": 1649899310281716289,
                  "payload": [{"currency": currency, "balance": "1"}]})


def requests(actions: list[Action]) -> list[dict[str, Any]]:
    return [json.loads(action.text) for action in actions if isinstance(action, SendRequest)]


def of(actions: list[Action], kind: type) -> list[Any]:
    return [action for action in actions if isinstance(action, kind)]


def streaming(session: Session, now: float = 0.0) -> Session:
    session.start(now)
    session.receive(OP_TEXT, frame(AUTH_OK), now)
    session.receive(OP_TEXT, frame(SUB_OK), now)
    assert session.phase is Phase.STREAMING
    return session


@pytest.mark.parametrize(("enterprise", "expected"), [
    (None, {"type": "authenticate", "apiKey": KEY}),
    (True, {"type": "authenticate", "apiKey": KEY, "enterprise": True}),
    ("true", {"type": "authenticate", "apiKey": KEY, "enterprise": "true"}),
])
def test_start_authenticates_with_the_flag_each_conversation_needs(enterprise: bool | str | None,
                                                                    expected: dict[str, Any]) -> None:
    actions = Session(settings(enterprise=enterprise), Secret(KEY)).start(0.0)
    assert requests(actions) == [expected]
    assert of(actions, StatusChanged) == [StatusChanged(FeedStatus.AUTHENTICATING)]


def test_a_request_never_shows_the_key_in_its_repr() -> None:
    actions = Session(settings(), Secret(KEY)).start(0.0)
    assert KEY not in repr(actions)
    assert KEY in actions[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("feeds", [(ACCOUNT_FEED,), (ENTERPRISE_FEED,), (ticker_feed("btcusd"), ticker_feed("ethbtc"))])
def test_the_documented_handshake_subscribes_once_then_streams(feeds: tuple[str, ...]) -> None:
    session = Session(settings(feeds=feeds), Secret(KEY))
    session.start(0.0)
    actions = session.receive(OP_TEXT, frame(AUTH_OK), 0.5)
    assert requests(actions) == [{"type": "subscribe", "feeds": list(feeds)}]
    assert of(actions, StatusChanged) == [StatusChanged(FeedStatus.SUBSCRIBING)]
    actions = session.receive(OP_TEXT, frame(SUB_OK), 0.6)
    assert of(actions, WentUp) == [WentUp()]
    assert session.phase is Phase.STREAMING and session.up_at == 0.6
    assert session.subscribed == feeds


def test_data_before_authenticate_is_answered_is_never_delivered() -> None:
    session = Session(settings(), Secret(KEY))
    session.start(0.0)
    actions = session.receive(OP_TEXT, balances(1), 0.1)
    assert not of(actions, Deliver) and of(actions, Ignored)
    assert not of(actions, Ignored)[0].counted  # nothing delivered, so no counter moves: the log says so
    actions = session.receive(OP_TEXT, frame(AUTH_ERROR), 0.2)
    assert actions[-1] == Ended(ErrorReason.AUTH, "authenticate answered error", rejected=True)


def test_data_while_subscribing_means_subscribed() -> None:
    session = Session(settings(), Secret(KEY))
    session.start(0.0)
    session.receive(OP_TEXT, frame(AUTH_OK), 0.0)
    actions = session.receive(OP_TEXT, balances(3), 0.1)
    assert isinstance(of(actions, Deliver)[0].event, BalanceUpdate)
    assert of(actions, WentUp) == [WentUp()]


@pytest.mark.parametrize(("reply", "reason", "rejected"), [
    (AUTH_ERROR, ErrorReason.AUTH, True),
    ({"type": "error", "payload": {"error": "invalid api key"}}, ErrorReason.AUTH, True),
    ({"type": "failure", "action": "authenticate"}, ErrorReason.AUTH, True),
])
def test_any_reply_to_authenticate_but_success_is_a_rejection(reply: dict[str, Any], reason: ErrorReason,
                                                              rejected: bool) -> None:
    session = Session(settings(), Secret(KEY))
    session.start(0.0)
    ended = of(session.receive(OP_TEXT, frame(reply), 0.1), Ended)
    assert len(ended) == 1 and ended[0].reason is reason and ended[0].rejected is rejected
    assert session.phase is Phase.ENDED
    assert session.receive(OP_TEXT, balances(2), 0.2) == [] and session.tick(100.0) == []


@pytest.mark.parametrize("notice", [
    {"type": "info", "payload": {"message": "welcome"}},
    {"type": "heartbeat", "sequence": 1},
    {"type": "notice", "message": "maintenance at 02:00 UTC"},
])
def test_a_notice_that_names_no_action_answers_no_step(notice: dict[str, Any]) -> None:
    """Taken as the answer to authenticate, an "info" sFOX sent on connecting failed every key."""
    session = Session(settings(), Secret(KEY))
    session.start(0.0)
    actions = session.receive(OP_TEXT, frame(notice), 0.1)
    assert not of(actions, Ended) and session.phase is Phase.AUTHENTICATING
    assert of(actions, Deliver)  # counted as a control message all the same
    assert requests(session.receive(OP_TEXT, frame(AUTH_OK), 0.2)) == [{"type": "subscribe", "feeds": [ACCOUNT_FEED]}]
    assert not of(session.receive(OP_TEXT, frame(notice), 0.3), Ended)  # nor is it a refused subscribe
    assert of(session.receive(OP_TEXT, frame(SUB_OK), 0.4), WentUp)
    # Any other type still answers: a failure, or a refusal of a type no page shows.
    for failure in ({"type": "Failure", "sequence": 9}, {"type": "rate_limit", "payload": "rate limit exceeded"},
                    {"type": "not_authorized"}):
        session = Session(settings(), Secret(KEY))
        session.start(0.0)
        assert of(session.receive(OP_TEXT, frame(failure), 0.1), Ended)[0].reason is ErrorReason.AUTH


def test_no_reply_to_authenticate_ends_after_the_reply_timeout() -> None:
    session = Session(settings(ping_timeout=2.0), Secret(KEY))
    session.start(0.0)
    assert session.next_deadline() == 5.0  # the reply timeout is at least 5 s
    assert session.tick(4.9) == []
    assert session.tick(5.0) == [Ended(ErrorReason.AUTH, "no reply to authenticate")]


def test_silence_after_subscribe_counts_as_subscribed_after_the_grace() -> None:
    session = Session(settings(), Secret(KEY))
    session.start(0.0)
    session.receive(OP_TEXT, frame(AUTH_OK), 1.0)
    assert session.next_deadline() == 3.0
    assert session.tick(2.9) == []
    # Lenient, but said: a subscription that did not take looks just like a quiet balances feed.
    assert session.tick(3.0) == [Ignored("no reply to subscribe within 2s (taken as subscribed)", counted=False),
                                 WentUp()]


@pytest.mark.parametrize("refusal", [SUB_ERROR, {"type": "error", "message": "subscription refused"},
                                     {"type": "error", "payload": {"error": "no such feed"}}])
def test_a_subscribe_refusal_ends_the_connection_even_after_the_grace(refusal: dict[str, Any]) -> None:
    """One that names no action was only logged: up and ready, on a refused subscription."""
    session = Session(settings(), Secret(KEY))
    session.start(0.0)
    session.receive(OP_TEXT, frame(AUTH_OK), 0.0)
    session.tick(5.0)
    assert session.phase is Phase.STREAMING
    assert of(session.receive(OP_TEXT, frame(refusal), 6.0), Ended)[0].reason is ErrorReason.SUBSCRIBE


def test_an_error_naming_no_action_once_subscribe_is_answered_ends_nothing() -> None:
    session = streaming(Session(settings(), Secret(KEY)))
    assert not of(session.receive(OP_TEXT, frame({"type": "error", "message": "slow down"}), 6.0), Ended)


def test_pings_go_out_on_time_and_a_missing_pong_ends_the_connection() -> None:
    session = streaming(Session(settings(), Secret(KEY)))
    assert session.next_deadline() == 20.0
    assert session.next_deadline(receiving_since=3.0) == 13.0  # a message begun at 3 s is due by 13 s
    assert session.tick(20.0) == [SendPing(b"sfox-exporter")]
    assert session.next_deadline() == 30.0  # the pong deadline comes before the next ping
    assert session.tick(29.9) == []
    assert session.tick(30.0) == [Ended(ErrorReason.CONNECTION, "no pong within 10s")]


def test_a_pong_clears_the_deadline() -> None:
    session = streaming(Session(settings(), Secret(KEY)))
    session.tick(20.0)
    assert session.receive(OP_PONG, b"unsolicited", 20.05) == []  # proves no ping was read
    assert session.next_deadline() == 30.0
    assert session.receive(OP_PONG, b"sfox-exporter", 20.1) == []
    assert session.tick(30.0) == []
    assert session.tick(40.0) == [SendPing(b"sfox-exporter")]
    assert session.receive(OP_PONG, b"", 40.1) == []  # an empty pong, from a lax server, counts too
    assert session.tick(50.0) == []


def test_server_pings_are_answered_at_once_in_any_phase() -> None:
    session = Session(settings(), Secret(KEY))
    session.start(0.0)
    assert session.receive(OP_PING, b"27s", 0.1) == [SendPong(b"27s")]
    session.receive(OP_TEXT, frame(AUTH_OK), 0.2)
    session.receive(OP_TEXT, frame(SUB_OK), 0.2)
    assert session.receive(OP_PING, b"", 0.3) == [SendPong(b"")]


def test_a_close_frame_ends_with_its_code_and_printable_text() -> None:
    session = streaming(Session(settings(), Secret(KEY)))
    actions = session.receive(OP_CLOSE, (1008).to_bytes(2, "big") + b"policy\x00\x1b[31m", 1.0)
    assert len(actions) == 1 and isinstance(actions[0], Ended)
    assert actions[0].reason is ErrorReason.CONNECTION and "code 1008" in actions[0].detail
    assert "\x1b" not in actions[0].detail and "\x00" not in actions[0].detail


def test_a_message_that_arrives_slower_than_the_ping_timeout_ends_the_connection() -> None:
    session = streaming(Session(settings(), Secret(KEY)))
    assert session.tick(5.0, receiving_since=0.5) == []
    assert session.tick(10.6, receiving_since=0.5) == [
        Ended(ErrorReason.CONNECTION, "a message took longer than 10s to arrive")]


def test_an_oversized_message_is_delivered_as_a_decode_error() -> None:
    session = streaming(Session(settings(), Secret(KEY)))
    actions = session.receive(OP_TOO_BIG, b"", 1.0)
    assert of(actions, Ignored) and of(actions, Deliver)[0].event.reason == "decode"
    assert of(actions, Ignored)[0].counted


def test_a_sequence_gap_asks_for_a_resync_after_delivering_the_message() -> None:
    session = streaming(Session(settings(), Secret(KEY)))
    assert not of(session.receive(OP_TEXT, balances(3), 1.0), Resync)
    actions = session.receive(OP_TEXT, balances(7), 1.1)
    assert isinstance(actions[0], Deliver) and actions[1] == Resync(3, 7)
    session = streaming(Session(settings(), Secret(KEY)))  # the acks were 1 and 2
    assert of(session.receive(OP_TEXT, balances(8), 1.0), Resync) == [Resync(2, 8)]  # the log said "from None"


def test_control_messages_are_delivered_for_counting() -> None:
    session = Session(settings(), Secret(KEY))
    session.start(0.0)
    actions = session.receive(OP_TEXT, frame(AUTH_OK), 0.0)
    assert isinstance(of(actions, Deliver)[0].event, ControlMessage)


def test_more_feeds_join_the_handshake_or_go_in_one_request_once_streaming() -> None:
    feeds = (ticker_feed("btcusd"),)
    session = Session(settings(feeds=feeds), Secret(KEY))
    session.start(0.0)
    assert session.subscribe([ticker_feed("ethusd")]) == []  # not yet authenticated: it waits
    actions = session.receive(OP_TEXT, frame(AUTH_OK), 0.0)
    assert requests(actions) == [{"type": "subscribe", "feeds": ["ticker.sfox.btcusd", "ticker.sfox.ethusd"]}]
    session.receive(OP_TEXT, frame(SUB_OK), 0.1)
    actions = session.subscribe([ticker_feed("btcusd"), ticker_feed("solusd"), ticker_feed("usdtusd")])
    assert requests(actions) == [{"type": "subscribe", "feeds": ["ticker.sfox.solusd", "ticker.sfox.usdtusd"]}]
    assert session.subscribe([ticker_feed("solusd")]) == []  # nothing new, no request


def test_feeds_asked_for_while_subscribing_follow_in_one_request_once_up() -> None:
    session = Session(settings(feeds=(ticker_feed("btcusd"),)), Secret(KEY))
    session.start(0.0)
    session.receive(OP_TEXT, frame(AUTH_OK), 0.0)
    assert session.subscribe([ticker_feed("ethusd")]) == []
    actions = session.receive(OP_TEXT, frame(SUB_OK), 0.1)
    assert of(actions, WentUp) and requests(actions) == [{"type": "subscribe", "feeds": ["ticker.sfox.ethusd"]}]


def test_a_sequence_that_is_no_number_is_said_on_data_and_control_messages() -> None:
    session = streaming(Session(settings(), Secret(KEY)))
    data = frame({"sequence": "7", "recipient": ACCOUNT_FEED, "payload": []})
    assert of(session.receive(OP_TEXT, data, 1.0), Ignored) == [
        Ignored("invalid entries or envelope fields (sequence, timestamp)")]
    control = frame({"type": "success", "sequence": "8", "action": "subscribe"})
    assert of(session.receive(OP_TEXT, control, 1.0), Ignored) == [
        Ignored("invalid fields (type, action or sequence) of a control message")]


def test_a_late_answer_to_the_first_subscribe_is_held_against_its_own_request() -> None:
    """It was checked against the last subscribe sent: the later feed, not in it, was taken as left out."""
    tickers = ["ticker.sfox.btcusd", "ticker.sfox.ethusd", "ticker.sfox.solusd"]
    session = Session(SessionSettings((), 20.0, 10.0, partial_subscribe=True), Secret("k" * 32))
    session.start(0.0)
    session.subscribe(tickers[:2])
    session.receive(OP_TEXT, json.dumps({"type": "success", "sequence": 1, "action": "authenticate"}).encode(), 0.1)
    session.tick(3.0)  # no answer within the grace: taken as subscribed
    session.subscribe(tickers[2:])
    late = {"type": "success", "sequence": 2, "action": "subscribe",
            "payload": {"action": "subscribe", "feeds": tickers[:2]}}
    actions = session.receive(OP_TEXT, json.dumps(late).encode(), 3.5)
    assert not [action for action in actions if isinstance(action, Ignored) and action.reason is not None]
    assert tickers[2] in session.subscribed
    answer = {"type": "success", "sequence": 3, "action": "subscribe",
              "payload": {"action": "subscribe", "feeds": tickers}}
    assert not [a for a in session.receive(OP_TEXT, json.dumps(answer).encode(), 4.0) if isinstance(a, Ignored)]
