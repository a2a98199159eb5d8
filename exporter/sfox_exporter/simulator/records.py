"""What the simulator keeps about its peers, and what it saw for tests to assert on."""

from __future__ import annotations

from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection


@dataclass(eq=False)
class SimConnection:
    websocket: ServerConnection
    ip: str
    opened: float
    key: str | None = None
    subscribed: bool = False
    sequence: int = 0
    muted: bool = False  # half-open: reads nothing, answers no ping, sends nothing
    ticks: int = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


@dataclass(frozen=True)
class WsRequest:
    at: float  # time.monotonic()
    ip: str
    type: str
    key: str | None


@dataclass(frozen=True)
class RestRequest:
    at: float
    key: str | None
    status: int


@dataclass
class RestFailure:
    status: int
    retry_after: str | None
    body: bytes


@dataclass
class Limits:
    """sFOX's documented per-IP limits; tests may shrink them."""

    ws_requests: int = 40
    ws_window: float = 60.0
    ws_block: float = 120.0
    connections: int = 10
    rest_requests: int = 5
    rest_window: float = 10.0
    rest_retry_after: int = 10


@dataclass
class Observations:
    """What the simulator saw, for tests to assert on."""

    ws_requests: list[WsRequest] = field(default_factory=list)
    rest_requests: list[RestRequest] = field(default_factory=list)
    connections_opened: int = 0
    max_concurrent_connections: int = 0
    limit_violations: list[str] = field(default_factory=list)
