"""The feed worker: one thread that owns one WebSocket connection to sFOX at a time.

It keeps only what needs I/O: loading the key, drawing on the shared request budget, opening and
closing connections, waiting out the backoff, and carrying out what the sans-I/O `Session` asks.
What the conversation means lives in session.py; where its results go is the `FeedSink`'s business
(an account's balance book, or the market-data price book).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from sfox_exporter.clock import Clock
from sfox_exporter.config import FeedConfig, KeyLoader, KeyLoadError, Secret
from sfox_exporter.logs import Episode, Throttle
from sfox_exporter.sfox.actions import (
    Action,
    Deliver,
    Ended,
    Ignored,
    Resync,
    SendPing,
    SendPong,
    SendRequest,
    StatusChanged,
    WentUp,
)
from sfox_exporter.sfox.backoff import Backoff
from sfox_exporter.sfox.connection import Connection, Connector, HandshakeRefused
from sfox_exporter.sfox.decode import Event, sanitize_text
from sfox_exporter.sfox.intake import LARGE_INPUTS, LargeInputs, receive_batch
from sfox_exporter.sfox.ratelimit import RequestBudget, Reservation, Slots, asked_wait
from sfox_exporter.sfox.session import Phase, Session, SessionSettings
from sfox_exporter.sfox.wanted import WantedFeeds
from sfox_exporter.vocabulary import ErrorReason, FeedStatus

log = logging.getLogger("sfox_exporter.sfox.feed")

CONNECT_TIMEOUT_SECONDS = 10.0
# sFOX blocks an IP for 2 minutes after a breach of its limits; a 429 without Retry-After means that.
BLOCKED_SECONDS = 120.0
_RATE_LIMITED = re.compile(r"rate.?limit|too many requests", re.IGNORECASE)
# A connection that stayed up this long resets the backoff to its initial delay; one dropped sooner
# (say, right after subscribing, again and again) keeps backing off further.
HEALTHY_SECONDS = 10.0
# Opening the connection, authenticate and subscribe: every attempt to open a connection costs
# budget, so that refused upgrades cannot hammer sFOX at tiny backoffs.
REQUESTS_PER_CONNECTION = 3
# Feeds asked for while a connection streams (the market connection, as currencies appear) are
# batched: at most one more subscribe this often, so they cannot eat the shared per-IP budget.
LATER_SUBSCRIBE_SECONDS = 5.0


class FeedSink(Protocol):
    """Where a feed's news goes."""

    def status(self) -> FeedStatus: ...

    def set_status(self, status: FeedStatus) -> None: ...

    def deliver(self, event: Event) -> None: ...

    def deliver_many(self, events: list[Event]) -> None:
        """Events in order, as deliver() would take them one by one: a flood's buffered frames, at once."""

    def went_up(self) -> None: ...

    def resync(self) -> str: ...  # repairs what a sequence anomaly may have lost; says how, for the log

    def count_error(self, reason: ErrorReason) -> None: ...

    @property
    def errors_metric(self) -> str: ...  # the counter count_error() counts in, for log lines

    def count_reconnect(self) -> None: ...


@dataclass
class _Outcome:
    """How one connection ended."""

    reason: ErrorReason | Literal["stopped"]
    detail: str
    up_seconds: float = 0.0
    rejected: bool = False
    wait_at_least: float = 0.0  # what sFOX asked for, when it did


STOPPED = _Outcome("stopped", "")


class FeedWorker:
    def __init__(
        self,
        name: str,
        *,
        key_source: KeyLoader,
        settings: SessionSettings,
        ws_url: str,
        feed: FeedConfig,
        sink: FeedSink,
        budget: RequestBudget,
        connector: Connector,
        clock: Clock,
        stop: threading.Event,
        rng: random.Random | None = None,
        on_key: Callable[[Secret], None] = lambda key: None,
        max_wait: float | None = None,
        large: LargeInputs = LARGE_INPUTS,
    ) -> None:
        self.name = name
        self.settings = settings
        self._key_source = key_source
        self._ws_url = ws_url
        self._sink = sink
        self._budget = budget
        self._connector = connector
        self._clock = clock
        self._stop = stop
        self._backoff = Backoff(feed.backoff_initial_seconds, feed.backoff_max_seconds, rng or random.Random())
        self._on_key = on_key
        self._max_wait = max_wait  # how soon feeds asked for by another thread are subscribed
        self._large = large
        self._key: Secret | None = None
        self._connection: Connection | None = None
        self._lock = threading.Lock()
        self.wanted = WantedFeeds()
        self._failures = Episode(log, name)
        self._rejections = Episode(log, name, logging.ERROR)
        self._throttle = Throttle(clock)
        self.thread = threading.Thread(target=self.run, name=f"feed-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Cut the current connection short; used on shutdown with the stop event set."""
        with self._lock:
            if self._connection is not None:
                self._connection.abort()

    def run(self) -> None:
        first = True
        while not self._stop.is_set():
            if not first:
                self._sink.count_reconnect()
            first = False
            try:
                outcome = self.connect_once()
            except Exception:  # a bug must cost a reconnect, never the feed thread
                log.exception("unexpected error in the feed thread", extra={"account": self.name})
                self._sink.count_error(ErrorReason.CONNECTION)
                outcome = _Outcome(ErrorReason.CONNECTION, "unexpected error")
            if self._stop.is_set():
                break
            self._stop.wait(self.ended(outcome))
        self._sink.set_status(FeedStatus.STOPPED)

    def ended(self, outcome: _Outcome) -> float:
        """Show and log how a connection ended; returns how long to wait before the next one."""
        # sFOX blocks an IP for 2 minutes on a breach "with an error" of no documented shape: any
        # error or close that says so is that block, not a rejected key; retrying sooner prolongs it.
        blocked = _RATE_LIMITED.search(outcome.detail) is not None
        rejected = outcome.rejected and not blocked
        self._sink.set_status(FeedStatus.AUTH_REJECTED if rejected else FeedStatus.BACKING_OFF)
        if outcome.up_seconds >= HEALTHY_SECONDS:
            self._backoff.reset()
        delay = max(self._backoff.next(), outcome.wait_at_least, BLOCKED_SECONDS if blocked else 0.0)
        if blocked:
            self._budget.block(BLOCKED_SECONDS)  # the whole IP is blocked: every connection waits
        # The next attempt also waits for the shared request budget: say so, or the log's "in 1.7s"
        # would be followed by a minute of nothing after an outage that spent the budget.
        budget = self._budget.expected_wait(REQUESTS_PER_CONNECTION)
        when = (f"{delay:.1f}s" if budget <= delay else
                f"about {budget:.0f}s, when the request budget (sfox.max_requests_per_minute) allows")
        if rejected:
            self._rejections.failed(
                "sFOX rejected the API key (%s); retrying with backoff, next attempt in %s", outcome.detail, when)
        else:
            self._failures.failed("feed connection failed (%s: %s); reconnecting in %s",
                                  outcome.reason, outcome.detail, when)
        return delay

    def connect_once(self) -> _Outcome:
        """One connection, from loading the key to its end; the worker's loop, without the waiting."""
        if not self._feeds_to_ask():
            return STOPPED
        key = self._load_key()
        if key is None:
            self._sink.count_error(ErrorReason.AUTH)
            return _Outcome(ErrorReason.AUTH, "no API key could be loaded")
        self._progress(FeedStatus.CONNECTING)
        with self._budget.connection(self._stop) as granted:
            if not granted:
                return STOPPED
            reservation = self._budget.reserve(REQUESTS_PER_CONNECTION, self._stop)
            if reservation is None:
                return STOPPED
            try:
                return self._connect_and_converse(key, reservation)
            finally:
                reservation.release()

    def _connect_and_converse(self, key: Secret, reservation: Reservation) -> _Outcome:
        reservation.spend()  # the upgrade itself
        try:
            connection = self._connector(self._ws_url, CONNECT_TIMEOUT_SECONDS)
        except HandshakeRefused as refused:
            self._sink.count_error(ErrorReason.CONNECTION)
            wait = asked_wait(refused.status, refused.retry_after, self._clock.time(), BLOCKED_SECONDS)
            if refused.status == 429:
                self._budget.block(wait)  # the IP is blocked, for every connection
            return _Outcome(ErrorReason.CONNECTION, str(refused), wait_at_least=wait)
        except Exception as error:  # noqa: BLE001 - any failure to connect is a connection error
            self._sink.count_error(ErrorReason.CONNECTION)
            return _Outcome(ErrorReason.CONNECTION, describe(error))
        with self._lock:
            self._connection = connection
        session = Session(dataclasses.replace(self.settings, feeds=()) if self.wanted.replaced else self.settings, key)
        try:
            return self._converse(session, connection, reservation)
        except Exception as error:  # noqa: BLE001 - a broken socket surfaces as many exception types
            if self._stop.is_set():
                return STOPPED
            self._sink.count_error(ErrorReason.CONNECTION)
            return _Outcome(ErrorReason.CONNECTION, describe(error), session.up_seconds(self._clock.monotonic()))
        finally:
            with self._lock:
                self._connection = None
            self._progress(FeedStatus.BACKING_OFF)
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a dead socket can fail in many ways
                log.debug("closing the connection failed", extra={"account": self.name})

    def _converse(self, session: Session, connection: Connection, reservation: Reservation) -> _Outcome:
        slots = Slots(reservation)
        try:
            return self._converse_with(session, connection, slots)
        finally:
            slots.release()

    def _converse_with(self, session: Session, connection: Connection, slots: Slots) -> _Outcome:
        clock = self._clock
        actions = session.start(clock.monotonic())
        wanted, settled = self.wanted.current()  # settled: the version of them this connection has taken up
        actions += session.subscribe(wanted)  # known now: they join the handshake's subscribe
        ended = self._carry_out(actions, connection, slots)
        next_subscribe = 0.0
        while ended is None and not self._stop.is_set():
            deadline = session.next_deadline(connection.receiving_since)
            if self._max_wait is not None:
                deadline = min(deadline, clock.monotonic() + self._max_wait)
            frame = connection.receive(deadline)
            now = clock.monotonic()
            with contextlib.ExitStack() as held:  # the large-input gate, while a large frame's objects live
                actions = [] if frame is None else receive_batch(session, connection, frame, now,
                                                                 large=self._large, held=held)
                actions += session.tick(now, connection.receiving_since)
                if session.phase is Phase.STREAMING and now >= next_subscribe and self.wanted.version != settled:
                    wanted, version = self.wanted.current()
                    new = session.unsubscribed(wanted)
                    # Never wait for budget here: this thread must keep reading and answering pings.
                    slot = self._budget.try_reserve(1) if new else None
                    if not new:
                        settled = version
                    elif isinstance(slot, Reservation):
                        slots.add(slot)
                        actions += session.subscribe(new)
                        settled = version
                        next_subscribe = now + LATER_SUBSCRIBE_SECONDS
                ended = self._carry_out(actions, connection, slots)
                actions.clear()  # the decoded events go before the gate opens, not at the next batch
        if ended is None:
            return STOPPED
        self._sink.count_error(ended.reason)
        return _Outcome(ended.reason, ended.detail, session.up_seconds(clock.monotonic()), ended.rejected)

    def _carry_out(self, actions: list[Action], connection: Connection, slots: Slots) -> Ended | None:
        events: list[Event] = []  # consecutive deliveries, handed over together, in order
        for action in actions:
            if isinstance(action, Deliver):
                events.append(action.event)
                continue
            if events:
                self._sink.deliver_many(events)
                events = []
            if isinstance(action, SendPong):
                connection.pong(action.payload)
            elif isinstance(action, SendPing):
                connection.ping(action.payload)
            elif isinstance(action, SendRequest):
                connection.send_text(action.text)
                slots.spend()
            elif isinstance(action, StatusChanged):
                # Past authenticating, sFOX has accepted the key: a rejection is no longer the news.
                if action.status is FeedStatus.AUTHENTICATING:
                    self._progress(action.status)
                else:
                    self._sink.set_status(action.status)
            elif isinstance(action, WentUp):
                self._went_up(action.feeds)
            elif isinstance(action, Resync):
                self._resync(action)
            elif isinstance(action, Ignored):
                self._ignored(action)
            else:
                return action
        if events:
            self._sink.deliver_many(events)
        return None

    def _feeds_to_ask(self) -> bool:
        """False once stopped. A connection whose feeds are all wanted ones (market data) waits while
        none is left to ask for (sFOX refused them all): it would only spend requests on showing up
        with nothing streaming."""
        while self.wanted.replaced and not self.wanted.current()[0]:
            self._sink.set_status(FeedStatus.BACKING_OFF)
            if self._stop.wait(self._max_wait or 1.0):
                return False
        return not self._stop.is_set()

    def _ignored(self, action: Ignored) -> None:
        if action.reason is not None:
            self._sink.count_error(action.reason)
        self.wanted.refuse(action.refused)
        if action.ask_again:
            self.wanted.touch()
        if self._throttle.allow(action.what):
            log.warning("ignored %s from sFOX%s%s", action.what, f" ({action.detail})" if action.detail else "",
                        f" (counted in {self._sink.errors_metric})" if action.counted else "",
                        extra={"account": self.name})

    def _progress(self, status: FeedStatus) -> None:
        """Show a step of the next attempt, unless the key was rejected: that stays the news until
        sFOX accepts it, since with a rejected key most of the time goes into waiting for a retry.
        Only this thread sets the feed's status, so reading it first is no race."""
        if self._sink.status() != FeedStatus.AUTH_REJECTED:
            self._sink.set_status(status)

    def _load_key(self) -> Secret | None:
        """Read the key again on every attempt, so a rotated key file is picked up."""
        try:
            self._key = self._key_source.load()
            self._on_key(self._key)
        except KeyLoadError as error:
            if self._key is None:
                log.error("cannot load the API key: %s", error, extra={"account": self.name})
                return None
            if self._throttle.allow("key"):
                log.warning("cannot reload the API key, using the previous one: %s", error,
                            extra={"account": self.name})
        return self._key

    def _went_up(self, feeds: tuple[str, ...]) -> None:
        self._sink.set_status(FeedStatus.UP)
        self._rejections.recovered("sFOX accepted the API key again")
        self._failures.recovered("feed connected")
        log.info("feed up: authenticated and subscribed to %s", ", ".join(feeds[:3]) +
                 (f" and {len(feeds) - 3} more" if len(feeds) > 3 else ""), extra={"account": self.name})
        self._sink.went_up()

    def _resync(self, action: Resync) -> None:
        self._sink.count_error(ErrorReason.SEQUENCE)
        repair = self._sink.resync()
        if self._throttle.allow("sequence"):
            log.warning("sequence jumped from %s to %s; %s", action.last, action.sequence, repair,
                        extra={"account": self.name})


def describe(error: BaseException) -> str:
    """An exception as a short, printable, key-free phrase for a log line."""
    text = sanitize_text(str(error)) if str(error) else ""
    name = type(error).__name__
    return f"{name}: {text}" if text else name
