"""Batches of buffered frames, bounded in count and bytes; large inputs one at a time, process-wide."""

from __future__ import annotations

import contextlib
import threading

from sfox_exporter.sfox.actions import Action, Deliver
from sfox_exporter.sfox.decode import BadFrame
from sfox_exporter.sfox.frames import OP_TEXT
from sfox_exporter.sfox.intake import BATCH_BYTES, BATCH_FRAMES, GATED_BYTES, LargeInputs, receive_batch
from sfox_exporter.sfox.session import Phase

SMALL = b"x" * 100
LARGE = b"x" * BATCH_BYTES


class Buffered:
    """Frames already buffered: receive(0.0) hands them out, then None."""

    def __init__(self, payloads: list[bytes]) -> None:
        self.payloads = list(payloads)

    def receive(self, deadline: float) -> tuple[int, bytes] | None:
        return (OP_TEXT, self.payloads.pop(0)) if self.payloads else None


class Recording:
    """A session that notes the size of each frame it is given, and whether the gate was closed then."""

    phase = Phase.STREAMING

    def __init__(self, large: LargeInputs) -> None:
        self.large = large
        self.seen: list[tuple[int, bool]] = []

    def receive(self, opcode: int, payload: bytes | bytearray, now: float) -> list[Action]:
        self.seen.append((len(payload), self.large.busy))
        return [Deliver(BadFrame("decode"))]


def batch(payloads: list[bytes], large: LargeInputs | None = None) -> tuple[Recording, Buffered, bool]:
    gate = large or LargeInputs()
    session, connection = Recording(gate), Buffered(payloads[1:])
    with contextlib.ExitStack() as held:
        receive_batch(session, connection, (OP_TEXT, payloads[0]), 0.0, large=gate, held=held)
        locked_until_carried_out = gate.busy
    assert not gate.busy
    return session, connection, locked_until_carried_out


def test_small_frames_go_in_batches_without_the_gate() -> None:
    session, connection, locked = batch([SMALL] * (BATCH_FRAMES + 5))
    assert session.seen == [(100, False)] * BATCH_FRAMES and len(connection.payloads) == 5
    assert not locked


def test_a_large_frame_ends_the_batch_and_holds_the_gate_until_carried_out() -> None:
    """Decoded, a frame at the cap takes ten to twenty times its size: batched, several of them were
    held at once, and every connection decoded its own at the same time."""
    session, connection, locked = batch([SMALL, SMALL, LARGE, SMALL])
    assert session.seen == [(100, False), (100, False), (len(LARGE), True)]
    assert connection.payloads == [SMALL] and locked
    session, connection, locked = batch([LARGE, SMALL])
    assert session.seen == [(len(LARGE), True)] and connection.payloads == [SMALL] and locked


def test_a_batch_takes_the_gate_at_its_gated_bytes_and_ends_at_its_byte_bound() -> None:
    """Frames just under a per-frame threshold, two to a batch, were decoded outside the gate: ten
    connections could decode ten such batches at once."""
    piece = b"x" * (GATED_BYTES * 5 // 8)
    session, connection, locked = batch([piece] * 10)
    taken = -(-BATCH_BYTES // len(piece))  # frames until the batch holds BATCH_BYTES
    assert session.seen == [(len(piece), False)] + [(len(piece), True)] * (taken - 1)
    assert len(connection.payloads) == 10 - taken and locked


def test_the_gate_lets_one_large_input_through_at_a_time() -> None:
    gate = LargeInputs()
    order: list[str] = []
    with contextlib.ExitStack() as held:
        gate.admit(GATED_BYTES, held)

        def second() -> None:
            with contextlib.ExitStack() as other:
                gate.admit(GATED_BYTES, other)
                order.append("second")

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.2)
        assert thread.is_alive()  # waiting at the gate
        order.append("first done")
    thread.join(5)
    assert order == ["first done", "second"]
    with contextlib.ExitStack() as held:
        gate.admit(GATED_BYTES - 1, held)  # small: no wait, nothing held
        assert not gate.busy


def test_the_gate_serves_in_the_order_of_arrival() -> None:
    """A plain lock let the thread that had just let go take it again, and a connection waiting behind
    it ran past ping_timeout with a message half read."""
    gate = LargeInputs()
    order: list[int] = []
    first = contextlib.ExitStack()
    gate.admit(GATED_BYTES, first)
    threads = []
    for n in range(5):
        def wait_turn(n: int = n) -> None:
            with contextlib.ExitStack() as held:
                gate.admit(GATED_BYTES, held)
                order.append(n)
        thread = threading.Thread(target=wait_turn)
        thread.start()
        threads.append(thread)
        wait = 5.0
        while len(gate._waiting) < n + 1 and wait > 0:  # noqa: SLF001 - queued before the next one comes
            threading.Event().wait(0.01)
            wait -= 0.01
    first.close()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4] and not gate.busy
