"""Taking in what sFOX sends: a flood's buffered frames in batches, and large inputs one at a time.

Under a flood, each pass of a feed's loop takes the frames already buffered behind the first, so
that the state's lock and the render cache are paid once a batch, not once a frame. A batch is
bounded in count and in bytes: decoded, a frame takes ten to twenty times its size until it is
delivered, so a batch of frames at the cap held more than 100 MB.

A safety property no library gives: every connection decodes in its own thread (and every REST
snapshot in another), so ten connections flooded with frames near the cap (then 2 MiB) decoded ten
at once, and the process grew past any container limit (400 to 630 MB). A large input, frame or REST body,
is therefore decoded and applied under one process-wide gate: however many connections, one large
input's worth of decoded objects at a time. A batch is large once its frames come to GATED_BYTES: the
frame that takes it there is decoded under the gate, so that no batch decodes more than that many
bytes outside it (frames just under a higher threshold, two to a batch, slipped through). A
balances message of a hundred currencies is ~25 KB; a flood of them takes the gate every few frames,
which costs a lock, not a wait, while no other connection has a large input.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol

from sfox_exporter.sfox.actions import Action
from sfox_exporter.sfox.session import Phase

BATCH_FRAMES = 32  # more would hold back the first one's delivery for no saving
GATED_BYTES = 64 * 1024  # a batch or REST body of this many bytes is decoded under the gate
BATCH_BYTES = 256 * 1024  # a batch takes no more frames once it holds this many bytes


class _Connection(Protocol):
    def receive(self, deadline: float) -> tuple[int, bytes] | None: ...


class _Session(Protocol):
    phase: Phase

    def receive(self, opcode: int, payload: bytes | bytearray, now: float) -> list[Action]: ...


class LargeInputs:
    """The gate: one large input decoded and applied at a time, process-wide, in the order they came.

    First come, first served, where a plain Lock lets the thread that just let go take it again: under
    a flood on ten connections one of them then waited past ping_timeout with a message half read,
    and its connection was ended. In turn, a connection waits for at most one large input of each of
    the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: collections.deque[threading.Event] = collections.deque()
        self.busy = False  # an input is going through

    def admit(self, size: int, held: contextlib.ExitStack) -> None:
        """Wait for the gate when an input of `size` bytes is large; `held` keeps it until its
        decoded objects are delivered and dropped."""
        if size >= GATED_BYTES:
            held.enter_context(self._turn())

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        with self._lock:
            turn = None
            if self.busy:
                turn = threading.Event()
                self._waiting.append(turn)
            self.busy = True
        if turn is not None:
            turn.wait()  # handed over by the one before, which keeps busy set for us
        try:
            yield
        finally:
            with self._lock:
                if self._waiting:
                    self._waiting.popleft().set()
                else:
                    self.busy = False


LARGE_INPUTS = LargeInputs()  # the process's own; tests inject theirs


def receive_batch(session: _Session, connection: _Connection, frame: tuple[int, bytes], now: float, *,
                  large: LargeInputs, held: contextlib.ExitStack) -> list[Action]:
    """The session's actions for `frame` and the frames already buffered behind it, without waiting
    for more: up to BATCH_FRAMES of them, none taken once they hold BATCH_BYTES. From the frame that
    brings the batch to GATED_BYTES on, they are decoded under the gate, which `held` keeps until the
    batch's actions are carried out."""
    size = len(frame[1])
    large.admit(size, held)
    actions = session.receive(frame[0], frame[1], now)
    for _ in range(BATCH_FRAMES - 1):
        if session.phase is Phase.ENDED or size >= BATCH_BYTES:
            break
        try:
            buffered = connection.receive(0.0)  # a deadline long past: buffered frames only
        except Exception:  # noqa: BLE001 - raised again by the next receive, after this batch is carried out
            # A bad frame behind good ones: the good ones' actions must not be lost with it. The
            # reader raises the same error again (a broken connection stays broken), so the loop's
            # next receive() meets it, as it would have without batching.
            break
        if buffered is None:
            break
        gated = size >= GATED_BYTES
        size += len(buffered[1])
        if not gated:
            large.admit(size, held)
        actions += session.receive(buffered[0], buffered[1], now)
    return actions
