"""sFOX's limits on our side: the shared WebSocket request budget and the REST window."""

from __future__ import annotations

import random
import threading

import pytest

from sfox_exporter.sfox.backoff import Backoff
from sfox_exporter.sfox.ratelimit import RequestBudget, Reservation, SlidingWindow, parse_retry_after
from sfox_exporter.sfox.sequence import SequenceChecker

from .conftest import FakeClock


def test_window_admits_limit_then_waits_for_the_oldest() -> None:
    clock = FakeClock()
    window = SlidingWindow(5, 10.0, clock)
    for _ in range(5):
        assert window.wait_time() == 0
        window.record()
        clock.advance(1)
    assert window.wait_time() == 5.0  # the first expires 10 s after it was sent, at t=10
    clock.advance(5)
    assert window.wait_time() == 0


def test_budget_never_promises_more_than_the_limit() -> None:
    clock = FakeClock()
    budget = RequestBudget(clock, limit=40, window=61.0)
    reservations = []
    for _ in range(20):
        outcome = budget.try_reserve(2)
        assert isinstance(outcome, Reservation)
        reservations.append(outcome)
    assert not isinstance(budget.try_reserve(2), Reservation)  # 40 promised, none sent yet
    for reservation in reservations:
        reservation.spend()
        reservation.spend()
    wait = budget.try_reserve(1)
    assert wait == 61.0
    clock.advance(61.0)
    assert isinstance(budget.try_reserve(2), Reservation)


def test_released_slots_return_to_the_budget() -> None:
    budget = RequestBudget(FakeClock(), limit=4)
    first = budget.try_reserve(4)
    assert isinstance(first, Reservation)
    first.spend()  # authenticate was sent, then the attempt failed
    first.release()
    assert isinstance(budget.try_reserve(3), Reservation)
    assert budget.sent == 1


def test_any_window_holds_at_most_the_limit_under_constant_demand() -> None:
    clock = FakeClock()
    budget = RequestBudget(clock, limit=40, window=61.0)
    sends: list[float] = []
    for _ in range(4000):  # ten accounts hammering for ~7 minutes, in 0.1 s steps
        outcome = budget.try_reserve(2)
        if isinstance(outcome, Reservation):
            for _ in range(2):
                outcome.spend()
                sends.append(clock.monotonic())
        clock.advance(0.1)
    worst = max(sum(1 for t in sends if start <= t < start + 60.0) for start in sends)
    assert worst <= 40
    assert len(sends) >= 40 * 6  # and the budget is used, not starved


def test_connection_slots_are_capped() -> None:
    budget = RequestBudget(FakeClock(), max_connections=2)
    stop = threading.Event()
    with budget.connection(stop) as a, budget.connection(stop) as b:
        assert a and b and budget.connections == 2
        stop.set()
        with budget.connection(stop) as c:
            assert not c
    assert budget.connections == 0


def test_blocking_reserve_gives_up_when_stopped() -> None:
    budget = RequestBudget(FakeClock(), limit=1)
    assert isinstance(budget.try_reserve(1), Reservation)
    stop = threading.Event()
    stop.set()
    assert budget.reserve(1, stop) is None


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(1.0, 120.0, random.Random(7))
    delays = [backoff.next() for _ in range(10)]
    caps = [min(120.0, 2.0**n) for n in range(10)]
    assert all(cap / 2 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))
    assert len({round(d, 6) for d in delays}) == 10
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


@pytest.mark.parametrize(
    ("sequences", "anomalies"),
    [
        ([1, 2, 3, 4], 0),
        ([5, 6, 7], 0),  # the first number of a connection sets the baseline
        ([1, 2, 5, 6], 1),  # a gap
        ([1, 2, 2, 3], 1),  # a repeat is a step back; counting goes on from there
        ([1, 3, 2, 3], 2),  # a gap, then a step back
        ([1, None, 3, 4], 0),  # an unreadable frame used number 2
        ([1, None, 2, 3], 0),  # or carried no number at all
        ([1, None, 4], 1),
    ],
)
def test_sequence_checker(sequences: list[int | None], anomalies: int) -> None:
    checker = SequenceChecker()
    assert sum(checker.check(sequence) for sequence in sequences) == anomalies


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 60.0),
        ("10", 10.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("99999999", 900.0),  # capped
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),  # an HTTP date, 10 s after "now" below
        ("soon", 60.0),
        ("\u00b2", 60.0),  # a digit to str.isdigit, not to float
        ("-5", 60.0),
        ("", 60.0),
        ("Mon, 01 Jan 2026 00:00:00 +99999999999999999999", 60.0),  # overflowed: a traceback a retry
        ("Mon, 01 Jan 99999999999 00:00:00 GMT", 60.0),
        ("Mon, 01 Jan 9999 23:59:59 -2359", 900.0),  # far off, but a date: capped
    ],
)
def test_retry_after(header: str | None, seconds: float) -> None:
    now = 1445412480.0  # 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(header, now, default=60.0) == pytest.approx(seconds)
