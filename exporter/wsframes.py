"""Read WebSocket frames from a connected socket (RFC 6455, server to client).

websocket-client does the connecting, TLS, proxying, the opening handshake and all sending; this
reader replaces its receive path for three reasons:
- one recv() brings many frames into a buffer, where websocket-client makes two or three system
  calls per frame and validates UTF-8 in pure Python;
- a message bigger than the limit is skipped as it streams past instead of being buffered whole,
  so a hostile length field cannot exhaust memory or end the connection;
- a socket timeout in the middle of a frame loses nothing, so the caller can wake up for pings.
"""

from __future__ import annotations

import socket

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
# Not a WebSocket opcode: reported in place of a message that exceeded the size limit.
OP_TOO_BIG = -1

DEFAULT_MAX_MESSAGE_BYTES = 16 * 2**20
RECV_CHUNK = 256 * 1024


class ProtocolError(Exception):
    """The server broke RFC 6455; the connection cannot be trusted any further."""


class ConnectionClosed(Exception):
    """The server closed the TCP connection."""


class FrameReader:
    def __init__(self, sock: socket.socket, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._sock = sock
        self._max = max_message_bytes
        self._buffer = bytearray()
        self._position = 0
        self._fragments: list[bytes | bytearray] | None = None
        self._fragment_opcode = 0
        self._fragment_size = 0
        self._skip_bytes = 0  # payload bytes of an oversized frame still to drop
        self._skipping_message = False  # dropping the remaining fragments of an oversized message

    def read(self) -> tuple[int, bytes | bytearray]:
        """The next complete data message, or the next control frame, as (opcode, payload).

        Blocks for as long as the socket's timeout allows; raises TimeoutError when it runs out,
        keeping any partial frame for the next call.
        """
        while True:
            message = self._next_message()
            if message is not None:
                return message
            self._fill()

    def _fill(self) -> None:
        if self._position:
            if self._position == len(self._buffer):
                self._buffer.clear()
                self._position = 0
            elif self._position > RECV_CHUNK:
                del self._buffer[: self._position]
                self._position = 0
        data = self._sock.recv(RECV_CHUNK)
        if not data:
            raise ConnectionClosed("the server closed the connection")
        if self._skip_bytes:
            dropped = min(self._skip_bytes, len(data))
            self._skip_bytes -= dropped
            data = data[dropped:]
        self._buffer += data

    def _next_message(self) -> tuple[int, bytes | bytearray] | None:
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
                self._fragments.append(payload)
                self._fragment_size += len(payload)
                if fin:
                    data = b"".join(self._fragments)
                    self._fragments, self._fragment_size = None, 0
                    return self._fragment_opcode, data
        return None

    def _next_frame(self) -> tuple[bool, int, bytes | bytearray | None] | None:
        """(fin, opcode, payload) of the next whole frame in the buffer; payload None when the frame
        is being dropped for size."""
        buffer, start = self._buffer, self._position
        available = len(buffer) - start
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
        end = start + header + length
        if opcode < OP_CLOSE and (self._skipping_message or self._fragment_size + length > self._max):
            # Drop what is buffered now and the rest of the payload as it arrives.
            self._skip_bytes = max(0, end - len(buffer))
            self._position = min(end, len(buffer))
            return fin, opcode, None
        if len(buffer) < end:
            return None
        self._position = end
        return fin, opcode, buffer[start + header : end]
