"""A faithful local stand-in for sFOX: the WebSocket feed and the REST balance endpoint.

It follows ../shared/reference/sfox-protocol-notes.md: the authenticate and subscribe handshake and
its reply shapes, a per-connection `sequence` that counts every message, nanosecond timestamps,
account-balance payloads as lists of decimal strings, Web3 payloads as single objects, REST numbers,
and sFOX's per-IP limits (40 WebSocket requests a minute, 10 connections, a 2-minute block, 5 REST
balance calls per 10 s). Tests drive failures through its hooks and read what it saw from its logs.

The WebSocket side runs on the `websockets` library in an asyncio loop of its own thread; the REST
side on the standard library's threading HTTP server. Every public method is thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Coroutine, Iterable, Mapping
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sfox_exporter.config.keys import demo_key

from .enterprise import END_USERS_FEED, EnterpriseLedger, accepts_flag
from .hooks import BALANCES_FEED, SimulatorHooks
from .ledger import Ledger
from .market import SimMarket
from .records import Limits, Observations, RestFailure, RestRequest, SimConnection, WsRequest
from .rest import RestHandler

PRIVATE_PREFIX = "private."
REQUEST_TYPES = ("authenticate", "subscribe", "unsubscribe")

log = logging.getLogger("sfox_exporter.simulator")
T = TypeVar("T")


class Simulator(SimulatorHooks):
    def __init__(
        self,
        ledgers: Mapping[str, Ledger],
        *,
        host: str = "127.0.0.1",
        ws_port: int = 0,
        rest_port: int = 0,
        push_interval: float | None = 1.0,
        seed: int = 0,
        limits: Limits | None = None,
        enterprise: Mapping[str, EnterpriseLedger] | None = None,
    ) -> None:
        """`ledgers` maps each valid API key to its account. With `push_interval` set, balances drift
        and are pushed to subscribers that often; None pushes only what tests ask for."""
        self._ledgers = dict(ledgers)
        self.enterprise = dict(enterprise or {})  # sFOX Connect keys: authenticate with the enterprise flag
        self._host = host
        self._ws_port = ws_port
        self._rest_port = rest_port
        self.push_interval = push_interval
        self._rng = random.Random(seed)
        self.limits = limits or Limits()
        self.observed = Observations()
        self.drop_after_subscribe = False
        self.refused_feeds: set[str] = set()  # a subscribe naming one of these is answered with an error
        self.rest_delay = 0.0
        self._rejected_keys: set[str] = set()
        self._rest_failures: deque[RestFailure] = deque()
        self._lock = threading.Lock()
        self._connections: list[SimConnection] = []
        self._recent_requests: dict[str, deque[float]] = {}
        self._recent_rest: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ws_server: Server | None = None
        self._rest_server: ThreadingHTTPServer | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.ws_url = ""
        self.rest_url = ""
        # The ticker feed and currency pairs (valuation); ticks every 3 s unless pushes are test-driven.
        self.market = SimMarket(send=self._send, call=self._call, interval=3.0 if push_interval else None, seed=seed)
        self._market_task: asyncio.Task[None] | None = None

    @classmethod
    def demo(cls, names: Iterable[str] = ("demo",), enterprise: Iterable[str] = (), **options: Any) -> Simulator:
        """Accounts whose keys are `demo_key(name)`, as `sfox-exporter --demo` uses them."""
        return cls({demo_key(name): Ledger.demo(name) for name in names},
                   enterprise={demo_key(name): EnterpriseLedger(name) for name in enterprise}, **options)

    def open_demo_accounts(self, names: Iterable[str], enterprise: Iterable[str] = ()) -> None:
        """Accounts, keyed `demo_key(name)`, for the names not known yet: a reloaded --demo config
        may add some. Known accounts keep their balances."""
        with self._lock:
            for name in names:
                self._ledgers.setdefault(demo_key(name), Ledger.demo(name))
            for name in enterprise:
                self.enterprise.setdefault(demo_key(name), EnterpriseLedger(name))

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Simulator:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_ws())
            except BaseException as error:  # noqa: BLE001 - handed to the starting thread
                failure.append(error)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._stop_ws())
            loop.close()

        self._thread = threading.Thread(target=run, name="simulator-ws", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        self._rest_server = ThreadingHTTPServer((self._host, self._rest_port), RestHandler)
        self._rest_server.daemon_threads = True
        self._rest_server.simulator = self  # type: ignore[attr-defined]
        rest_port = self._rest_server.server_address[1]
        threading.Thread(target=self._rest_server.serve_forever, name="simulator-rest", daemon=True).start()
        self.rest_url = f"http://{_url_host(self._host)}:{rest_port}"
        return self

    def stop(self) -> None:
        if self._rest_server is not None:
            self._rest_server.shutdown()
            self._rest_server.server_close()
            self._rest_server = None
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start_ws(self) -> None:
        self._ws_server = await serve(
            self._handle,
            self._host,
            self._ws_port,
            process_request=self._admit,
            compression=None,
            ping_interval=None,  # sFOX documents no server pings; clients ping
            max_size=2**20,
            logger=_quiet_logger("sfox_exporter.simulator.websockets"),
        )
        port = self._ws_server.sockets[0].getsockname()[1]
        self.ws_url = f"ws://{_url_host(self._host)}:{port}/ws"
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        self._market_task = asyncio.get_running_loop().create_task(self.market.run())

    async def _stop_ws(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._market_task is not None:
            self._market_task.cancel()
        for connection in self._connections_matching(None):
            connection.websocket.transport.abort()
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()

    # --- WebSocket side -------------------------------------------------------------------------

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        ip = _ip(connection)
        with self._lock:
            remaining = self._blocked_until.get(ip, 0.0) - time.monotonic()
        if remaining > 0:
            response = connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "IP blocked for exceeding rate limits\n")
            response.headers["Retry-After"] = str(max(1, round(remaining)))
            return response
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        connection = SimConnection(websocket, _ip(websocket), time.monotonic())
        with self._lock:
            open_from_ip = sum(1 for c in self._connections if c.ip == connection.ip)
            self._connections.append(connection)
            self.observed.connections_opened += 1
            self.observed.max_concurrent_connections = max(
                self.observed.max_concurrent_connections, len(self._connections)
            )
            too_many = open_from_ip >= self.limits.connections
            if too_many:
                self.observed.limit_violations.append(f"more than {self.limits.connections} connections")
        try:
            if too_many:
                await websocket.close(1008, "too many connections")
                return
            async for message in websocket:
                await self._on_request(connection, message)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._connections.remove(connection)
            self.market.forget(connection)

    async def _on_request(self, connection: SimConnection, message: str | bytes) -> None:
        try:
            request = json.loads(message)
        except ValueError:
            return
        if not isinstance(request, dict) or request.get("type") not in REQUEST_TYPES:
            return
        request_type = request["type"]
        if not self._count_request(connection, request_type, request.get("apiKey")):
            await self._send(connection, type="error", payload={"action": request_type,
                             "message": "rate limit exceeded"}, action=request_type)
            await connection.websocket.close(1008, "rate limit exceeded")
            return
        if request_type == "authenticate":
            await self._authenticate(connection, request.get("apiKey"), request.get("enterprise"))
        else:
            await self._subscription(connection, request_type, request.get("feeds"))

    def _count_request(self, connection: SimConnection, request_type: str, api_key: Any) -> bool:
        """Record a request against sFOX's per-IP budget; False once the budget is exceeded."""
        now = time.monotonic()
        with self._lock:
            key = api_key if request_type == "authenticate" and isinstance(api_key, str) else connection.key
            self.observed.ws_requests.append(WsRequest(now, connection.ip, request_type, key))
            recent = self._recent_requests.setdefault(connection.ip, deque())
            while recent and recent[0] <= now - self.limits.ws_window:
                recent.popleft()
            recent.append(now)
            if len(recent) <= self.limits.ws_requests:
                return True
            self.observed.limit_violations.append(
                f"{len(recent)} WebSocket requests within {self.limits.ws_window:g}s"
            )
            self._blocked_until[connection.ip] = now + self.limits.ws_block
            return False

    async def _authenticate(self, connection: SimConnection, api_key: Any, enterprise: Any = None) -> None:
        with self._lock:
            valid = isinstance(api_key, str) and api_key not in self._rejected_keys and (
                api_key in self._ledgers or (api_key in self.enterprise and accepts_flag(enterprise)))
        if valid:
            connection.key = api_key
            await self._send(connection, type="success", payload={"action": "authenticate"}, action="authenticate")
        else:
            await self._send(connection, type="error", payload={"action": "authenticate"}, action="authenticate")

    async def _subscription(self, connection: SimConnection, request_type: str, feeds: Any) -> None:
        if not isinstance(feeds, list) or not all(isinstance(f, str) for f in feeds):
            await self._send(connection, type="error", payload={"action": request_type}, action=request_type)
            return
        refused = [feed for feed in feeds if feed in self.refused_feeds]
        if refused:  # the error names them; the others are taken (the answer is the error alone)
            await self._send(connection, type="error", payload={"action": request_type, "feeds": refused,
                             "message": "subscription refused"}, action=request_type)
            feeds = [feed for feed in feeds if feed not in self.refused_feeds]
            self.market.subscription(connection, request_type, feeds)
            return
        if any(f.startswith(PRIVATE_PREFIX) for f in feeds) and connection.key is None:
            await self._send(connection, type="error", payload={"action": request_type,
                             "message": "authentication required"}, action=request_type)
            return
        await self._send(connection, type="success", payload={"action": request_type, "feeds": feeds},
                         action=request_type)
        self.market.subscription(connection, request_type, feeds)
        connection.subscribed = request_type == "subscribe" and (BALANCES_FEED in feeds or END_USERS_FEED in feeds)
        if connection.subscribed and self.drop_after_subscribe:
            await connection.websocket.close(1011, "simulated drop")

    async def _send(self, connection: SimConnection, timestamp: Any = None, **fields: Any) -> None:
        if connection.muted:
            return
        message = {
            "sequence": connection.next_sequence(),
            **({"recipient": fields.pop("recipient")} if "recipient" in fields else {}),
            "timestamp": time.time_ns() if timestamp is None else timestamp,
            **fields,
        }
        with contextlib.suppress(ConnectionClosed):
            await connection.websocket.send(json.dumps(message))

    async def _tick_forever(self) -> None:
        while True:
            interval = self.push_interval
            await asyncio.sleep(interval if interval else 0.2)
            if interval:
                await self._tick()

    async def _tick(self) -> None:
        """One step of a live market: each subscribed account sees a change of one or two holdings.
        A connection's first tick also brings its Web3 wallets, so a demo shows them at once."""
        by_key: dict[str, list[SimConnection]] = {}
        for connection in self._connections_matching(None):
            if connection.subscribed and not connection.muted and connection.key is not None:
                by_key.setdefault(connection.key, []).append(connection)
        for key, connections in by_key.items():
            if key in self.enterprise:
                await self._tick_enterprise(self.enterprise[key], connections)
                continue
            ledger = self._ledgers[key]
            changed = ledger.drift(self._rng)
            web3 = ledger.drift_web3(self._rng) if self._rng.random() < 0.3 else None
            for connection in connections:
                connection.ticks += 1
                await self._send(connection, recipient=BALANCES_FEED, payload=changed)
                wallets = ledger.web3_entries() if connection.ticks == 1 else [web3] if web3 else []
                for wallet in wallets:
                    await self._send(connection, recipient=BALANCES_FEED, payload=wallet)

    async def _tick_enterprise(self, ledger: EnterpriseLedger, connections: list[SimConnection]) -> None:
        """Every end user on a connection's first tick (so a demo shows totals at once), then a few
        users' deposits, trades and withdrawals."""
        changed = ledger.drift(self._rng, changes=20)
        for connection in connections:
            connection.ticks += 1
            for payload in ledger.payloads() if connection.ticks == 1 else changed:
                await self._send(connection, recipient=END_USERS_FEED, payload=payload)

    def _connections_matching(self, key: str | None) -> list[SimConnection]:
        with self._lock:
            return [c for c in self._connections if key is None or c.key == key]

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 10) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the simulator is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # --- REST side ------------------------------------------------------------------------------

    def key_valid(self, authorization: str | None) -> bool:
        """Whether a Bearer header carries a key this simulator accepts."""
        key = authorization[7:].strip() if authorization and authorization.startswith("Bearer ") else None
        with self._lock:
            return key is not None and key in self._ledgers and key not in self._rejected_keys

    def rest_balance(self, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        key = authorization[7:].strip() if authorization and authorization.startswith("Bearer ") else None
        now = time.monotonic()
        with self._lock:
            status, headers, body = self._rest_decide(key, now)
            self.observed.rest_requests.append(RestRequest(now, key, status))
        return status, headers, body

    def _rest_decide(self, key: str | None, now: float) -> tuple[int, dict[str, str], bytes]:
        if self._rest_failures:
            failure = self._rest_failures.popleft()
            headers = {"Retry-After": failure.retry_after} if failure.retry_after is not None else {}
            return failure.status, headers, failure.body
        if key is None or key not in self._ledgers or key in self._rejected_keys:
            return 401, {}, b'{"error":"invalid token"}'
        recent = self._recent_rest.setdefault(key, deque())
        while recent and recent[0] <= now - self.limits.rest_window:
            recent.popleft()
        if len(recent) >= self.limits.rest_requests:
            self.observed.limit_violations.append("REST balance rate limit")
            return 429, {"Retry-After": str(self.limits.rest_retry_after)}, b'{"error":"rate limit exceeded"}'
        recent.append(now)
        return 200, {}, json.dumps(self._ledgers[key].rest_entries()).encode()



def _quiet_logger(name: str) -> logging.Logger:
    """websockets logs every frame at debug and every connection at info; only problems matter here."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)
    return logger


def _ip(connection: ServerConnection) -> str:
    address = connection.remote_address
    return str(address[0]) if address else "?"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

