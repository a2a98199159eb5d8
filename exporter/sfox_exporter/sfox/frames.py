"""WebSocket frames (RFC 6455): reading what the server sends, and framing the few we send.

sfox.handshake opens the connection; this reader replaces a library's receive path for three reasons:
- one recv() brings many frames into a buffer, where websocket-client makes two or three system
  calls per frame and validates UTF-8 in pure Python;
- a message bigger than the limit is skipped as it streams past instead of being buffered whole,
  so a hostile length field cannot exhaust memory or end the connection;
- a socket timeout in the middle of a frame loses nothing, so the caller can wake up for pings.

Fragmented messages are bounded twice: by the message cap (their assembled size) and by
MAX_FRAGMENTS, since a zero-length continuation frame adds to neither size nor cap yet costs a
Python object each (endless empty fragments, or a message in 1-byte fragments, would otherwise
grow memory without bound). Assembly is one join, O(n).

The handshake (sfox.handshake) hands over whatever bytes arrived after the 101 reply head as
`initial`, so a first frame that shares a TCP segment with the reply is never lost.

client_frame frames what we send: authenticate, subscribe, pings, pongs, close. It is ours for a
measured win: websocket-client, which did it before, costs 2.1 MB of resident memory for these few
lines (README, "Performance"), and wsproto 2.7 MB.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
# Not a WebSocket opcode: reported in place of a message that exceeded the size limit.
OP_TOO_BIG = -1

# Decoding a message costs 8.6 to 20 bytes of RSS per byte (benchmarks/memory.py), one large message
# at a time (sfox/intake.py), plus up to 2 bytes per byte of receive buffer per connection: at 1 MiB,
# ten connections flooded at the cap peak under the manifests' 128 Mi (README, "Bounds on every
# input"). sFOX's messages are a few KiB; a hundred currencies are ~25 KB.
DEFAULT_MAX_MESSAGE_BYTES = 2**20
# A message in more fragments than this is dropped like an oversized one; sFOX does not fragment.
MAX_FRAGMENTS = 16384  # a 1 MiB message in 64-byte pieces; the list of pieces stays under 1 MiB
RECV_CHUNK = 64 * 1024  # a syscall per ~14 spaced 20-currency messages
BUFFER_BYTES = 2 * RECV_CHUNK


def client_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final, unfragmented frame from client to server: masked, as RFC 6455 5.3 requires, with
    a fresh random key (os.urandom) unless the test gives one."""
    key = os.urandom(4) if mask is None else mask
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    # XOR as one big integer: C speed, where a loop over the bytes would run in Python.
    keystream = (key * (length // 4 + 1))[:length]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")
    return header + key + masked.to_bytes(length, "big")


class ProtocolError(Exception):
    """The server broke RFC 6455; the connection cannot be trusted any further."""


class ConnectionClosed(Exception):
    """The server closed the TCP connection."""


def _zeroed(size: int) -> mmap.mmap:
    """A buffer whose pages take memory only once written: an anonymous mapping, where a bytearray
    would write every page when it zeroes them. Reading starts again at the front whenever the
    buffer is drained, so a connection holds what its bursts need: a few KiB for the ticker feeds,
    not 128 KiB each."""
    return mmap.mmap(-1, size)


class FrameReader:
    """Frames are received straight into one reusable buffer (recv_into, no copy per chunk); each
    message leaves it as an immutable bytes object, its only copy."""

    def __init__(self, sock: socket.socket, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 initial: bytes = b"", max_fragments: int = MAX_FRAGMENTS) -> None:
        self._sock = sock
        self._max = max_message_bytes
        self._max_fragments = max_fragments
        self._buffer = _zeroed(max(BUFFER_BYTES, len(initial) + RECV_CHUNK))
        self._view = memoryview(self._buffer)
        self._buffer[: len(initial)] = initial
        self._start = 0  # first byte not yet read
        self._end = len(initial)  # one past the last byte received
        self._fragments: list[bytes] | None = None
        self._fragment_opcode = 0
        self._fragment_size = 0
        self._skip_bytes = 0  # payload bytes of an oversized frame still to drop
        self._skipping_message = False  # dropping the remaining fragments of an oversized message
        self._broken: ProtocolError | None = None

    def read(self) -> tuple[int, bytes]:
        """The next complete data message, or the next control frame, as (opcode, payload).

        Blocks for as long as the socket's timeout allows; raises TimeoutError when it runs out,
        keeping any partial frame for the next call.
        """
        while True:
            message = self.next_buffered()
            if message is not None:
                return message
            self.fill()

    @property
    def partial(self) -> bool:
        """True while part of a frame or message is buffered or being skipped."""
        return self._start != self._end or bool(self._skip_bytes) or self.in_message

    @property
    def in_message(self) -> bool:
        """True between the first and the last fragment of a data message."""
        return self._fragments is not None or self._skipping_message

    def next_buffered(self) -> tuple[int, bytes] | None:
        """The next message or control frame from the bytes already received, without blocking.

        A protocol error fails the connection (RFC 6455 7.1.7): raised again by every later call,
        since the frame that broke the rules may already be behind the reader."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._next_message()
        except ProtocolError as error:
            self._broken = error
            raise

    def fill(self) -> None:
        """One recv() into the buffer: blocks for as long as the socket's timeout allows."""
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._buffer) > BUFFER_BYTES:  # a big message has passed: give the memory back
                self._resize(BUFFER_BYTES)
        if len(self._buffer) - self._end < RECV_CHUNK:
            self._make_room()
        count = self._sock.recv_into(self._view[self._end :], RECV_CHUNK)
        if not count:
            raise ConnectionClosed("the server closed the connection")
        if self._skip_bytes:  # everything before was consumed, so these bytes are the ones to drop
            dropped = min(self._skip_bytes, count)
            self._skip_bytes -= dropped
            self._start += dropped
        self._end += count

    def _make_room(self) -> None:
        unread = self._end - self._start
        if self._start:
            self._buffer[:unread] = self._view[self._start : self._end]
            self._start, self._end = 0, unread
        if len(self._buffer) - self._end < RECV_CHUNK:  # a frame bigger than the buffer: grow it
            self._resize(max(2 * len(self._buffer), unread + RECV_CHUNK))

    def _resize(self, size: int) -> None:
        unread = self._end - self._start
        grown = _zeroed(size)
        grown[:unread] = self._view[self._start : self._end]
        self._view.release()
        self._buffer, self._view = grown, memoryview(grown)
        self._start, self._end = 0, unread

    def _next_message(self) -> tuple[int, bytes] | None:
        while not self._skip_bytes:
            frame = self._next_frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode >= OP_CLOSE:
                return opcode, payload or b""
            in_message = self._fragments is not None or self._skipping_message
            if (opcode == OP_CONTINUATION) != in_message:
                raise ProtocolError("continuation frames out of order")
            if payload is None or self._skipping_message:  # dropped for size
                self._fragments, self._fragment_size = None, 0
                self._skipping_message = not fin
                if fin:
                    return OP_TOO_BIG, b""
            elif opcode != OP_CONTINUATION and fin:
                return opcode, payload
            elif opcode != OP_CONTINUATION:
                self._fragments, self._fragment_opcode, self._fragment_size = [payload], opcode, len(payload)
            else:
                assert self._fragments is not None
                if len(self._fragments) >= self._max_fragments:  # drop the message, as one too big
                    self._fragments, self._fragment_size = None, 0
                    self._skipping_message = not fin
                    if fin:
                        return OP_TOO_BIG, b""
                    continue
                self._fragments.append(payload)
                self._fragment_size += len(payload)
                if fin:
                    data = b"".join(self._fragments)
                    self._fragments, self._fragment_size = None, 0
                    return self._fragment_opcode, data
        return None

    def _next_frame(self) -> tuple[bool, int, bytes | None] | None:
        """(fin, opcode, payload) of the next whole frame in the buffer; payload None when the frame
        is being dropped for size."""
        buffer, start, end = self._buffer, self._start, self._end
        available = end - start
        if available < 2:
            return None
        first, second = buffer[start], buffer[start + 1]
        if first & 0x70:
            raise ProtocolError("reserved bits set, but no extension was negotiated")
        if second & 0x80:
            raise ProtocolError("the server masked a frame")
        fin, opcode, length, header = bool(first & 0x80), first & 0x0F, second & 0x7F, 2
        if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise ProtocolError(f"reserved opcode {opcode:#x}")
        if length == 126:
            if available < 4:
                return None
            length, header = int.from_bytes(buffer[start + 2 : start + 4], "big"), 4
        elif length == 127:
            if available < 10:
                return None
            length, header = int.from_bytes(buffer[start + 2 : start + 10], "big"), 10
            if length >> 63:
                raise ProtocolError("frame length out of range")
        if opcode >= OP_CLOSE and (length > 125 or not fin):
            raise ProtocolError("control frame too long or fragmented")
        frame_end = start + header + length
        if opcode < OP_CLOSE and (self._skipping_message or self._fragment_size + length > self._max):
            # Drop what is buffered now and the rest of the payload as it arrives.
            self._skip_bytes = max(0, frame_end - end)
            self._start = min(frame_end, end)
            return fin, opcode, None
        if end < frame_end:
            return None
        self._start = frame_end
        return fin, opcode, bytes(self._view[start + header : frame_end])
