"""The WebSocket transport against hostile raw-socket servers: redirects, handshake bounds,
segmentation, fragments and trickled frames."""

from __future__ import annotations

import socket
import time

import pytest

from sfox_exporter.sfox.connection import HandshakeError, HandshakeRefused, WebSocketConnection
from sfox_exporter.sfox.frames import (
    MAX_FRAGMENTS,
    OP_BINARY,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    OP_TOO_BIG,
    FrameReader,
)
from sfox_exporter.sfox.handshake import MAX_HEAD_BYTES

from .fakes import RawServer, frame, upgrade_reply


def connect(server: RawServer, timeout: float = 5.0) -> WebSocketConnection:
    return WebSocketConnection(server.url(), timeout, "test-agent")


def test_a_redirect_is_refused_and_never_followed() -> None:
    def elsewhere(conn: socket.socket, server: RawServer) -> None:
        request = server.read_request(conn)
        conn.sendall(upgrade_reply(request))

    with RawServer(elsewhere) as target:
        def redirect(conn: socket.socket, server: RawServer) -> None:
            server.read_request(conn)
            conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {target.url()}\r\nContent-Length: 0\r\n\r\n".encode())

        with RawServer(redirect) as origin, pytest.raises(HandshakeRefused) as refused:
            connect(origin)
        assert refused.value.status == 302
        assert "redirects are refused" in str(refused.value)
        assert target.accepted == 0


def test_a_429_carries_retry_after() -> None:
    def blocked(conn: socket.socket, server: RawServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n\r\n")

    with RawServer(blocked) as server, pytest.raises(HandshakeRefused) as refused:
        connect(server)
    assert (refused.value.status, refused.value.retry_after) == (429, "7")


def test_an_endless_header_line_is_cut_at_the_head_cap() -> None:
    sent = [0]

    def endless(conn: socket.socket, server: RawServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nX-Endless: ")
        while not server.stop.is_set():
            sent[0] += conn.send(b"a" * 65536)

    with RawServer(endless) as server:
        started = time.monotonic()
        with pytest.raises(HandshakeError, match=f"exceeds {MAX_HEAD_BYTES} bytes"):
            connect(server, timeout=30)
        assert time.monotonic() - started < 10


def test_a_trickled_reply_fails_at_the_connect_deadline() -> None:
    def trickle(conn: socket.socket, server: RawServer) -> None:
        request = server.read_request(conn)
        server.trickle(conn, upgrade_reply(request), interval=2.0)

    with RawServer(trickle) as server:
        started = time.monotonic()
        with pytest.raises(HandshakeError, match="within the connect timeout"):
            connect(server, timeout=3.0)
        elapsed = time.monotonic() - started
    assert 2.9 <= elapsed < 6.0


def test_the_first_frame_in_the_same_segment_as_the_101_is_not_lost() -> None:
    def eager(conn: socket.socket, server: RawServer) -> None:
        request = server.read_request(conn)
        conn.sendall(upgrade_reply(request) + frame(OP_TEXT, b'{"first": 1}') + frame(OP_TEXT, b'{"second": 2}'))
        server.stop.wait(5)

    with RawServer(eager) as server:
        connection = connect(server)
        try:
            deadline = time.monotonic() + 5
            assert connection.receive(deadline) == (OP_TEXT, b'{"first": 1}')
            assert connection.receive(deadline) == (OP_TEXT, b'{"second": 2}')
            assert connection.receiving_since is None
        finally:
            connection.close()


def test_a_bad_accept_header_is_refused() -> None:
    def wrong(conn: socket.socket, server: RawServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBvbmU=\r\n\r\n")

    with RawServer(wrong) as server, pytest.raises(HandshakeError, match="Sec-WebSocket-Accept"):
        connect(server)


def test_a_status_of_four_digits_is_no_101() -> None:
    def long_status(conn: socket.socket, server: RawServer) -> None:
        request = server.read_request(conn)
        conn.sendall(upgrade_reply(request).replace(b"HTTP/1.1 101 ", b"HTTP/1.1 1019 ", 1))

    with RawServer(long_status) as server, pytest.raises(HandshakeError, match=r"not HTTP/1\.x"):
        connect(server)


def test_receive_keeps_its_deadline_while_a_frame_trickles_in() -> None:
    payload = b'{"type": "success", "payload": "abcdefgh"}'

    def dribble(conn: socket.socket, server: RawServer) -> None:
        request = server.read_request(conn)
        conn.sendall(upgrade_reply(request))
        server.trickle(conn, frame(OP_TEXT, payload), interval=0.2)
        server.stop.wait(5)

    with RawServer(dribble) as server:
        connection = connect(server)
        try:
            timeouts, since_values = 0, set()
            message = None
            give_up = time.monotonic() + 30
            while message is None and time.monotonic() < give_up:
                asked = time.monotonic() + 0.5
                message = connection.receive(asked)
                if message is None:
                    returned = time.monotonic()
                    assert returned - asked < 0.4  # on time, not at the end of the frame
                    timeouts += 1
                    if connection.receiving_since is not None:
                        since_values.add(connection.receiving_since)
            assert message == (OP_TEXT, payload)
            assert timeouts >= 10
            assert len(since_values) == 1  # the same partial message all along
            assert connection.receiving_since is None
        finally:
            connection.close()


def _reader_for(data: bytes, max_message_bytes: int = 2**20) -> tuple[FrameReader, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.sendall(data)
    theirs.close()
    ours.settimeout(5)
    return FrameReader(ours, max_message_bytes), ours


def test_endless_empty_continuation_frames_are_dropped_not_buffered() -> None:
    data = frame(OP_TEXT, b"x", fin=False) + frame(OP_CONTINUATION, b"", fin=False) * (MAX_FRAGMENTS + 100)
    data += frame(OP_CONTINUATION, b"", fin=True) + frame(OP_TEXT, b"next")
    reader, sock = _reader_for(data)
    with sock:
        assert reader.read() == (OP_TOO_BIG, b"")
        assert reader.read() == (OP_TEXT, b"next")


def test_a_message_in_many_fragments_is_assembled_up_to_the_fragment_cap() -> None:
    parts = [bytes([65 + i % 26]) for i in range(1000)]
    data = frame(OP_BINARY, parts[0], fin=False)
    data += b"".join(frame(OP_CONTINUATION, part, fin=False) for part in parts[1:-1])
    data += frame(OP_CONTINUATION, parts[-1], fin=True)
    data += frame(OP_TEXT, b"a", fin=False) + frame(OP_CONTINUATION, b"b", fin=False) * MAX_FRAGMENTS
    data += frame(OP_CONTINUATION, b"c") + frame(OP_TEXT, b"after")
    reader, sock = _reader_for(data)
    with sock:
        assert reader.read() == (OP_BINARY, b"".join(parts))
        assert reader.read() == (OP_TOO_BIG, b"")
        assert reader.read() == (OP_TEXT, b"after")


def test_the_clock_of_a_message_runs_from_its_first_fragment_to_its_last() -> None:
    """Control frames between fragments keep the message's clock running; a control frame that
    arrives in pieces stops its own clock once whole."""
    first, rest = frame(OP_PONG, b"pong")[:1], frame(OP_PONG, b"pong")[1:]

    def script(conn: socket.socket, server: RawServer) -> None:
        request = server.read_request(conn)
        conn.sendall(upgrade_reply(request) + first)  # a pong cut in two segments
        if server.stop.wait(0.3):
            return
        conn.sendall(rest + frame(OP_TEXT, b'{"a":', fin=False) + frame(OP_PING, b"1"))
        if server.stop.wait(0.3):
            return
        conn.sendall(frame(OP_PING, b"2") + frame(OP_CONTINUATION, b"1}"))
        server.stop.wait(5)

    with RawServer(script) as server:
        connection = connect(server)
        try:
            assert connection.receive(time.monotonic() + 0.1) is None
            cut = connection.receiving_since
            assert cut is not None
            assert connection.receive(time.monotonic() + 5) == (OP_PONG, b"pong")
            began = connection.receiving_since
            assert began is not None and began > cut  # the pong's own clock stopped with it
            assert connection.receive(time.monotonic() + 5) == (OP_PING, b"1")
            assert connection.receive(time.monotonic() + 5) == (OP_PING, b"2")
            assert connection.receiving_since == began  # still the message begun before both pings
            assert connection.receive(time.monotonic() + 5) == (OP_TEXT, b'{"a":1}')
            assert connection.receiving_since is None
        finally:
            connection.close()
