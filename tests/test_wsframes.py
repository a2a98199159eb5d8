"""The frame reader over a real socket pair: framing, fragments, control frames, limits, timeouts."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
import websockets.frames
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.streams import StreamReader

from sfox_exporter.sfox.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    OP_TOO_BIG,
    ConnectionClosed,
    FrameReader,
    ProtocolError,
    client_frame,
)


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = False, rsv: int = 0) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes([first, mask_bit | length])
    elif length < 65536:
        header = bytes([first, mask_bit | 126]) + struct.pack(">H", length)
    else:
        header = bytes([first, mask_bit | 127]) + struct.pack(">Q", length)
    return header + (b"\0\0\0\0" if masked else b"") + payload


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(2)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_small_medium_and_large_frames(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    reader = FrameReader(ours)
    messages = [b"x" * 5, b"y" * 300, b"z" * 70000]
    for payload in messages:
        theirs.sendall(frame(OP_TEXT, payload))
    assert [reader.read() for _ in messages] == [(OP_TEXT, m) for m in messages]


def test_many_frames_in_one_read(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"".join(frame(OP_TEXT, str(i).encode()) for i in range(500)))
    reader = FrameReader(ours)
    assert [bytes(reader.read()[1]) for _ in range(500)] == [str(i).encode() for i in range(500)]


def test_fragmented_message_with_interleaved_ping(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(frame(OP_BINARY, b"ab", fin=False) + frame(OP_PING, b"hi")
                   + frame(OP_CONTINUATION, b"cd", fin=False) + frame(OP_CONTINUATION, b"ef"))
    reader = FrameReader(ours)
    assert reader.read() == (OP_PING, b"hi")
    assert reader.read() == (OP_BINARY, b"abcdef")


def test_control_frames(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(frame(OP_PONG, b"p") + frame(OP_CLOSE, struct.pack(">H", 1001) + b"bye"))
    reader = FrameReader(ours)
    assert reader.read() == (OP_PONG, b"p")
    assert reader.read() == (OP_CLOSE, struct.pack(">H", 1001) + b"bye")


def test_timeout_in_the_middle_of_a_frame_loses_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    ours.settimeout(0.05)
    whole = frame(OP_TEXT, b"q" * 1000)
    reader = FrameReader(ours)
    theirs.sendall(whole[:3])
    with pytest.raises(TimeoutError):
        reader.read()
    theirs.sendall(whole[3:500])
    with pytest.raises(TimeoutError):
        reader.read()
    theirs.sendall(whole[500:])
    assert reader.read() == (OP_TEXT, b"q" * 1000)


def test_oversized_message_is_skipped_and_the_next_one_read(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    reader = FrameReader(ours, max_message_bytes=1000)
    theirs.sendall(frame(OP_TEXT, b"a" * 5000) + frame(OP_TEXT, b"next"))
    assert reader.read() == (OP_TOO_BIG, b"")
    assert reader.read() == (OP_TEXT, b"next")


def test_oversized_fragmented_message_is_skipped(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    reader = FrameReader(ours, max_message_bytes=1000)
    theirs.sendall(frame(OP_TEXT, b"a" * 600, fin=False) + frame(OP_CONTINUATION, b"b" * 600, fin=False)
                   + frame(OP_PING, b"") + frame(OP_CONTINUATION, b"c" * 600) + frame(OP_TEXT, b"after"))
    assert reader.read() == (OP_PING, b"")
    assert reader.read() == (OP_TOO_BIG, b"")
    assert reader.read() == (OP_TEXT, b"after")


def test_a_hostile_length_does_not_allocate_it(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    reader = FrameReader(ours, max_message_bytes=1000)
    theirs.sendall(bytes([0x81, 127]) + struct.pack(">Q", 2**62) + b"x" * 100)
    assert reader.read() == (OP_TOO_BIG, b"")
    theirs.close()
    with pytest.raises(ConnectionClosed):
        reader.read()


@pytest.mark.parametrize(
    "data",
    [
        frame(OP_TEXT, b"x", masked=True),
        frame(OP_TEXT, b"x", rsv=0x40),
        frame(0x3, b"x"),
        frame(OP_PING, b"x" * 126),
        frame(OP_PING, b"x", fin=False),
        frame(OP_CONTINUATION, b"x"),
        frame(OP_TEXT, b"x", fin=False) + frame(OP_TEXT, b"y"),
    ],
    ids=["masked", "reserved bit", "reserved opcode", "long ping", "fragmented ping",
         "stray continuation", "new message inside fragments"],
)
def test_protocol_violations(pair: tuple[socket.socket, socket.socket], data: bytes) -> None:
    ours, theirs = pair
    theirs.sendall(data + frame(OP_TEXT, b"after"))
    reader = FrameReader(ours)
    with pytest.raises(ProtocolError):
        reader.read()
    # The connection has failed: a good frame behind the bad one is not read as if nothing happened
    # (the feed reads buffered frames in batches, and would have lost the error).
    with pytest.raises(ProtocolError):
        reader.read()


def test_eof_is_connection_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(frame(OP_TEXT, b"last")[:4])
    theirs.close()
    with pytest.raises(ConnectionClosed):
        FrameReader(ours).read()


def _parsed_by_websockets(data: bytes) -> websockets.frames.Frame:
    """The frame as the websockets library's server side reads it: a second, independent reading."""
    stream = StreamReader()
    stream.feed_data(data)
    stream.feed_eof()
    parser = websockets.frames.Frame.parse(stream.read_exact, mask=True)
    with pytest.raises(StopIteration) as done:
        next(parser)
    parsed: websockets.frames.Frame = done.value.value
    assert stream.at_eof()  # nothing left over: the length fields were right
    return parsed


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([OP_TEXT, OP_BINARY]), st.one_of(
    st.binary(max_size=300), st.integers(65530, 65540).map(lambda n: b"x" * n), st.just(b"y" * 70000)))
def test_what_we_send_is_masked_and_reads_back(opcode: int, payload: bytes) -> None:
    data = client_frame(opcode, payload)
    parsed = _parsed_by_websockets(data)
    assert (parsed.opcode.value, parsed.data, parsed.fin) == (opcode, payload, True)
    assert data[1] & 0x80  # the mask bit: a server must refuse an unmasked client frame


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frames_we_send(opcode: int) -> None:
    payload = struct.pack(">H", 1000) if opcode == OP_CLOSE else b"ping-1"
    parsed = _parsed_by_websockets(client_frame(opcode, payload))
    assert (parsed.opcode.value, parsed.data) == (opcode, payload)


def test_each_frame_has_its_own_mask() -> None:
    keys = {client_frame(OP_TEXT, b"same")[2:6] for _ in range(32)}
    assert len(keys) > 1
    assert client_frame(OP_TEXT, b"abcd", mask=b"\x01\x02\x03\x04") == b"\x81\x84\x01\x02\x03\x04" + bytes(
        a ^ b for a, b in zip(b"abcd", b"\x01\x02\x03\x04", strict=True))
