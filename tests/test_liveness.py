"""Liveness end to end: a hostile sFOX that answers the handshake, then dribbles a message byte by
byte. Pings and the pong deadline must keep running while the reader is mid-frame, and a message
that takes longer than the ping timeout to arrive ends the connection: the feed goes down and says
why, instead of staying "up" for as long as the peer cares to dribble."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time
from collections.abc import Callable

import pytest

from sfox_exporter.app import Exporter
from sfox_exporter.sfox.frames import OP_PING, OP_PONG, OP_TEXT
from sfox_exporter.vocabulary import FeedStatus

from .conftest import make_config, wait_until
from .fakes import RawServer, frame, upgrade_reply

AUTH_OK = {"type": "success", "sequence": 1, "payload": {"action": "authenticate"}, "action": "authenticate"}
SUB_OK = {"type": "success", "sequence": 2, "payload": {"action": "subscribe"}, "action": "subscribe"}
DRIBBLED = json.dumps({"sequence": 3, "recipient": "private.user.balances",
                       "payload": [{"currency": "btc", "balance": "1"}] * 50}).encode()


def failures_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The feed's "connection failed" lines, once there is one: the error is counted a moment before
    the line is logged, so a loaded machine can show the count first."""
    return wait_until(lambda: [record.getMessage() for record in caplog.records
                               if "feed connection failed" in record.getMessage()], timeout=5,
                      message="the connection failure logged")


def test_a_dribbled_message_takes_the_feed_down_within_the_ping_timeout(
        start_exporter: Callable[..., Exporter], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    up_at: list[float] = []

    def dribble(conn: socket.socket, server: RawServer) -> None:
        request = server.read_request(conn)
        conn.sendall(upgrade_reply(request) + frame(OP_TEXT, json.dumps(AUTH_OK).encode())
                     + frame(OP_TEXT, json.dumps(SUB_OK).encode()))
        up_at.append(time.monotonic())
        server.trickle(conn, frame(OP_TEXT, DRIBBLED), interval=0.1)  # ~100 s for the whole message

    with RawServer(dribble) as server:
        config = make_config(rest_snapshot=False, ping_interval_seconds=1.0, ping_timeout_seconds=1.0,
                             backoff_initial_seconds=30.0, backoff_max_seconds=30.0)
        config = dataclasses.replace(config, sfox=dataclasses.replace(config.sfox, ws_url=server.url()))
        exporter = start_exporter(config)
        wait_until(lambda: exporter.state.statuses()["main"] == FeedStatus.UP, message="the feed came up")
        wait_until(lambda: exporter.state.snapshot().accounts[0].errors["connection"] >= 1, timeout=15,
                   message="the dribbled message ended the connection")
        ended = time.monotonic()
        assert not exporter.state.snapshot().accounts[0].up
        # Whichever comes first ends it: the pong this peer cannot send mid-frame (pings went out on
        # time), or the message itself taking longer than the ping timeout. Either is ~1-2 s.
        assert ended - up_at[0] < 6.0
        reasons = failures_logged(caplog)
        assert "no pong within 1s" in reasons[0] or "took longer than 1s to arrive" in reasons[0]
        assert server.accepted == 1  # and it backs off rather than reconnecting at once


@pytest.mark.parametrize("control", [OP_PING, OP_PONG])
def test_control_frames_do_not_hold_an_unfinished_message_open(
        start_exporter: Callable[..., Exporter], caplog: pytest.LogCaptureFixture, control: int) -> None:
    caplog.set_level(logging.WARNING)
    up_at: list[float] = []

    def stall(conn: socket.socket, server: RawServer) -> None:
        request = server.read_request(conn)
        conn.sendall(upgrade_reply(request) + frame(OP_TEXT, json.dumps(AUTH_OK).encode())
                     + frame(OP_TEXT, json.dumps(SUB_OK).encode())
                     + frame(OP_TEXT, DRIBBLED[:20], fin=False))  # the first fragment; no other comes
        up_at.append(time.monotonic())
        while not server.stop.wait(0.2):  # but a ping or pong every 0.2 s, each a whole frame
            conn.sendall(frame(control, b"x"))

    with RawServer(stall) as server:
        # Pings far apart, so that only the stalled message can end the connection in time.
        config = make_config(rest_snapshot=False, ping_interval_seconds=30.0, ping_timeout_seconds=1.0,
                             backoff_initial_seconds=30.0, backoff_max_seconds=30.0)
        config = dataclasses.replace(config, sfox=dataclasses.replace(config.sfox, ws_url=server.url()))
        exporter = start_exporter(config)
        wait_until(lambda: exporter.state.snapshot().accounts[0].errors["connection"] >= 1, timeout=15,
                   message="the stalled message ended the connection")
        assert time.monotonic() - up_at[0] < 3.0  # at the ping timeout, not at the next ping (30 s)
        assert "took longer than 1s to arrive" in failures_logged(caplog)[0]


def test_good_frames_ahead_of_a_bad_one_in_the_same_segment_are_all_applied(
        start_exporter: Callable[..., Exporter]) -> None:
    """The feed takes frames already buffered in batches: a frame that breaks the protocol (here a
    reserved opcode) behind good ones must not cost the good ones, only the connection after them."""

    def balances(sequence: int, currency: str) -> bytes:
        return frame(OP_TEXT, json.dumps({"sequence": sequence, "recipient": "private.user.balances",
                                          "payload": [{"currency": currency, "balance": "2"}]}).encode())

    def then_garbage(conn: socket.socket, server: RawServer) -> None:
        request = server.read_request(conn)
        conn.sendall(upgrade_reply(request) + frame(OP_TEXT, json.dumps(AUTH_OK).encode())
                     + frame(OP_TEXT, json.dumps(SUB_OK).encode())
                     + balances(3, "btc") + balances(4, "eth") + frame(0x3, b"reserved"))
        server.stop.wait(10)

    with RawServer(then_garbage) as server:
        config = make_config(rest_snapshot=False, backoff_initial_seconds=30.0, backoff_max_seconds=30.0)
        config = dataclasses.replace(config, sfox=dataclasses.replace(config.sfox, ws_url=server.url()))
        exporter = start_exporter(config)
        wait_until(lambda: exporter.state.snapshot().accounts[0].errors["connection"] >= 1, timeout=10,
                   message="the reserved opcode ended the connection")
        view = exporter.state.snapshot().accounts[0]
        assert {currency: entry.balance for currency, entry in view.balances.items()} == {"btc": 2.0, "eth": 2.0}
        assert view.messages["balances"] == 2 and view.messages["control"] == 2
