"""Who holds a connection slot, in which phase and since when; whom to evict when full.

Slow and silent clients (slowloris) must never lock out a scrape. A connection that is still
handshaking, waiting for a request or receiving a request head is "unfinished": it holds a thread
but has given us nothing to answer, so when the server is full, or one address holds its share,
the oldest unfinished connection of the address holding the most is closed to make room; one only
just accepted gets a moment (GRACE_SECONDS) to send its request first, or a burst of scrapes would
evict each other: in that moment the caps may be exceeded, up to twice (HARD_FACTOR). At the doubled
caps the moment is over, and the oldest unfinished connection goes however new.

Busy connections (a request being answered) are closed only when the doubled caps are reached and
no unfinished one is left to close: then the one busy the longest goes, if it has been busy for
`busy_grace` seconds (a second). A client that reads its answers slowly, or queues wrong passwords
behind bcrypt, can keep a connection busy; from a few addresses, or from many with one connection
each, it could otherwise hold every slot and lock out the scrapes and probes of everyone else. A
scrape is busy for milliseconds, so it is never the one busy the longest while such clients hold
the rest. Nothing here waits: admit() runs in the accept loop, where a wait would hold up every
connection queued behind it.

Each phase also has a deadline, enforced from the accept loop, since a socket timeout only bounds
one read or write and a client can trickle bytes forever: busy included, so that an answer read a
few bytes at a time ends at the write deadline.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("sfox_exporter.http")

GRACE_SECONDS = 0.25
HARD_FACTOR = 2


class Phase(enum.StrEnum):
    HANDSHAKE = "handshake"
    IDLE = "idle"
    HEAD = "head"
    BUSY = "busy"


@dataclass(eq=False)
class Connection:
    sock: socket.socket
    address: str
    phase: Phase = Phase.HANDSHAKE
    since: float = field(default_factory=time.monotonic)


class Connections:
    def __init__(self, max_total: int, max_per_address: int, deadlines: dict[Phase, float],
                 busy_grace: float = 1.0) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.deadlines = deadlines
        self.busy_grace = busy_grace
        self.evicted = 0
        self._entries: dict[object, Connection] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def phases(self) -> Counter[Phase]:
        with self._lock:
            return Counter(entry.phase for entry in self._entries.values())

    def admit(self, key: object, sock: socket.socket, address: str) -> Connection | None:
        """A slot for a new connection, evicting another if need be; None when none can go. Never
        waits: the accept loop calls this, and every connection queued behind it would wait too."""
        with self._lock:
            while True:
                per_address = sum(1 for entry in self._entries.values() if entry.address == address)
                over_address = per_address >= self.max_per_address
                now = time.monotonic()
                if over_address or len(self._entries) >= self.max_total:
                    victim = self._victim(address if over_address else None, now, GRACE_SECONDS)
                    if victim is not None:
                        self._evict(victim, "full")
                        continue
                # Every slot is busy or only just taken: up to twice the caps, the newcomer still
                # gets in, so that a burst of scrapes does not evict each other.
                hard_address, hard_total = HARD_FACTOR * self.max_per_address, HARD_FACTOR * self.max_total
                if per_address < hard_address and len(self._entries) < hard_total:
                    entry = Connection(sock, address)
                    self._entries[key] = entry
                    return entry
                # At the doubled caps, the grace ends: the oldest unfinished connection goes however
                # new (of the newcomer's address, if that is the one over its cap), and failing that,
                # for a newcomer within its share, the connection busy the longest.
                at_address_cap = per_address >= hard_address
                victim = self._victim(address if at_address_cap else None, now, 0.0)
                if victim is None and not at_address_cap:
                    victim = self._busy_victim(now)
                if victim is None:
                    return None
                self._evict(victim, "full")

    def entry(self, key: object) -> Connection | None:
        with self._lock:
            return self._entries.get(key)

    def set_phase(self, entry: Connection, phase: Phase) -> None:
        with self._lock:
            entry.phase, entry.since = phase, time.monotonic()

    def release(self, key: object) -> Connection | None:
        with self._lock:
            entry = self._entries.pop(key, None)
        return entry

    def reap(self) -> None:
        """Close connections whose phase has outlasted its deadline."""
        now = time.monotonic()
        with self._lock:
            late = [key for key, entry in self._entries.items()
                    if entry.phase in self.deadlines and now - entry.since > self.deadlines[entry.phase]]
            for key in late:
                self._evict(key, "deadline")

    def _victim(self, address: str | None, now: float, grace: float) -> object | None:
        """The oldest unfinished connection of `address`, or of the address holding the most, that
        has had `grace` seconds to send its request."""
        unfinished = [(key, entry) for key, entry in self._entries.items()
                      if entry.phase != Phase.BUSY and now - entry.since >= grace]
        if address is None:
            counts = Counter(entry.address for _, entry in unfinished)
            if not counts:
                return None
            address = counts.most_common(1)[0][0]
        candidates = [(entry.since, index, key) for index, (key, entry) in enumerate(unfinished)
                      if entry.address == address]
        return min(candidates)[2] if candidates else None

    def _busy_victim(self, now: float) -> object | None:
        """The connection busy the longest, if for `busy_grace` seconds at least."""
        busy = [(entry.since, index, key) for index, (key, entry) in enumerate(self._entries.items())
                if entry.phase == Phase.BUSY and now - entry.since >= self.busy_grace]
        return min(busy)[2] if busy else None

    def _evict(self, key: object, why: str) -> None:
        entry = self._entries.pop(key)
        self.evicted += 1
        log.debug("closing a %s connection from %s (%s)", entry.phase, entry.address, why)
        # The socket's own thread is blocked in it; shutting down the descriptor (not the ssl layer,
        # which that thread owns) wakes it with an end of file.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(entry.sock, socket.SHUT_RDWR)
