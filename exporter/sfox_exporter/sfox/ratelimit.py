"""Client-side rate limits, so the exporter never trips sFOX's.

sFOX counts per IP: at most 40 WebSocket requests (authenticate, subscribe, unsubscribe) in any
60 s, at most 10 connections; a breach blocks the IP for 2 minutes, for every account at once. So
all feed threads draw on one RequestBudget. REST balance calls are limited per account.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from sfox_exporter.clock import Clock

WS_REQUESTS_PER_WINDOW = 40
WS_WINDOW_SECONDS = 60.0
# A request is recorded when our send returns; it reaches sFOX a little later. The margin keeps a
# late arrival of an old request and an early arrival of a new one inside sFOX's window count.
WS_WINDOW_MARGIN_SECONDS = 1.0
MAX_CONNECTIONS = 10
REST_REQUESTS_PER_WINDOW = 5
REST_WINDOW_SECONDS = 10.0
# The same reasoning as for the WebSocket window: a call is recorded when it starts, and one that
# started slowly can reach sFOX after a later one that did not.
REST_WINDOW_MARGIN_SECONDS = 1.0
MAX_RETRY_AFTER_SECONDS = 900.0
# How often a waiting thread looks at its stop event.
WAIT_SLICE_SECONDS = 0.5


class SlidingWindow:
    """At most `limit` events in any `window` seconds. Not thread-safe on its own."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque()

    def used(self) -> int:
        horizon = self._clock.monotonic() - self.window
        while self._times and self._times[0] <= horizon:
            self._times.popleft()
        return len(self._times)

    def wait_time(self, pending: int = 0, count: int = 1) -> float:
        """Seconds until `count` more events fit, given `pending` already promised ones."""
        used = self.used()
        excess = used + pending + count - self.limit
        if excess <= 0:
            return 0.0
        if excess > used:
            return self.window  # the promised events must be spent or released first
        return self._times[excess - 1] + self.window - self._clock.monotonic()

    def record(self) -> None:
        self._times.append(self._clock.monotonic())


class Reservation:
    """Request slots promised to one connection attempt. Spend one per request actually sent;
    release the rest when the attempt ends."""

    def __init__(self, budget: RequestBudget, count: int) -> None:
        self._budget = budget
        self.remaining = count

    def spend(self) -> None:
        if self.remaining <= 0:
            raise RuntimeError("no reserved request slot left")
        self.remaining -= 1
        self._budget.spend_reserved()

    def release(self) -> None:
        if self.remaining:
            self._budget.release_reserved(self.remaining)
            self.remaining = 0


class RequestBudget:
    """The per-IP WebSocket limits of sFOX, shared by every feed thread."""

    def __init__(
        self,
        clock: Clock,
        limit: int = WS_REQUESTS_PER_WINDOW,
        window: float = WS_WINDOW_SECONDS + WS_WINDOW_MARGIN_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._window = SlidingWindow(limit, window, clock)
        self._clock = clock
        self._blocked_until = 0.0  # monotonic: sFOX said it blocks this IP until then
        self._max_connections = max_connections
        self._condition = threading.Condition()
        self._promised = 0
        self._connections = 0
        self._queue: deque[int] = deque()  # tickets of the threads waiting in reserve(), oldest first
        self._next_ticket = 0
        self.sent = 0

    def try_reserve(self, count: int) -> Reservation | float:
        """A reservation of `count` request slots, or the seconds to wait before asking again."""
        with self._condition:
            wait = self._wait(count)
            if wait > 0:
                return wait
            self._promised += count
            return Reservation(self, count)

    def expected_wait(self, count: int) -> float:
        """Seconds until `count` slots could be reserved, were nobody else waiting: an estimate."""
        with self._condition:
            return max(0.0, self._wait(count))

    def reserve(self, count: int, stop: threading.Event) -> Reservation | None:
        """Block until `count` slots are free; None if `stop` is set first.

        Waiting threads are served first come, first served: when the budget is smaller than what all
        connections need at once (say 10 accounts at 3 requests each within 20 a minute), an account
        that just failed queues behind those still waiting for their first attempt, so none starves."""
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._queue.append(ticket)
        try:
            while not stop.is_set():
                with self._condition:
                    wait = WAIT_SLICE_SECONDS
                    if self._queue[0] == ticket:
                        wait = self._wait(count)
                        if wait <= 0:
                            self._promised += count
                            return Reservation(self, count)
                    self._condition.wait(min(wait, WAIT_SLICE_SECONDS))
            return None
        finally:
            with self._condition:
                self._queue.remove(ticket)
                self._condition.notify_all()

    def block(self, seconds: float) -> None:
        """sFOX blocks the IP for `seconds` ("your requests will be blocked for 2 minutes"): no
        connection sends a request until then, where each went on trying into the block."""
        with self._condition:
            self._blocked_until = max(self._blocked_until, self._clock.monotonic() + seconds)

    def _wait(self, count: int) -> float:
        return max(self._window.wait_time(self._promised, count), self._blocked_until - self._clock.monotonic())

    @contextmanager
    def connection(self, stop: threading.Event) -> Iterator[bool]:
        """Hold one of the connection slots for the body; yields False if stopped while waiting."""
        with self._condition:
            while self._connections >= self._max_connections:
                if stop.is_set():
                    yield False
                    return
                self._condition.wait(WAIT_SLICE_SECONDS)
            self._connections += 1
        try:
            yield True
        finally:
            with self._condition:
                self._connections -= 1
                self._condition.notify_all()

    def resize(self, limit: int, max_connections: int) -> None:
        """A new share of sFOX's limits (a config reload). Requests already sent still count."""
        with self._condition:
            self._window.limit = limit
            self._max_connections = max_connections
            self._condition.notify_all()

    @property
    def limit(self) -> int:
        return self._window.limit

    @property
    def window(self) -> float:
        return self._window.window

    @property
    def connections(self) -> int:
        with self._condition:
            return self._connections

    def spend_reserved(self) -> None:
        """One promised slot used: a request went out (Reservation.spend)."""
        with self._condition:
            self._promised -= 1
            self._window.record()
            self.sent += 1

    def release_reserved(self, count: int) -> None:
        """Promised slots given back unused (Reservation.release)."""
        with self._condition:
            self._promised -= count
            self._condition.notify_all()


class Slots:
    """A connection's reserved requests (upgrade, authenticate, subscribe), then single slots taken
    later, without waiting, for more subscribes."""

    def __init__(self, reservation: Reservation) -> None:
        self._first = reservation
        self._more: list[Reservation] = []

    def add(self, slot: Reservation) -> None:
        self._more.append(slot)

    def spend(self) -> None:
        if self._first.remaining:
            self._first.spend()
        else:
            self._more.pop(0).spend()

    def release(self) -> None:
        for slot in self._more:
            slot.release()
        self._more.clear()


def seconds_to_connect(connections: int, per_connection: int, limit: int, window: float) -> float:
    """How long `connections` first attempts take within a budget of `limit` requests per `window`,
    when each costs `per_connection` requests: those that fit start at once, each further batch a
    window later. Infinite when a single attempt does not fit at all."""
    if connections <= 0:
        return 0.0
    batch = limit // per_connection
    if batch == 0:
        return math.inf
    return (connections - 1) // batch * window


def asked_wait(status: int | None, retry_after: str | None, now: float, rate_limited: float) -> float:
    """Seconds a refusal asks to wait: its Retry-After on any status (sFOX documents none, and a 503
    for maintenance may well say when to come back), else `rate_limited` for a 429, else 0."""
    return parse_retry_after(retry_after, now, rate_limited if status == 429 else 0.0)


def parse_retry_after(value: str | None, now: float, default: float) -> float:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; `default` without
    one, or with one that makes no sense."""
    if value is None:
        return default
    value = value.strip()
    seconds: float
    if re.fullmatch(r"[0-9]{1,10}(?:\.[0-9]{1,6})?", value):
        seconds = float(value)
    else:
        try:
            moment = email.utils.parsedate_to_datetime(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.UTC)
            seconds = moment.timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):  # a year or zone of 20 digits overflows
            return default
    if not math.isfinite(seconds):
        return default
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
