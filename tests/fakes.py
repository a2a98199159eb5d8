"""Hostile peers for transport tests: raw-socket servers that send exactly the bytes a test scripts.

Each RawServer accepts connections on loopback in a thread and hands every one to the test's
handler, so a test controls segmentation, pacing and malformed bytes, which no real WebSocket or
HTTP server library would let it produce. Pacing waits on the server's stop event, so stopping
the server ends any handler at once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

Handler = Callable[[socket.socket, "RawServer"], None]


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.stop = threading.Event()
        self.accepted = 0
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, name="raw-server", daemon=True)

    def url(self, scheme: str = "ws", path: str = "/ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop.set()
        self._thread.join(5)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()
        assert not self._thread.is_alive() and not any(t.is_alive() for t in self._threads)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            try:
                self.handler(conn, self)
            except OSError:
                pass
            except BaseException as error:
                self.errors.append(error)

    def read_request(self, conn: socket.socket) -> bytes:
        """The request head, up to the blank line."""
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        self.requests.append(data)
        return data

    def trickle(self, conn: socket.socket, data: bytes, interval: float) -> None:
        """Send one byte every `interval` seconds, until done or the server stops."""
        for byte in iter_bytes(data):
            if self.stop.wait(interval):
                return
            conn.sendall(byte)


def iter_bytes(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 1] for i in range(len(data)))


def upgrade_reply(request: bytes, extra: bytes = b"") -> bytes:
    """A valid 101 reply to a WebSocket upgrade request."""
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n")


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server-to-client frame."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        head = struct.pack(">BB", first, len(payload))
    elif len(payload) < 2**16:
        head = struct.pack(">BBH", first, 126, len(payload))
    else:
        head = struct.pack(">BBQ", first, 127, len(payload))
    return head + payload
