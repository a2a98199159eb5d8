"""One conversation with sFOX's WebSocket, sans I/O: frames and time in, actions out.

Modelled on h11's `Connection` and websockets' `protocol.py`: the object never touches a socket or
a clock. The feed worker feeds it frames (`receive`) and the time (`tick`), asks it when it next
needs to be woken (`next_deadline`), and carries out the actions it returns: send a request (which
costs one request of sFOX's per-IP budget), ping, pong, report the feed up, deliver a decoded event,
resync after a sequence anomaly, or end the connection.

The same object drives the exporter's three conversations: a user account (`private.user.balances`),
an enterprise account (sFOX Connect, authenticated with the `enterprise` flag,
`private.enterprise.users.balances`) and market data (ticker feeds, more of them as it runs).
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from sfox_exporter.config import Secret
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
from sfox_exporter.sfox.decode import (
    BALANCES_FEED,
    END_USERS_FEED,
    TICKER_PREFIX,
    BadFrame,
    BalanceUpdate,
    ControlMessage,
    EndUserBalances,
    Event,
    Ticker,
    parser_for,
    sanitize_text,
)
from sfox_exporter.sfox.frames import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_FRAGMENTS,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TOO_BIG,
)
from sfox_exporter.sfox.sequence import SequenceChecker
from sfox_exporter.vocabulary import ErrorReason, FeedStatus

# The feed names the decoder knows its messages by.
ACCOUNT_FEED = BALANCES_FEED
ENTERPRISE_FEED = END_USERS_FEED
PING_PAYLOAD = b"sfox-exporter"
# The shortest time a reply to authenticate is awaited, whatever ping_timeout says.
MIN_REPLY_TIMEOUT_SECONDS = 5.0
# sFOX documents no reply to subscribe: silence this long counts as subscribed.
SUBSCRIBE_GRACE_SECONDS = 2.0
MAX_UNANSWERED = 16  # subscribes kept waiting for their answer: a server that never answers fills no memory

TOO_BIG = f"a message over the size limit ({DEFAULT_MAX_MESSAGE_BYTES >> 20} MiB or {MAX_FRAGMENTS} fragments)"


def ticker_feed(pair: str) -> str:
    return TICKER_PREFIX + pair


class Phase(StrEnum):
    AUTHENTICATING = "authenticating"
    SUBSCRIBING = "subscribing"
    STREAMING = "streaming"
    ENDED = "ended"


@dataclass(frozen=True)
class SessionSettings:
    """What a conversation asks of sFOX, and its clocks."""

    feeds: tuple[str, ...]
    ping_interval: float
    ping_timeout: float
    # The `enterprise` field of authenticate: None for a user key; True, or "true" for the servers
    # whose pages show a string (the protocol notes: sFOX's own pages disagree).
    enterprise: bool | str | None = None
    subscribe_grace: float = SUBSCRIBE_GRACE_SECONDS
    # Many feeds, each of which sFOX may refuse alone (market data: a delisted pair): a refused
    # subscribe is counted and the connection goes on with what sFOX took, instead of ending.
    partial_subscribe: bool = False

    @property
    def reply_timeout(self) -> float:
        return max(self.ping_timeout, MIN_REPLY_TIMEOUT_SECONDS)

    @property
    def subscribe_wait(self) -> float:
        """How long silence after subscribe lasts before it counts as subscribed."""
        return min(self.reply_timeout, self.subscribe_grace)


class Session:
    """The protocol state of one connection. Not thread-safe: one worker thread drives it."""

    def __init__(self, settings: SessionSettings, key: Secret) -> None:
        self.settings = settings
        self._key = key
        self.phase = Phase.AUTHENTICATING
        self.up_at: float | None = None
        self.subscribed: tuple[str, ...] = ()
        self._sequence = SequenceChecker()
        self._phase_deadline = 0.0
        self._next_ping = 0.0
        self._pong_deadline: float | None = None
        self._pending_feeds: list[str] = []
        # Feeds of each subscribe not yet answered, oldest first: sFOX answers in order, late ones too.
        self._requests: deque[tuple[str, ...]] = deque(maxlen=MAX_UNANSWERED)
        self._omitted: set[str] = set()  # left out of an answer once already: the next time is a refusal
        self._parse = parser_for(settings.feeds)

    # --- inputs --------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """The connection is open: authenticate."""
        request: dict[str, object] = {"type": "authenticate", "apiKey": self._key.reveal()}
        if self.settings.enterprise is not None:
            request["enterprise"] = self.settings.enterprise
        self._phase_deadline = now + self.settings.reply_timeout
        self._next_ping = now + self.settings.ping_interval
        return [SendRequest(json.dumps(request), "authenticate"), StatusChanged(FeedStatus.AUTHENTICATING)]

    def receive(self, opcode: int, payload: bytes | bytearray, now: float) -> list[Action]:
        """A message or control frame from sFOX."""
        if self.phase is Phase.ENDED:
            return []
        if opcode in (OP_PONG, OP_PING, OP_CLOSE):
            return self._on_control_frame(opcode, bytes(payload))
        actions: list[Action] = []
        event: Event
        if opcode == OP_TOO_BIG:
            event = BadFrame("decode")
            actions.append(Ignored(TOO_BIG))
        else:
            try:
                event = self._parse(payload)
            except Exception:  # noqa: BLE001 - a decoder bug must cost one frame, never the connection
                event = BadFrame("decode")
                actions.append(Ignored("a frame the decoder failed on"))
        last = self._sequence.reference
        kind = type(event)
        control = kind is ControlMessage
        data = kind in _DATA_EVENTS
        anomaly = self._sequence.check(event.sequence, control=control)
        if data and self.phase is Phase.AUTHENTICATING:
            # Until sFOX accepts the key, nothing it says is the account's: a rejected key must
            # never have exported balances.
            actions.append(Ignored("data sent before authenticate was answered", counted=False))
            return actions
        actions.append(Deliver(event))
        if anomaly:  # after the message is delivered, so that the resync starts from what it said
            actions.append(Resync(last, event.sequence))
        if control:
            if event.schema_errors:
                actions.append(Ignored("invalid fields (type, action or sequence) of a control message"))
            actions.extend(self._on_control(cast(ControlMessage, event), now))
        elif isinstance(event, BadFrame):
            actions.append(Ignored("an undecodable frame" if event.reason == "decode"
                                   else "a message of the wrong shape"))
        elif event.schema_errors:
            actions.append(Ignored("invalid entries or envelope fields (sequence, timestamp)" if data
                                   else "a message of no known shape"))
        if data and self.phase is Phase.SUBSCRIBING:
            actions.extend(self._streaming(now))  # data flows, so the subscription took
        return actions

    def tick(self, now: float, receiving_since: float | None = None) -> list[Action]:
        """Time passed: pings, the pong deadline, handshake deadlines, a frame arriving too slowly."""
        if self.phase is Phase.ENDED:
            return []
        timeout = self.settings.ping_timeout
        if self._pong_deadline is not None and now >= self._pong_deadline:
            return self._end(ErrorReason.CONNECTION, f"no pong within {timeout:g}s")
        if receiving_since is not None and now - receiving_since > timeout:
            return self._end(ErrorReason.CONNECTION, f"a message took longer than {timeout:g}s to arrive")
        actions: list[Action] = []
        if self.phase is not Phase.STREAMING and now >= self._phase_deadline:
            if self.phase is Phase.AUTHENTICATING:
                return self._end(ErrorReason.AUTH, "no reply to authenticate")
            # sFOX documents a reply, in three shapes over the years, and no refusal: silence is taken
            # for success, leniently, but said, since a subscription that did not take looks just
            # like a quiet balances feed.
            actions.append(Ignored(f"no reply to subscribe within {self.settings.subscribe_wait:g}s "
                                   "(taken as subscribed)", counted=False))
            actions.extend(self._streaming(now))
        if now >= self._next_ping:
            actions.append(SendPing(PING_PAYLOAD))
            if self._pong_deadline is None:
                self._pong_deadline = now + timeout
            self._next_ping = now + self.settings.ping_interval
        return actions

    def subscribe(self, feeds: Iterable[str]) -> list[Action]:
        """More feeds (the market connection, when a currency appears): one request for all of them
        once streaming; before that they join the handshake's subscribe."""
        new = self.unsubscribed(feeds)
        if not new or self.phase is Phase.ENDED:
            return []
        if self.phase is not Phase.STREAMING:
            self._pending_feeds.extend(new)
            return []
        self.subscribed += tuple(new)
        self._requests.append(tuple(new))
        return [SendRequest(json.dumps({"type": "subscribe", "feeds": new}), "subscribe")]

    def unsubscribed(self, feeds: Iterable[str]) -> list[str]:
        """The feeds of `feeds` neither subscribed nor waiting to be."""
        taken = {*self.subscribed, *self._pending_feeds}
        return [feed for feed in dict.fromkeys(feeds) if feed not in taken]

    # --- what the worker asks ----------------------------------------------------------------

    def next_deadline(self, receiving_since: float | None = None) -> float:
        """When tick() must run next; `receiving_since` as for tick(), since a message that stalls
        halfway must end the connection at ping_timeout, not at the next ping."""
        deadline = self._next_ping
        if receiving_since is not None:
            deadline = min(deadline, receiving_since + self.settings.ping_timeout)
        if self._pong_deadline is not None:
            deadline = min(deadline, self._pong_deadline)
        if self.phase in (Phase.AUTHENTICATING, Phase.SUBSCRIBING):
            deadline = min(deadline, self._phase_deadline)
        return deadline

    def up_seconds(self, now: float) -> float:
        return 0.0 if self.up_at is None else now - self.up_at

    # --- internals ---------------------------------------------------------------------------

    def _on_control_frame(self, opcode: int, payload: bytes) -> list[Action]:
        if opcode == OP_PING:
            return [SendPong(payload)]
        if opcode == OP_PONG:
            # Ours echoed (or empty, from a lax server or proxy): an unsolicited pong proves no ping was read.
            if payload in (PING_PAYLOAD, b""):
                self._pong_deadline = None
            return []
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
        text = sanitize_text(payload[2:].decode("utf-8", "replace"))
        return self._end(ErrorReason.CONNECTION,
                         f"sFOX closed the connection (code {code}{', ' + text if text else ''})")

    def _on_control(self, message: ControlMessage, now: float) -> list[Action]:
        if message.notice:  # answers nothing: taken as a refusal, one "info" on connecting failed every key
            return []
        detail = f"{message.type}{': ' + message.detail if message.detail else ''}"
        # The documented replies name their action; an error naming another one, or none, during a
        # handshake step is taken as the answer to that step (the protocol notes call this inferred).
        failed = not message.success
        if self.phase is Phase.AUTHENTICATING and (message.action in (None, "authenticate") or failed):
            if failed:
                return self._end(ErrorReason.AUTH, f"authenticate answered {detail}", rejected=True)
            feeds = [*self.settings.feeds, *(f for f in self._pending_feeds if f not in self.settings.feeds)]
            self._pending_feeds = []
            self.subscribed = tuple(feeds)
            self._requests.append(self.subscribed)
            self.phase = Phase.SUBSCRIBING
            self._phase_deadline = now + self.settings.subscribe_wait
            return [SendRequest(json.dumps({"type": "subscribe", "feeds": feeds}), "subscribe"),
                    StatusChanged(FeedStatus.SUBSCRIBING)]
        if self.phase is Phase.SUBSCRIBING and (message.action in (None, "subscribe")
                                                or (failed and message.action != "authenticate")):
            if failed and self.settings.partial_subscribe:
                refusal = self._refused(message, detail)
                return refusal if any(isinstance(action, Ended) for action in refusal) else [
                    *refusal, *self._streaming(now)]
            if failed:
                return self._end(ErrorReason.SUBSCRIBE, f"subscribe answered {detail}")
            return [*self._checked(message), *self._streaming(now)]
        answers = message.action == "subscribe" or (message.action is None and bool(self._requests))
        if message.success and answers:  # the answer to a later subscribe, or one after the grace period
            return self._checked(message)
        if failed and answers:  # a refusal after the grace period still counts, named or not
            if self.settings.partial_subscribe:
                return self._refused(message, detail)
            return self._end(ErrorReason.SUBSCRIBE, f"subscribe answered {detail}")
        if failed:
            return [Ignored("a control message", counted=False, detail=f"{detail}, action {message.action}")]
        return []

    def _streaming(self, now: float) -> list[Action]:
        self.phase = Phase.STREAMING
        self.up_at = now
        actions: list[Action] = [WentUp(self.subscribed)]
        if self._pending_feeds:  # asked for while the handshake's subscribe was on its way
            pending, self._pending_feeds = self._pending_feeds, []
            actions.extend(self.subscribe(pending))
        return actions

    def _checked(self, message: ControlMessage) -> list[Action]:
        """sFOX's answer lists every feed subscribed (protocol notes): one asked for and left out did
        not take. On a connection of many feeds it is asked for once more, then taken as refused."""
        request = self._answered()
        if not (self.settings.partial_subscribe and message.feeds):
            return []
        listed = set(message.feeds)
        missing = dict.fromkeys(feed for feed in request if feed not in listed)  # in order, and quick to look in
        if not missing:
            return []
        refused = tuple(feed for feed in missing if feed in self._omitted)
        self._omitted.update(missing)
        self.subscribed = tuple(feed for feed in self.subscribed if feed not in missing)
        return [Ignored("feeds left out of sFOX's answer to subscribe", reason=ErrorReason.SUBSCRIBE,
                        detail=f"{len(missing)} feed(s), such as {next(iter(missing))}", refused=refused,
                        ask_again=len(refused) < len(missing))]

    def _refused(self, message: ControlMessage, detail: str) -> list[Action]:
        """A subscribe refused on a connection of many feeds. The feeds it names (in payload.feeds, or
        in its text) are not asked for again; the rest are taken to stream, as their tickers will show.
        One naming no feed (a rate limit, say), or every one, refuses the request: the connection ends,
        as on any other, lest it show up with nothing streaming."""
        self._answered()
        named = {*message.feeds, *re.findall(r"[\w.-]+", message.detail or "")}
        refused = tuple(feed for feed in self.subscribed if feed in named)
        if not refused or len(refused) == len(self.subscribed):
            remembered = [Ignored("a refused subscription", detail=detail, refused=refused)] if refused else []
            return [*remembered, *self._end(ErrorReason.SUBSCRIBE, f"subscribe answered {detail}")]
        self.subscribed = tuple(feed for feed in self.subscribed if feed not in named)
        return [Ignored("a refused subscription", detail=f"{detail} ({len(refused)} feed(s) dropped)",
                        reason=ErrorReason.SUBSCRIBE, refused=refused)]

    def _answered(self) -> tuple[str, ...]:
        """The feeds of the oldest subscribe not yet answered, now answered; () when none is waiting."""
        return self._requests.popleft() if self._requests else ()

    def _end(self, reason: ErrorReason, detail: str, rejected: bool = False) -> list[Action]:
        self.phase = Phase.ENDED
        return [Ended(reason, detail, rejected)]


_DATA_EVENTS = frozenset({BalanceUpdate, EndUserBalances, Ticker})
