"""Decode: µs per 20-entry balances message, the fast path and parse_frame against the old parser and json.loads.

    python -m benchmarks.decode [--messages 2000] [--rounds 5] [--old-rev c71c593]

Four shapes of the same message: sFOX's compact JSON or spaced JSON (json.dumps's default ", " and
": "), and every entry changing from one message to the next or the entries repeating (only the
sequence moves). The old parser (the regex fast path and CachingParser) is loaded from git at
--old-rev, the last revision that had it; it is left out when git cannot show it. Every contender
decodes the same frames in the same run, interleaved, best of the rounds, so a noisy neighbour
weighs on all of them alike.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from sfox_exporter.sfox.decode import BalanceUpdate, parse_balances_frame, parse_frame

from .common import balance_entry

CURRENCIES = 20
OLD_PATH = "exporter/sfox_exporter/sfox/decode.py"


def frames(messages: int, changing: bool, spaced: bool) -> list[bytes]:
    separators = (", ", ": ") if spaced else (",", ":")
    out = []
    for index in range(messages):
        step = index if changing else 0
        payload = [balance_entry(f"c{n:04d}", 1000.0 + n + step * 0.01) for n in range(CURRENCIES)]
        message = {"sequence": index + 3, "recipient": "private.user.balances",
                   "timestamp": 1649899310281716289 + index, "payload": payload}
        out.append(json.dumps(message, separators=separators).encode())
    return out


def old_module(rev: str) -> types.ModuleType | None:
    root = Path(__file__).resolve().parent.parent
    try:
        source = subprocess.run(["git", "show", f"{rev}:{OLD_PATH}"], cwd=root, capture_output=True, check=True,
                                text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("old_decode")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{rev}:{OLD_PATH}", "exec"), module.__dict__)
    return module


def per_message(decode: Callable[[bytes], Any], batch: list[bytes]) -> float:
    started = time.perf_counter()
    for frame in batch:
        decode(frame)
    return (time.perf_counter() - started) / len(batch) * 1e6


def run(messages: int = 2000, rounds: int = 5, old_rev: str = "c71c593") -> list[tuple[str, dict[str, float]]]:
    old = old_module(old_rev)
    results = []
    for spaced in (False, True):
        for changing in (True, False):
            batch = frames(messages, changing, spaced)
            expected = parse_frame(batch[-1])
            assert isinstance(expected, BalanceUpdate) and len(expected.accounts) == CURRENCIES
            fast = parse_balances_frame(batch[-1])
            assert isinstance(fast, BalanceUpdate) and fast.currencies is not None  # the fast path took it
            contenders: dict[str, Callable[[], Callable[[bytes], Any]]] = {
                "fast path": lambda: parse_balances_frame,
                "parse_frame": lambda: parse_frame,
                "json.loads": lambda: json.loads,
                "msgspec untyped": lambda: msgspec.json.decode,
            }
            if old is not None:
                contenders["old parse_frame"] = lambda: old.parse_frame
                contenders["old CachingParser"] = lambda: old.CachingParser().parse  # a fresh memory each round
                # The same events (the old ones had no `currencies`), or no race at all.
                assert old.CachingParser().parse(batch[-1]) == expected[:-1]
            best = {name: float("inf") for name in contenders}
            for _ in range(rounds):
                for name, make in contenders.items():
                    best[name] = min(best[name], per_message(make(), batch))
            shape = f"{'spaced' if spaced else 'compact'}, {'changing' if changing else 'repeating'}"
            results.append((shape, best))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--old-rev", default="c71c593")
    args = parser.parse_args()
    results = run(args.messages, args.rounds, args.old_rev)
    names = list(results[0][1])
    print(f"# µs per {CURRENCIES}-entry balances message, best of {args.rounds} rounds of {args.messages}")
    print(f"{'shape':<22}" + "".join(f"{name:>19}" for name in names))
    for shape, best in results:
        print(f"{shape:<22}" + "".join(f"{best[name]:>19.1f}" for name in names))


if __name__ == "__main__":
    main()
