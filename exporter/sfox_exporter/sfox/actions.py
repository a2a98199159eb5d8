"""What a Session asks its worker to do: the actions it returns for frames and time.

Plain values, no behaviour: the sans-I/O session (sfox/session.py) makes them and the feed worker
(sfox/feed.py) carries them out against a socket, the request budget and the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sfox_exporter.sfox.decode import Event
from sfox_exporter.vocabulary import ErrorReason, FeedStatus


@dataclass(frozen=True)
class SendRequest:
    """A request to sFOX; costs one request of the per-IP budget. The text may hold the key."""

    text: str = field(repr=False)
    type: str


@dataclass(frozen=True)
class SendPing:
    payload: bytes


@dataclass(frozen=True)
class SendPong:
    payload: bytes


@dataclass(frozen=True)
class StatusChanged:
    status: FeedStatus


@dataclass(frozen=True)
class WentUp:
    """Authenticated and subscribed: the feed is up."""

    feeds: tuple[str, ...] = field(default=(), compare=False)  # for the log line


@dataclass(frozen=True)
class Deliver:
    """A decoded frame for the state: data, control or bad input, all counted there."""

    event: Event


@dataclass(frozen=True)
class Resync:
    """The sequence shows something lost: ask for a snapshot."""

    last: int | None
    sequence: int | None


@dataclass(frozen=True)
class Ignored:
    """Input worth a (throttled) log line; the counting, when there is any, happens where the event
    is delivered."""

    what: str  # a fixed phrase: the log's throttle is keyed by it
    counted: bool = True  # in the sink's errors_metric
    detail: str = ""  # what sFOX said, for the log line only: a topic of its text would make every line news
    reason: ErrorReason | None = None  # counted by the worker (nothing else delivers it)
    refused: tuple[str, ...] = ()  # feeds sFOX refused by name: not to be asked for again
    ask_again: bool = False  # feeds sFOX's answer left out: the worker asks for them once more


@dataclass(frozen=True)
class Ended:
    """The connection is over: close it, count `reason`, back off."""

    reason: ErrorReason
    detail: str
    rejected: bool = False


Action = SendRequest | SendPing | SendPong | StatusChanged | WentUp | Deliver | Resync | Ignored | Ended
