"""Who holds a connection slot, in which phase and since when; whom to evict when full.

Slow and silent clients (slowloris) must never lock out a scrape. A connection that is still
handshaking, waiting for a request or receiving a request head is "unfinished": it holds a thread
but has given us nothing to answer, so when the server is full, or one address holds its share,
the oldest unfinished connection of the address holding the most is closed to make room; one only
just accepted gets a moment (GRACE_SECONDS) to send its request first, or a burst of scrapes would
evict each other: in that moment the caps may be exceeded, up to twice (HARD_FACTOR).

Busy connections (a request being answered) are closed only when even the doubled caps are reached:
then the address holding the most gives up its oldest busy one, if it holds more than the newcomer's
address does. A client that reads its answers slowly, or queues wrong passwords behind bcrypt, can
keep a connection busy; from a few addresses it could otherwise hold every slot and lock out the
scrapes and probes of everyone else.

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
    def __init__(self, max_total: int, max_per_address: int, deadlines: dict[Phase, float]) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.deadlines = deadlines
        self.evicted = 0
        self._entries: dict[object, Connection] = {}
        self._changed = threading.Condition()

    def __len__(self) -> int:
        return len(self._entries)

    def phases(self) -> Counter[Phase]:
        with self._changed:
            return Counter(entry.phase for entry in self._entries.values())

    def admit(self, key: object, sock: socket.socket, address: str, wait: float) -> Connection | None:
        """A slot for a new connection, evicting an unfinished one if need be; None when every slot
        stays busy for `wait` seconds."""
        deadline = time.monotonic() + wait
        with self._changed:
            while True:
                per_address = sum(1 for entry in self._entries.values() if entry.address == address)
                over_address = per_address >= self.max_per_address
                now = time.monotonic()
                if over_address or len(self._entries) >= self.max_total:
                    victim = self._victim(address if over_address else None, now)
                    if victim is not None:
                        self._evict(victim, "full")
                        continue
                # Every slot is busy or only just taken: up to twice the caps, the newcomer still gets
                # in at once rather than queue behind the accept loop's wait; beyond that it waits.
                hard_address, hard_total = HARD_FACTOR * self.max_per_address, HARD_FACTOR * self.max_total
                if per_address < hard_address and len(self._entries) < hard_total:
                    entry = Connection(sock, address)
                    self._entries[key] = entry
                    return entry
                if per_address < hard_address:
                    victim = self._busy_victim(address, now)
                    if victim is not None:
                        self._evict(victim, "full of busy connections, most of them from one address")
                        continue
                remaining = deadline - now
                if remaining <= 0:
                    return None
                self._changed.wait(min(remaining, GRACE_SECONDS / 5))

    def entry(self, key: object) -> Connection | None:
        with self._changed:
            return self._entries.get(key)

    def set_phase(self, entry: Connection, phase: Phase) -> None:
        with self._changed:
            entry.phase, entry.since = phase, time.monotonic()

    def release(self, key: object) -> Connection | None:
        with self._changed:
            entry = self._entries.pop(key, None)
            self._changed.notify_all()
        return entry

    def reap(self) -> None:
        """Close connections whose phase has outlasted its deadline."""
        now = time.monotonic()
        with self._changed:
            late = [key for key, entry in self._entries.items()
                    if entry.phase in self.deadlines and now - entry.since > self.deadlines[entry.phase]]
            for key in late:
                self._evict(key, "deadline")

    def _victim(self, address: str | None, now: float) -> object | None:
        unfinished = [(key, entry) for key, entry in self._entries.items()
                      if entry.phase != Phase.BUSY and now - entry.since >= GRACE_SECONDS]
        if address is None:
            counts = Counter(entry.address for _, entry in unfinished)
            if not counts:
                return None
            address = counts.most_common(1)[0][0]
        candidates = [(entry.since, index, key) for index, (key, entry) in enumerate(unfinished)
                      if entry.address == address]
        return min(candidates)[2] if candidates else None

    def _busy_victim(self, newcomer: str, now: float) -> object | None:
        """The oldest busy connection of the address holding the most, if that is more than the
        newcomer's address holds and by more than one: never one of the newcomer's own."""
        counts = Counter(entry.address for entry in self._entries.values())
        holder, held = counts.most_common(1)[0]
        if held <= counts[newcomer] + 1:
            return None
        candidates = [(entry.since, index, key) for index, (key, entry) in enumerate(self._entries.items())
                      if entry.address == holder and now - entry.since >= GRACE_SECONDS]
        return min(candidates)[2] if candidates else None

    def _evict(self, key: object, why: str) -> None:
        entry = self._entries.pop(key)
        self._changed.notify_all()
        self.evicted += 1
        log.debug("closing a %s connection from %s (%s)", entry.phase, entry.address, why)
        # The socket's own thread is blocked in it; shutting down the descriptor (not the ssl layer,
        # which that thread owns) wakes it with an end of file.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(entry.sock, socket.SHUT_RDWR)
