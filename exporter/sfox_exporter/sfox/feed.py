"""The feed thread of one account: it owns the WebSocket connection from connect to close.

Per connection: authenticate, wait for its success, subscribe to the balances feed, then read.
Pings go out every ping_interval; a pong missing for ping_timeout means a dead (half-open)
connection. Any failure ends the connection; the thread waits a jittered, growing backoff and
starts again, drawing on the shared RequestBudget for every request it sends.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sfox_exporter.clock import Clock
from sfox_exporter.config import AccountConfig, ConfigError, FeedConfig, Secret
from sfox_exporter.logs import Episode, Throttle
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.backoff import Backoff
from sfox_exporter.sfox.connection import Connection, Connector, HandshakeRefused
from sfox_exporter.sfox.decode import (
    BALANCES_FEED,
    BadFrame,
    BalanceUpdate,
    ControlMessage,
    Event,
    parse_frame,
    sanitize_text,
)
from sfox_exporter.sfox.frames import OP_CLOSE, OP_PING, OP_PONG, OP_TOO_BIG
from sfox_exporter.sfox.ratelimit import RequestBudget, Reservation, parse_retry_after
from sfox_exporter.vocabulary import ErrorReason, FeedStatus

log = logging.getLogger("sfox_exporter.sfox.feed")

CONNECT_TIMEOUT_SECONDS = 10.0
# The shortest time a reply to authenticate is awaited, whatever ping_timeout says.
MIN_REPLY_TIMEOUT_SECONDS = 5.0
# sFOX documents no reply to subscribe: silence this long counts as subscribed.
SUBSCRIBE_GRACE_SECONDS = 2.0
# sFOX blocks an IP for 2 minutes after a breach of its limits; a 429 without Retry-After means that.
BLOCKED_SECONDS = 120.0
# A connection that stayed up this long resets the backoff to its initial delay; one dropped sooner
# (say, right after subscribing, again and again) keeps backing off further.
HEALTHY_SECONDS = 10.0
REQUESTS_PER_CONNECTION = 2  # authenticate and subscribe

AUTHENTICATING, SUBSCRIBING, STREAMING = "authenticating", "subscribing", "streaming"


class SequenceChecker:
    """sFOX numbers the messages of a connection; a gap or a step back means something was lost.

    Data messages are checked against each other. How the replies to authenticate and subscribe are
    numbered varies (the protocol notes show both with sequence 1, and a counter shared with the data
    is inferred), so replies only place the first data message: a first number beyond the last reply
    + 1 is a gap under any scheme, anything lower means the data is counted apart. A control message
    later on, like a frame whose number cannot be read (not JSON, say; already counted as a decode or
    schema error), may have used a number, so it lets the next one be one higher.
    """

    def __init__(self) -> None:
        self.last: int | None = None  # the last data message's number
        self._reply: int | None = None  # the highest number on a reply before any data
        self._allowance = 0

    def check(self, sequence: int | None, control: bool = False) -> bool:
        """Record a message's number; True when it shows something lost."""
        if sequence is None or (control and self.last is not None):
            self._allowance += 1
            return False
        if control:
            self._reply = sequence if self._reply is None else max(self._reply, sequence)
            return False
        last, allowance = self.last, self._allowance
        self.last, self._allowance = sequence, 0
        if last is None:
            return self._reply is not None and sequence > self._reply + 1 + allowance
        return not last < sequence <= last + 1 + allowance


@dataclass
class _Outcome:
    """How one connection ended."""

    reason: ErrorReason | Literal["stopped"]
    detail: str
    up_seconds: float = 0.0
    rejected: bool = False
    wait_at_least: float = 0.0  # what sFOX asked for, when it did


class _SessionEnd(Exception):
    def __init__(self, reason: ErrorReason | Literal["stopped"], detail: str, rejected: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.rejected = rejected


class FeedReader:
    def __init__(
        self,
        account: AccountConfig,
        *,
        ws_url: str,
        feed: FeedConfig,
        state: State,
        budget: RequestBudget,
        connector: Connector,
        clock: Clock,
        request_snapshot: Callable[[str], None],
        stop: threading.Event,
        rng: random.Random | None = None,
        on_key: Callable[[Secret], None] = lambda key: None,
    ) -> None:
        self.account = account.name
        self._key_source = account.key
        self._ws_url = ws_url
        self._feed = feed
        self._state = state
        self._budget = budget
        self._connector = connector
        self._clock = clock
        self._request_snapshot = request_snapshot
        self._stop = stop
        self._backoff = Backoff(feed.backoff_initial_seconds, feed.backoff_max_seconds, rng or random.Random())
        self._on_key = on_key
        self._key: Secret | None = None
        self._connection: Connection | None = None
        self._connection_lock = threading.Lock()
        self._failures = Episode(log, self.account)
        self._rejections = Episode(log, self.account, logging.ERROR)
        self._throttle = Throttle(clock)
        self._reply_timeout = max(feed.ping_timeout_seconds, MIN_REPLY_TIMEOUT_SECONDS)
        self.thread = threading.Thread(target=self.run, name=f"feed-{self.account}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Cut the current connection short; used on shutdown with the stop event set."""
        with self._connection_lock:
            if self._connection is not None:
                self._connection.abort()

    def run(self) -> None:
        first = True
        while not self._stop.is_set():
            if not first:
                self._state.count_reconnect(self.account)
            first = False
            try:
                outcome = self._connect_once()
            except Exception:  # a bug must cost a reconnect, never the feed thread
                log.exception("unexpected error in the feed thread", extra={"account": self.account})
                self._state.count_error(self.account, ErrorReason.CONNECTION)
                outcome = _Outcome(ErrorReason.CONNECTION, "unexpected error")
            if self._stop.is_set():
                break
            self._stop.wait(self._ended(outcome))
        self._state.set_status(self.account, FeedStatus.STOPPED)

    def _ended(self, outcome: _Outcome) -> float:
        """Show and log how a connection ended; returns how long to wait before the next one."""
        self._state.set_status(self.account, FeedStatus.AUTH_REJECTED if outcome.rejected else FeedStatus.BACKING_OFF)
        if outcome.up_seconds >= HEALTHY_SECONDS:
            self._backoff.reset()
        delay = max(self._backoff.next(), outcome.wait_at_least)
        if outcome.rejected:
            self._rejections.failed(
                "sFOX rejected the API key (%s); retrying with backoff, next attempt in %.1fs", outcome.detail, delay)
        else:
            self._failures.failed("feed connection failed (%s: %s); reconnecting in %.1fs",
                                  outcome.reason, outcome.detail, delay)
        return delay

    def _connect_once(self) -> _Outcome:
        key = self._load_key()
        if key is None:
            self._state.count_error(self.account, ErrorReason.AUTH)
            return _Outcome(ErrorReason.AUTH, "no API key could be loaded")
        self._progress(FeedStatus.CONNECTING)
        with self._budget.connection(self._stop) as granted:
            if not granted:
                return _Outcome("stopped", "")
            reservation = self._budget.reserve(REQUESTS_PER_CONNECTION, self._stop)
            if reservation is None:
                return _Outcome("stopped", "")
            try:
                return self._connect_and_read(key, reservation)
            finally:
                reservation.release()

    def _connect_and_read(self, key: Secret, reservation: Reservation) -> _Outcome:
        try:
            connection = self._connector(self._ws_url, CONNECT_TIMEOUT_SECONDS)
        except HandshakeRefused as refused:
            self._state.count_error(self.account, ErrorReason.CONNECTION)
            wait = 0.0
            if refused.status == 429:
                wait = parse_retry_after(refused.retry_after, self._clock.time(), BLOCKED_SECONDS)
            return _Outcome(ErrorReason.CONNECTION, str(refused), wait_at_least=wait)
        except Exception as error:  # noqa: BLE001 - any failure to connect is a connection error
            self._state.count_error(self.account, ErrorReason.CONNECTION)
            return _Outcome(ErrorReason.CONNECTION, _describe(error))
        with self._connection_lock:
            self._connection = connection
        session = _Session(self, connection, reservation)
        try:
            session.converse(key)
            return _Outcome("stopped", "")
        except _SessionEnd as end:
            if end.reason != "stopped":
                self._state.count_error(self.account, end.reason)
            return _Outcome(end.reason, end.detail, session.up_seconds(), end.rejected)
        except Exception as error:  # noqa: BLE001 - a broken socket surfaces as many exception types
            if self._stop.is_set():
                return _Outcome("stopped", "")
            self._state.count_error(self.account, ErrorReason.CONNECTION)
            return _Outcome(ErrorReason.CONNECTION, _describe(error), session.up_seconds())
        finally:
            with self._connection_lock:
                self._connection = None
            self._progress(FeedStatus.BACKING_OFF)
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a dead socket can fail in many ways
                log.debug("closing the connection failed", extra={"account": self.account})

    def _progress(self, status: FeedStatus) -> None:
        """Show a step of the next attempt, unless the key was rejected: that stays the news until
        sFOX accepts it, since with a rejected key most of the time goes into waiting for a retry.
        Only this thread sets the account's status, so reading it first is no race."""
        if self._state.status(self.account) != FeedStatus.AUTH_REJECTED:
            self._state.set_status(self.account, status)

    def _load_key(self) -> Secret | None:
        """Read the key again on every attempt, so a rotated key file is picked up."""
        try:
            self._key = self._key_source.load()
            self._on_key(self._key)
        except ConfigError as error:
            if self._key is None:
                log.error("cannot load the API key: %s", error, extra={"account": self.account})
                return None
            if self._throttle.allow("key"):
                log.warning("cannot reload the API key, using the previous one: %s", error,
                            extra={"account": self.account})
        return self._key

    # --- what sessions report back ------------------------------------------------------------

    def _went_up(self) -> None:
        self._state.set_status(self.account, FeedStatus.UP)
        self._rejections.recovered("sFOX accepted the API key again")
        self._failures.recovered("feed connected")
        log.info("feed up: authenticated and subscribed to %s", BALANCES_FEED, extra={"account": self.account})
        self._request_snapshot("connected")

    def _sequence_anomaly(self, last: int | None, sequence: int | None) -> None:
        self._state.count_error(self.account, ErrorReason.SEQUENCE)
        if self._throttle.allow("sequence"):
            log.warning("sequence jumped from %s to %s; resyncing from a REST snapshot", last, sequence,
                        extra={"account": self.account})
        self._request_snapshot("sequence")

    def _bad_input(self, what: str) -> None:
        if self._throttle.allow(what):
            log.warning("ignored %s from sFOX (counted in sfox_feed_errors_total)", what,
                        extra={"account": self.account})


class _Session:
    """One connection's conversation: handshake, then the stream, with pings throughout."""

    def __init__(self, reader: FeedReader, connection: Connection, reservation: Reservation) -> None:
        self._reader = reader
        self._connection = connection
        self._reservation = reservation
        self._clock = reader._clock
        self._feed = reader._feed
        self._sequence = SequenceChecker()
        self._phase = AUTHENTICATING
        self._phase_deadline = 0.0
        self._next_ping = 0.0
        self._pong_deadline: float | None = None
        self._up_at: float | None = None

    def up_seconds(self) -> float:
        return 0.0 if self._up_at is None else self._clock.monotonic() - self._up_at

    def converse(self, key: Secret) -> None:
        reader = self._reader
        now = self._clock.monotonic()
        self._send({"type": "authenticate", "apiKey": key.reveal()})
        reader._progress(FeedStatus.AUTHENTICATING)
        self._phase_deadline = now + reader._reply_timeout
        self._next_ping = now + self._feed.ping_interval_seconds
        stop = reader._stop
        while not stop.is_set():
            frame = self._connection.receive(self._next_deadline())
            now = self._clock.monotonic()
            if frame is not None:
                self._on_frame(*frame)
            self._on_time(now)
        raise _SessionEnd("stopped", "")

    def _next_deadline(self) -> float:
        deadline = self._next_ping
        if self._pong_deadline is not None:
            deadline = min(deadline, self._pong_deadline)
        if self._phase != STREAMING:
            deadline = min(deadline, self._phase_deadline)
        return deadline

    def _on_time(self, now: float) -> None:
        if self._pong_deadline is not None and now >= self._pong_deadline:
            raise _SessionEnd(ErrorReason.CONNECTION, f"no pong within {self._feed.ping_timeout_seconds:g}s")
        if self._phase != STREAMING and now >= self._phase_deadline:
            if self._phase == AUTHENTICATING:
                raise _SessionEnd(ErrorReason.AUTH, "no reply to authenticate", rejected=False)
            # sFOX documents no subscribe reply; older servers send none. Silence is not refusal.
            log.debug("no reply to subscribe; assuming subscribed", extra={"account": self._reader.account})
            self._streaming(now)
        if now >= self._next_ping:
            self._connection.ping(b"sfox-exporter")
            if self._pong_deadline is None:
                self._pong_deadline = now + self._feed.ping_timeout_seconds
            self._next_ping = now + self._feed.ping_interval_seconds

    def _on_frame(self, opcode: int, payload: bytes | bytearray) -> None:
        reader = self._reader
        if opcode == OP_PONG:
            self._pong_deadline = None
            return
        if opcode == OP_PING:
            self._connection.pong(bytes(payload))
            return
        if opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            text = sanitize_text(bytes(payload[2:]).decode("utf-8", "replace"))
            detail = f"sFOX closed the connection (code {code}{', ' + text if text else ''})"
            raise _SessionEnd(ErrorReason.CONNECTION, detail)
        event: Event
        if opcode == OP_TOO_BIG:
            event = BadFrame("decode")
            reader._bad_input("a message over the size limit")
        else:
            event = parse_frame(payload)
        last = self._sequence.last
        anomaly = self._sequence.check(event.sequence, control=isinstance(event, ControlMessage))
        reader._state.ingest(reader.account, event)
        if anomaly:  # after the message is stored, so that the resync starts from what it said
            reader._sequence_anomaly(last, event.sequence)
        if isinstance(event, ControlMessage):
            self._on_control(event)
        elif isinstance(event, BadFrame):
            reader._bad_input("an undecodable frame" if event.reason == "decode" else "a message of the wrong shape")
        elif isinstance(event, BalanceUpdate) and event.schema_errors:
            reader._bad_input("invalid balance entries")
        elif event.schema_errors:
            reader._bad_input("a message of no known shape")
        if isinstance(event, BalanceUpdate) and self._phase == SUBSCRIBING:
            self._streaming(self._clock.monotonic())  # data flows, so the subscription took

    def _on_control(self, message: ControlMessage) -> None:
        reader = self._reader
        detail = f"{message.type}{': ' + message.detail if message.detail else ''}"
        # The documented replies name their action; an error naming another one, or none, during a
        # handshake step is taken as the answer to that step (the protocol notes call this inferred).
        failed = not message.success
        if self._phase == AUTHENTICATING and (message.action in (None, "authenticate") or failed):
            if failed:
                raise _SessionEnd(ErrorReason.AUTH, f"authenticate answered {detail}", rejected=True)
            self._send({"type": "subscribe", "feeds": [BALANCES_FEED]})
            self._phase = SUBSCRIBING
            self._phase_deadline = self._clock.monotonic() + min(reader._reply_timeout, SUBSCRIBE_GRACE_SECONDS)
            reader._state.set_status(reader.account, FeedStatus.SUBSCRIBING)
        elif self._phase == SUBSCRIBING and (message.action in (None, "subscribe")
                                             or (failed and message.action != "authenticate")):
            if failed:
                raise _SessionEnd(ErrorReason.SUBSCRIBE, f"subscribe answered {detail}")
            self._streaming(self._clock.monotonic())
        elif failed and message.action == "subscribe":  # a refusal after the grace period still counts
            raise _SessionEnd(ErrorReason.SUBSCRIBE, f"subscribe answered {detail}")
        elif failed and reader._throttle.allow("control error"):
            log.warning("sFOX sent %s (action %s)", detail, message.action, extra={"account": reader.account})

    def _streaming(self, now: float) -> None:
        self._phase = STREAMING
        self._up_at = now
        self._reader._went_up()

    def _send(self, request: dict[str, object]) -> None:
        self._connection.send_text(json.dumps(request))
        self._reservation.spend()


def _describe(error: BaseException) -> str:
    """An exception as a short, printable, key-free phrase for a log line."""
    text = sanitize_text(str(error)) if str(error) else ""
    name = type(error).__name__
    return f"{name}: {text}" if text else name
