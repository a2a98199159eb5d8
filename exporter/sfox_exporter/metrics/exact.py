"""Exact arithmetic on floats, rounded once: a running sum for totals that must never drift
(sfox_end_users_balance), a sum of products (sfox_account_value), and int / int made safe.

Every finite float is an integer multiple of a power of two, so the sum is kept as an integer count
of 2**-scale units, with `scale` the finest any amount has needed so far; it is rounded to a float
only when read, once, correctly (int / int is correctly rounded). A million additions and removals
later it is bit for bit what math.fsum of the current amounts gives; a float running sum drifts.

Why not math.fsum or fractions: fsum keeps no state between calls, and Fraction arithmetic costs
microseconds an amount. Here amounts are added a batch at a time: times 2.0**scale (exact, a power
of two) each becomes an integer float, which int() takes exactly, so a batch costs three C-level
passes (multiply, is_integer, int and sum) and no Python per amount. A batch with an amount finer
than the scale refines it first; amounts too large for the product to stay finite take
as_integer_ratio, exactly too.
"""

from __future__ import annotations

import math
import sys

# 2.0**1023 is the largest power of two a float holds; past it every amount takes the slow path.
_MAX_FACTOR_BITS = sys.float_info.max_exp - 1
_is_integer = float.is_integer


class ExactSum:
    __slots__ = ("_factor", "_scale", "_units")

    def __init__(self) -> None:
        self._units = 0  # the sum, in units of 2**-scale
        self._scale = 0
        self._factor = 1.0  # 2.0**scale, or inf once that is no float

    def add_all(self, amounts: list[float]) -> None:
        """Add finite amounts (negative ones take away), exactly."""
        factor = self._factor
        products = [amount * factor for amount in amounts]
        if not all(map(_is_integer, products)):
            self._refine(amounts)
            factor = self._factor
            products = [amount * factor for amount in amounts]
            if not all(map(_is_integer, products)):  # too large for the product, or no factor
                self._units += sum(map(self._units_of, amounts))
                return
        self._units += sum(map(int, products))

    @property
    def value(self) -> float:
        """The float nearest to the exact sum; an infinity past float's range (two balances of 1e308)."""
        return nearest_float(self._units, 1 << self._scale)

    def _refine(self, amounts: list[float]) -> None:
        """A scale fine enough for every amount: the sum so far multiplied by a power of two, exactly."""
        needed = max(amount.as_integer_ratio()[1].bit_length() - 1 for amount in amounts)
        if needed > self._scale:
            self._units <<= needed - self._scale
            self._scale = needed
            self._factor = 2.0**needed if needed <= _MAX_FACTOR_BITS else math.inf

    def _units_of(self, amount: float) -> int:
        """`amount` in units, for a scale at least as fine as it needs (_refine saw to that)."""
        numerator, denominator = amount.as_integer_ratio()
        return numerator << (self._scale - denominator.bit_length() + 1)


def nearest_float(numerator: int, denominator: int) -> float:
    """numerator / denominator correctly rounded (int / int is), or an infinity of its sign when it
    lies past float's range, where Python raises."""
    try:
        return numerator / denominator
    except OverflowError:
        return math.inf if (numerator < 0) == (denominator < 0) else -math.inf


def sum_of_products(pairs: list[tuple[float, float]]) -> float:
    """The exact sum of the products a * b of finite floats, rounded once. Adding rounded products,
    even with math.fsum, is off by one in the last place for one account in five: every float is an
    integer over a power of two, so each product is one too, taken exactly, and so is their sum.
    Products past float's range are exact as well, so that 1e308 * 10 and -1e308 * 10 cancel."""
    numerators: list[int] = []
    shifts: list[int] = []  # each denominator is 2**shift
    for a, b in pairs:
        (na, da), (nb, db) = a.as_integer_ratio(), b.as_integer_ratio()
        numerators.append(na * nb)
        shifts.append((da * db).bit_length() - 1)
    scale = max(shifts, default=0)
    total = sum(numerator << (scale - shift) for numerator, shift in zip(numerators, shifts, strict=True))
    return nearest_float(total, 1 << scale)
