"""The two fields every data message's envelope carries: its sequence number and its timestamp.

Pure, like the rest of the decoding: values as msgspec or json.loads made them in, numbers out.
"""

from __future__ import annotations

import math
from decimal import Context, Decimal
from typing import Any

from msgspec import UNSET

from sfox_exporter.sfox.entries import is_decimal

# The documented window (protocol notes): read by magnitude, a timestamp is a date from
# 1973-01-01T00:00:00Z up to 1e11 s (year 5138); outside it, the magnitude gave no real date.
EARLIEST_TIMESTAMP = 94_694_400.0
LATEST_TIMESTAMP = 1e11
# A timestamp string has at most 32 characters, so 31 digits: scaled in 40, it is scaled exactly.
_EXACT = Context(prec=40)


def parse_timestamp(raw: Any) -> float | None:
    """Seconds since the epoch from a timestamp in ns, µs, ms or s, told apart by magnitude.

    The thresholds sit between the magnitudes of present-day times in each unit (about 1.7e18 ns,
    1.7e15 µs, 1.7e12 ms, 1.7e9 s), so any date from 1973 to 5138 reads correctly; a time outside
    that window is None, since no unit makes it a real date.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        if len(raw) > 32 or not is_decimal(raw):
            return None
        if not raw.isdigit():
            return _decimal_timestamp(Decimal(raw))
        raw = int(raw)
    seconds: float
    if isinstance(raw, int):
        if raw <= 0 or raw >= 10**21:
            return None
        if raw >= 10**17:
            seconds = raw / 10**9
        elif raw >= 10**14:
            seconds = raw / 10**6
        elif raw >= 10**11:
            seconds = raw / 10**3
        else:
            seconds = float(raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw) or raw <= 0 or raw >= 1e21:
            return None
        seconds = raw
        for threshold, scale in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
            if raw >= threshold:
                seconds = raw / scale
                break
    else:
        return None
    return seconds if EARLIEST_TIMESTAMP <= seconds < LATEST_TIMESTAMP else None


def _decimal_timestamp(value: Decimal) -> float | None:
    """A timestamp spelt "1649899310281716289.0" or "1.649899310281716289e18": scaled exactly (a power
    of ten only moves a Decimal's exponent) and rounded once, to what the same instant in digits gives.
    float() first, then a division, rounded twice."""
    if not 0 < value < 10**21:
        return None
    for threshold, exponent in ((10**17, -9), (10**14, -6), (10**11, -3)):
        if value >= threshold:
            value = value.scaleb(exponent, _EXACT)
            break
    seconds = float(value)
    return seconds if EARLIEST_TIMESTAMP <= seconds < LATEST_TIMESTAMP else None


def timestamp_field(raw: Any) -> tuple[float | None, int]:
    """A data message's timestamp and its schema errors: one for a value that is there and no
    usable time (absent or null: none, sFOX just said nothing)."""
    if raw is UNSET or raw is None:
        return None, 0
    seconds = parse_timestamp(raw)
    return seconds, int(seconds is None)


def sequence_field(raw: Any) -> tuple[int | None, int]:
    """A message's sequence number and its schema errors: one for a value that is there and no
    natural number (absent or null: none). Such a message is checked as one whose number could not
    be read; the error makes it seen, since sequence checking would otherwise stop without a word."""
    if type(raw) is int and 0 <= raw < 2**63:
        return raw, 0
    return None, int(raw is not UNSET and raw is not None)
