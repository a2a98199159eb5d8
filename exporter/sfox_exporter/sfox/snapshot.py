"""REST balance snapshots, one worker thread per account.

The feed asks for a snapshot at start, after every (re)connection and after a sequence anomaly;
requests made while one is waiting or running fold into it. The worker keeps to sFOX's 5 calls per
10 s, honours Retry-After on 429, retries failures with backoff and never blocks the feed thread:
the worst a failing REST API can do is leave the balances to the WebSocket feed alone.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import random
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sfox_exporter.clock import Clock
from sfox_exporter.config import AccountConfig, FeedConfig, KeyLoadError, Secret
from sfox_exporter.logs import Episode
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.backoff import Backoff
from sfox_exporter.sfox.decode import parse_rest_balances
from sfox_exporter.sfox.intake import LARGE_INPUTS, LargeInputs
from sfox_exporter.sfox.ratelimit import (
    REST_REQUESTS_PER_WINDOW,
    REST_WINDOW_MARGIN_SECONDS,
    REST_WINDOW_SECONDS,
    SlidingWindow,
    asked_wait,
)
from sfox_exporter.sfox.tls import client_context
from sfox_exporter.vocabulary import ErrorReason

log = logging.getLogger("sfox_exporter.sfox.snapshot")

BALANCE_PATH = "/v1/user/balance"
# As the frame cap (sfox/frames.py), and decoded under the same gate: a whole account's balances are
# ~250 bytes a currency, so 1 MiB holds 4,000 of them.
MAX_BODY_BYTES = 2**20
# sFOX's documented wait after a 429 when no Retry-After comes with it.
DEFAULT_RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class FetchResult:
    status: int | None  # None when no HTTP response arrived
    body: bytes = b""
    retry_after: str | None = None
    error: str = ""


Fetcher = Callable[[str, Secret, float, str], FetchResult]


class _DeadlineIO(io.RawIOBase):
    """The response's byte source: every read waits only as long as the whole call has left, so a
    server trickling headers or body a byte at a time cannot stretch the call past its deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        # Through a socket file, as http.client reads: it keeps the socket open after the
        # connection object lets go of it (a response without Content-Length reads to EOF).
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the REST call did not complete within rest_timeout_seconds")
        self._sock.settimeout(remaining)
        return self._raw.readinto(buffer) or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


class _BoundedResponse(http.client.HTTPResponse):
    deadline = 0.0  # set per call, on a subclass

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None) -> None:
        super().__init__(sock, debuglevel, method, url)
        self.fp = io.BufferedReader(_DeadlineIO(sock, self.deadline))


def _connection(url: urllib.parse.SplitResult, deadline: float) -> http.client.HTTPConnection:
    """http.client straight, not urllib: it follows no redirects (the Authorization header must not
    go elsewhere) and decompresses nothing (no gzip bombs). Proxies as urllib reads them."""
    timeout = max(0.001, deadline - time.monotonic())
    host, port = url.hostname or "", url.port
    secure = url.scheme == "https"
    proxies = urllib.request.getproxies_environment()
    proxy = None if urllib.request.proxy_bypass(host) else proxies.get(url.scheme)
    connection: http.client.HTTPConnection
    if proxy:
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        target = (parts.hostname or "", parts.port or 80)
    else:
        target = (host, port or (443 if secure else 80))
    if secure:
        connection = http.client.HTTPSConnection(*target, timeout=timeout, context=client_context())
    else:
        connection = http.client.HTTPConnection(*target, timeout=timeout)
    if proxy:
        connection.set_tunnel(host, port or (443 if secure else 80))
    connection.response_class = type("Response", (_BoundedResponse,), {"deadline": deadline})
    return connection


def fetch_balances(url: str, key: Secret, timeout: float, user_agent: str) -> FetchResult:
    """GET the balances; `timeout` bounds the whole call (connect, headers, body), and the body's size."""
    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return FetchResult(None, error="ValueError: the REST URL must be http(s)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = _connection(parts, deadline)
    try:
        connection.request("GET", path, headers={
            "Authorization": f"Bearer {key.reveal()}",
            "Accept": "application/json",
            "User-Agent": user_agent,
        })
        response = connection.getresponse()
        if response.status != 200:
            try:
                body = _read_bounded(response)
            except (OSError, ValueError, http.client.HTTPException):
                body = b""
            return FetchResult(response.status, body, response.getheader("Retry-After"))
        return FetchResult(response.status, _read_bounded(response))
    except (OSError, ValueError, http.client.HTTPException) as error:
        if time.monotonic() >= deadline:
            return FetchResult(None, error=f"TimeoutError: no complete answer within {timeout:g}s")
        return FetchResult(None, error=f"{type(error).__name__}: {error}")
    finally:
        connection.close()


def _read_bounded(response: http.client.HTTPResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read(65536):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ValueError(f"response larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def rest_window(clock: Clock) -> SlidingWindow:
    """An account's REST rate limit: sFOX allows 5 calls of GET /v1/user/balance per 10 s."""
    return SlidingWindow(REST_REQUESTS_PER_WINDOW, REST_WINDOW_SECONDS + REST_WINDOW_MARGIN_SECONDS, clock)


class SnapshotWorker:
    def __init__(
        self,
        account: AccountConfig,
        *,
        rest_url: str,
        feed: FeedConfig,
        state: State,
        clock: Clock,
        stop: threading.Event,
        fetch: Fetcher,
        user_agent: str,
        rng: random.Random | None = None,
        window: SlidingWindow | None = None,
        large: LargeInputs = LARGE_INPUTS,
    ) -> None:
        """`window` is the account's REST rate limit; the worker that replaces this one on a reload
        must be given the same, or reloads could pass sFOX's 5 calls per 10 s."""
        self.account = account.name
        self._key_source = account.key
        self._url = rest_url + BALANCE_PATH
        self._timeout = feed.rest_timeout_seconds
        self._state = state
        self._clock = clock
        self._stop = stop
        self._fetch = fetch
        self._user_agent = user_agent
        self.window = window or rest_window(clock)
        self._large = large
        self._backoff = Backoff(feed.backoff_initial_seconds, feed.backoff_max_seconds, rng or random.Random())
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._pending: str | None = None
        self._not_before = 0.0
        self._failures = Episode(log, self.account)
        self.completed = 0
        self.thread = threading.Thread(target=self.run, name=f"snapshot-{self.account}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def request(self, reason: str) -> None:
        with self._lock:
            if self._pending is None:
                self._pending = reason
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                reason = self._pending
            if reason is None:
                self._wake.wait()
                self._wake.clear()
                continue
            now = self._clock.monotonic()
            wait = max(self.window.wait_time(), self._not_before - now)
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
                continue
            with self._lock:
                self._pending = None
            try:
                applied = self._snapshot(reason)
            except Exception:  # a bug here must not end snapshots for good
                log.exception("REST snapshot failed unexpectedly", extra={"account": self.account})
                applied = self._failed("unexpected error", None)
            if not applied:
                with self._lock:
                    self._pending = self._pending or reason

    def _snapshot(self, reason: str) -> bool:
        """One REST call; True when its balances were applied."""
        try:
            key = self._key_source.load()
        except KeyLoadError as error:
            return self._failed(f"cannot load the API key: {error}", None)
        since = self._state.generation(self.account)
        self.window.record()
        log.debug("requesting a REST balance snapshot (%s)", reason, extra={"account": self.account})
        result = self._fetch(self._url, key, self._timeout, self._user_agent)
        if self._stop.is_set():
            # Retired during the call (a reload removed the account, or gave it another key): what
            # came back is no longer this account's to show.
            return True
        if result.status != 200:
            return self._failed(self._explain(result), result)
        with contextlib.ExitStack() as held:  # a large body is decoded as a large frame is: one at a time
            self._large.admit(len(result.body), held)
            if self._stop.is_set():  # retired while waiting there: another key's unit may be running
                return True
            parsed = parse_rest_balances(result.body)
            if parsed is None:
                return self._failed("the balance response is not a JSON array", result)
            balances, invalid = parsed
            if invalid:
                self._state.count_error(self.account, ErrorReason.SCHEMA, invalid)
            self._state.apply_snapshot(self.account, balances, since, complete=not invalid)
            count = len(balances)
            del balances, parsed  # before the gate opens
        self._backoff.reset()
        self._failures.recovered("REST balance snapshot succeeded")
        self.completed += 1
        log.debug("applied a REST snapshot of %d currencies", count, extra={"account": self.account})
        return True

    def _failed(self, detail: str, result: FetchResult | None) -> bool:
        self._state.count_error(self.account, ErrorReason.REST)
        delay = self._backoff.next()
        if result is not None:
            # Never sooner than the backoff: "Retry-After: 0" from a rate-limited route is no licence
            # to ask again at once, and again.
            delay = max(delay, asked_wait(result.status, result.retry_after, self._clock.time(),
                                          DEFAULT_RETRY_AFTER_SECONDS))
        self._not_before = self._clock.monotonic() + delay
        self._failures.failed("REST balance snapshot failed (%s); retrying in %.1fs", detail, delay)
        return False

    @staticmethod
    def _explain(result: FetchResult) -> str:
        if result.status is None:
            return result.error
        if result.status in (401, 403):
            return f"HTTP {result.status}: sFOX rejected the API key"
        if result.status == 429:
            return "HTTP 429: rate limited"
        return f"HTTP {result.status}"
