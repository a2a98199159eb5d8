"""One WebSocket connection to sFOX, as the feed thread uses it.

sfox.handshake opens it (proxy from the environment, TLS with certificate checks, the HTTP
upgrade, all under one deadline, redirects refused); frames.client_frame frames what we send;
frames.FrameReader receives. The feed thread depends only on the Connection protocol,
so tests can hand it any stand-in.

receive() keeps to its deadline even while a frame trickles in, so pings and the pong deadline
run on time; receiving_since tells the session how long the message now arriving has taken, so it
can end a connection whose frame takes longer than the ping timeout.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sfox_exporter.sfox.frames import (
    DEFAULT_MAX_MESSAGE_BYTES,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    client_frame,
)
from sfox_exporter.sfox.handshake import HandshakeError, HandshakeRefused, open_websocket

__all__ = ["Connection", "Connector", "HandshakeError", "HandshakeRefused", "WebSocketConnection",
           "websocket_connector"]


class Connection(Protocol):
    def send_text(self, text: str) -> None: ...

    def ping(self, payload: bytes) -> None: ...

    def pong(self, payload: bytes) -> None: ...

    def receive(self, deadline: float) -> tuple[int, bytes] | None:
        """The next message or control frame, or None once time.monotonic() reaches `deadline`,
        even in the middle of a frame (the partial data is kept for the next call)."""

    @property
    def receiving_since(self) -> float | None:
        """When (monotonic) the message now arriving started, None when nothing partial is buffered."""

    def close(self) -> None: ...

    def abort(self) -> None:
        """Wake a blocked receive from another thread by shutting the socket down."""


Connector = Callable[[str, float], Connection]
CLOSE_NORMAL = 1000  # RFC 6455 7.4.1


class WebSocketConnection:
    def __init__(self, url: str, timeout: float, user_agent: str,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, *,
                 tls: ssl.SSLContext | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        opened = open_websocket(url, time.monotonic() + timeout, user_agent, tls)
        self._sock: socket.socket = opened.sock
        self._reader = FrameReader(self._sock, max_message_bytes, initial=opened.leftover)
        self._send_lock = threading.Lock()
        self._timeout: float | None = None
        self._since: float | None = clock() if opened.leftover else None

    @property
    def receiving_since(self) -> float | None:
        return self._since

    def _send(self, opcode: int, payload: bytes) -> None:
        frame = client_frame(opcode, payload)
        with self._send_lock:
            self._sock.sendall(frame)

    def send_text(self, text: str) -> None:
        self._send(OP_TEXT, text.encode())

    def ping(self, payload: bytes) -> None:
        self._send(OP_PING, payload)

    def pong(self, payload: bytes) -> None:
        self._send(OP_PONG, payload)

    def receive(self, deadline: float) -> tuple[int, bytes] | None:
        reader = self._reader
        while True:
            message = reader.next_buffered()
            if message is not None:
                # A control frame between the fragments of a message neither completes the message
                # nor restarts its clock: pings or pongs every second would otherwise hold a stalled
                # message open for ever. Anything else that completes does: what is left began now.
                if not (message[0] >= OP_CLOSE and reader.in_message and self._since is not None):
                    self._since = self._clock() if reader.partial else None
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # settimeout costs two system calls per message under a flood; a timeout up to 50 ms
            # longer than asked does no harm to deadlines measured in seconds.
            if self._timeout is None or abs(self._timeout - remaining) > 0.05:
                self._sock.settimeout(remaining)
                self._timeout = remaining
            try:
                reader.fill()
            except TimeoutError:
                return None
            finally:
                if self._since is None and reader.partial:
                    self._since = self._clock()

    def close(self) -> None:
        # Best effort: the socket may already be gone.
        with contextlib.suppress(OSError, ValueError):
            self._sock.settimeout(1.0)
            self._send(OP_CLOSE, struct.pack(">H", CLOSE_NORMAL))
        self._sock.close()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


def websocket_connector(user_agent: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                        tls: ssl.SSLContext | None = None) -> Connector:
    def connect(url: str, timeout: float) -> Connection:
        return WebSocketConnection(url, timeout, user_agent, max_message_bytes, tls=tls)

    return connect
