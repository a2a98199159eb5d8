"""The simulator's hooks for tests: faults to inject (drops, half-open sockets, refusals, skipped
sequence numbers, REST failures, raw frames, floods) and what it saw. Every hook is thread-safe.

A mixin of Simulator, kept apart so that the protocol in server.py reads in one sitting.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .ledger import Ledger
from .records import Observations, RestFailure, RestRequest, SimConnection, WsRequest

BALANCES_FEED = "private.user.balances"
FLOOD_BATCH = 256
FLOOD_BUFFER_BYTES = 4 * 2**20
T = TypeVar("T")


class SimulatorHooks:
    if TYPE_CHECKING:  # what Simulator provides
        _lock: threading.Lock
        _ledgers: dict[str, Ledger]
        _rejected_keys: set[str]
        _connections: list[SimConnection]
        _blocked_until: dict[str, float]
        _rest_failures: deque[RestFailure]
        observed: Observations

        def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 10) -> T: ...

        def _connections_matching(self, key: str | None) -> list[SimConnection]: ...

        async def _send(self, connection: SimConnection, timestamp: Any = None, **fields: Any) -> None: ...


    def block_ip(self, seconds: float, ip: str = "127.0.0.1") -> None:
        """Refuse WebSocket handshakes from this IP with HTTP 429, as sFOX does after a breach."""
        with self._lock:
            self._blocked_until[ip] = time.monotonic() + seconds

    def reject_auth(self, key: str, rejected: bool = True) -> None:
        """Answer `authenticate` for this key with sFOX's error shape (or stop doing so)."""
        with self._lock:
            (self._rejected_keys.add if rejected else self._rejected_keys.discard)(key)

    def drop_connections(self, key: str | None = None, *, abort: bool = True) -> int:
        """Cut connections: abort (no close frame, as a network fault) or close them cleanly."""

        async def drop() -> int:
            matching = self._connections_matching(key)
            for connection in matching:
                if abort:
                    connection.websocket.transport.abort()
                else:
                    await connection.websocket.close(1001, "going away")
            return len(matching)

        return self._call(drop())

    def half_open(self, key: str | None = None) -> int:
        """Leave connections open but dead: nothing is read, no ping is answered, nothing is sent."""

        async def mute() -> int:
            matching = self._connections_matching(key)
            for connection in matching:
                connection.muted = True
                connection.websocket.transport.pause_reading()
            return len(matching)

        return self._call(mute())

    def send_raw(self, data: str | bytes, key: str | None = None, *, binary: bool = False) -> int:
        """Send a frame as is, to subscribers: malformed JSON, invalid UTF-8 (as text), anything."""

        async def send() -> int:
            matching = [c for c in self._connections_matching(key) if c.subscribed and not c.muted]
            for connection in matching:
                connection.next_sequence()  # the frame has no sequence, but sFOX's counter moved on
                await connection.websocket.send(data, text=not binary)
            return len(matching)

        return self._call(send())

    def skip_sequence(self, count: int = 1, key: str | None = None) -> None:
        """Make the next message on each connection jump `count` sequence numbers (negative: back)."""

        async def skip() -> None:
            for connection in self._connections_matching(key):
                connection.sequence += count

        self._call(skip())

    def fail_rest(self, status: int, times: int = 1, retry_after: str | None = None, body: bytes = b"") -> None:
        """The next `times` REST calls answer `status` (429 with Retry-After, 500, 401, ...)."""
        with self._lock:
            for _ in range(times):
                self._rest_failures.append(RestFailure(status, retry_after, body or b'{"error":"simulated"}'))

    def push(self, key: str, payload: Any, *, recipient: str = BALANCES_FEED, timestamp: Any = None) -> int:
        """Send one data message with this payload to the key's subscribers, as sFOX would."""

        async def send() -> int:
            targets = [c for c in self._connections_matching(key) if c.subscribed and not c.muted]
            for connection in targets:
                await self._send(connection, recipient=recipient, payload=payload, timestamp=timestamp)
            return len(targets)

        return self._call(send())

    def set_balance(self, key: str, currency: str, **amounts: Any) -> dict[str, str]:
        """Change one holding and push it to the key's subscribers."""
        entry = self._ledgers[key].set(currency, **amounts)
        self.push(key, [entry])
        return entry

    def push_all(self, key: str) -> int:
        """Push every holding and every Web3 wallet of the key's account."""
        ledger = self._ledgers[key]
        sent = self.push(key, ledger.feed_entries())
        for wallet in ledger.web3_entries():
            self.push(key, wallet)
        return sent

    def flood(self, key: str, count: int, payload: Any | Callable[[int], str], recipient: str = BALANCES_FEED) -> None:
        """Send `count` data messages to the key's subscribers as fast as the socket takes them, with
        correct sequence numbers and timestamps; returns when all are written. `payload` is the same
        payload every time, or a function from the message's index to its payload as JSON text.

        The frames are built here and written to the transport in batches, bypassing websockets'
        per-message send, so that the flood outruns any receiver it is measured against.
        """
        fixed = None if callable(payload) else json.dumps(payload, separators=(",", ":"))
        prefix = '{"sequence":%d,"recipient":"' + recipient + '","timestamp":%d,"payload":'

        async def send() -> None:
            for connection in [c for c in self._connections_matching(key) if c.subscribed]:
                transport = connection.websocket.transport
                for start in range(0, count, FLOOD_BATCH):
                    frames = []
                    for index in range(start, min(count, start + FLOOD_BATCH)):
                        body = fixed if fixed is not None else payload(index)
                        text = (prefix % (connection.next_sequence(), time.time_ns())) + body + "}"
                        frames.append(text_frame(text.encode()))
                    transport.write(b"".join(frames))
                    while transport.get_write_buffer_size() > FLOOD_BUFFER_BYTES:
                        if transport.is_closing():
                            return
                        await asyncio.sleep(0.0005)

        self._call(send(), timeout=None)

    def ledger(self, key: str) -> Ledger:
        return self._ledgers[key]

    def connection_count(self, key: str | None = None) -> int:
        with self._lock:
            return sum(1 for c in self._connections if key is None or c.key == key)

    def subscriber_count(self, key: str | None = None) -> int:
        with self._lock:
            return sum(1 for c in self._connections if c.subscribed and (key is None or c.key == key))

    def requests(self, type_: str | None = None, key: str | None = None) -> list[WsRequest]:
        with self._lock:
            return [
                r for r in self.observed.ws_requests
                if (type_ is None or r.type == type_) and (key is None or r.key == key)
            ]

    def rest_requests(self) -> list[RestRequest]:
        with self._lock:
            return list(self.observed.rest_requests)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame, as a server sends it (RFC 6455, section 5.2)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 2**16:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload
