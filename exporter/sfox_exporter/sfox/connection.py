"""One WebSocket connection to sFOX, as the feed thread uses it.

websocket-client opens it (DNS, proxy from the environment, TLS with certificate checks, the HTTP
upgrade) and sends on it; wsframes.FrameReader receives. The feed thread depends only on the
Connection protocol, so tests can hand it any stand-in.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from typing import Protocol

import websocket

from sfox_exporter.sfox.frames import DEFAULT_MAX_MESSAGE_BYTES, FrameReader


class HandshakeRefused(Exception):
    """sFOX answered the WebSocket upgrade with an HTTP error, 429 when it blocks an IP."""

    def __init__(self, status: int, retry_after: str | None) -> None:
        super().__init__(f"HTTP {status} on the WebSocket handshake")
        self.status = status
        self.retry_after = retry_after


class Connection(Protocol):
    def send_text(self, text: str) -> None: ...

    def ping(self, payload: bytes) -> None: ...

    def pong(self, payload: bytes) -> None: ...

    def receive(self, deadline: float) -> tuple[int, bytes] | None:
        """The next message or control frame, or None once time.monotonic() reaches `deadline`."""

    @property
    def receiving_since(self) -> float | None:
        """When (time.monotonic()) the message now half-received began to arrive; None between messages."""

    def close(self) -> None: ...

    def abort(self) -> None:
        """Wake a blocked receive from another thread by shutting the socket down."""


Connector = Callable[[str, float], Connection]


class WebSocketConnection:
    def __init__(self, url: str, timeout: float, user_agent: str,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        try:
            self._ws = websocket.create_connection(
                url,
                timeout=timeout,
                header=[f"User-Agent: {user_agent}"],
                # Frames are read by FrameReader, and JSON decoding checks UTF-8 in C anyway.
                skip_utf8_validation=True,
                enable_multithread=True,
                sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            )
        except websocket.WebSocketBadStatusException as error:
            headers = {str(k).lower(): str(v) for k, v in (error.resp_headers or {}).items()}
            raise HandshakeRefused(error.status_code, headers.get("retry-after")) from None
        sock = self._ws.sock
        assert sock is not None
        self._sock: socket.socket = sock
        self._reader = FrameReader(self._sock, max_message_bytes)
        self._timeout: float | None = None

    def send_text(self, text: str) -> None:
        self._ws.send(text)

    def ping(self, payload: bytes) -> None:
        self._ws.ping(payload)

    def pong(self, payload: bytes) -> None:
        self._ws.pong(payload)

    def receive(self, deadline: float) -> tuple[int, bytes] | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        # settimeout costs two system calls per message under a flood; a timeout up to 50 ms
        # longer than asked does no harm to deadlines measured in seconds.
        if self._timeout is None or abs(self._timeout - remaining) > 0.05:
            self._sock.settimeout(remaining)
            self._timeout = remaining
        try:
            return self._reader.read()
        except TimeoutError:
            return None

    @property
    def receiving_since(self) -> float | None:
        return None

    def close(self) -> None:
        # Best effort: the socket may already be gone.
        with contextlib.suppress(OSError, websocket.WebSocketException):
            self._ws.send_close(websocket.STATUS_NORMAL)
        self._sock.close()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


def websocket_connector(user_agent: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Connector:
    def connect(url: str, timeout: float) -> Connection:
        return WebSocketConnection(url, timeout, user_agent, max_message_bytes)

    return connect
