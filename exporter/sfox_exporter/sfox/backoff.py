"""Exponential backoff with jitter, so that many exporters (or accounts) do not retry in step."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        self._initial = initial
        self._maximum = maximum
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        """The next delay: the exponential cap for this attempt, of which the upper half is random.
        Keeping the lower half fixed means a delay never collapses towards zero."""
        cap = min(self._maximum, self._initial * 2.0 ** min(self._attempt, 64))
        self._attempt += 1
        return cap / 2 + self._rng.uniform(0, cap / 2)

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt
