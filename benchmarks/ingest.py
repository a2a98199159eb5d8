"""Ingest: sustained messages per second on four shapes of flood, exporter against a bare receive loop.

    python -m benchmarks.ingest [--messages 50000] [--rounds 3]

The simulator floods N account-balance messages of 20 currencies each over loopback, in four shapes:
compact or spaced JSON (`{"a":1,"b":2}` or `{"a": 1, "b": 2}`; the simulator writes the envelope
compact either way), and one entry changing per message (live trading) or every entry changing in
every message (the worst case: no entry can be recognised from an earlier message). Each contender
runs in its own process, as the exporter does in production, and is timed from the flood's first
frame until it has handled all N: the exporter until sfox_feed_messages_total{kind="balances"} says
N. The reference on each shape is the ceiling, a bare websocket-client receive loop with
skip_utf8_validation=True on the same flood, measured in the same rounds; and, on the first shape,
the naive exporter of sFOX's documentation style. Beside them, two decoding loops: the ceiling plus
one msgspec decode a message and nothing else (contenders/floor.py), and the same decode on the
exporter's own WebSocket reader (contenders/reader_floor.py), which the exporter could reach only if
everything it does besides reading and decoding were free.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sfox_exporter.simulator import Ledger, Simulator

from .common import (
    KEY,
    UNLIMITED,
    environment,
    exporter_process,
    flood_payloads,
    median,
    one_account_config,
    scrape_value,
)


@dataclass(frozen=True)
class Shape:
    name: str
    spaced: bool
    every_entry_changes: bool

    def payloads(self) -> Callable[[int], str]:
        return flood_payloads(spaced=self.spaced, every_entry_changes=self.every_entry_changes)


SHAPES = (
    Shape("compact, one entry changing", False, False),
    Shape("compact, every entry changing", False, True),
    Shape("spaced, one entry changing", True, False),
    Shape("spaced, every entry changing", True, True),
)
WORST = SHAPES[-1]
TARGET_VS_CEILING = 1.0  # on the worst shape
TARGET_VS_NAIVE = 5.0


@dataclass
class IngestResult:
    exporter: dict[Shape, float]
    ceiling: dict[Shape, float]
    naive: float
    messages: int
    floor: dict[Shape, float]
    reader_floor: dict[Shape, float]

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for shape in self.exporter:
            ratio = self.exporter[shape] / self.ceiling[shape]
            target, verdict = "", ""
            if shape == WORST:
                target, verdict = f">= {TARGET_VS_CEILING:g}x", _ok(ratio >= TARGET_VS_CEILING)
            floor = self.floor.get(shape)
            against_floor = f"; decoding loop {floor:,.0f} msg/s, {floor / self.ceiling[shape]:.2f}x" if floor else ""
            ours = self.reader_floor.get(shape)
            if ours:
                against_floor += f"; on our reader {ours:,.0f} msg/s, {ours / self.ceiling[shape]:.2f}x"
            rows.append((f"ingest {shape.name}: exporter vs bare websocket-client loop",
                         f"{self.exporter[shape]:,.0f} msg/s",
                         f"ceiling {self.ceiling[shape]:,.0f} msg/s; {ratio:.2f}x{against_floor}", target, verdict))
        first = SHAPES[0]
        if self.naive and first in self.exporter:
            ratio = self.exporter[first] / self.naive
            rows.append((f"ingest {first.name}: exporter vs naive exporter (docs style)",
                         f"{self.exporter[first]:,.0f} msg/s", f"naive {self.naive:,.0f} msg/s; {ratio:.1f}x",
                         f">= {TARGET_VS_NAIVE:g}x", _ok(ratio >= TARGET_VS_NAIVE)))
        return rows


def _ok(passed: bool) -> str:
    return "met" if passed else "MISSED"


def _timed_flood(simulator: Simulator, count: int, payloads: Callable[[int], str],
                 until: Callable[[], object]) -> float:
    started = time.perf_counter()
    threading.Thread(target=simulator.flood, args=(KEY, count, payloads), daemon=True).start()
    until()
    return count / (time.perf_counter() - started)


def contender(simulator: Simulator, module: str, count: int, payloads: Callable[[int], str]) -> float:
    process = subprocess.Popen([sys.executable, "-m", f"benchmarks.contenders.{module}", simulator.ws_url, KEY,
                                str(count)], stdout=subprocess.PIPE, text=True, env=environment())
    try:
        assert process.stdout is not None
        stdout = process.stdout
        if not stdout.readline().startswith("ready"):
            raise RuntimeError(f"{module} did not subscribe")
        return _timed_flood(simulator, count, payloads, stdout.readline)
    finally:
        process.wait(60)


def exporter_run(simulator: Simulator, count: int, payloads: Callable[[int], str]) -> float:
    with exporter_process(simulator.ws_url, simulator.rest_url, one_account_config()) as (_, url):
        deadline = time.monotonic() + 15
        while simulator.subscriber_count(KEY) < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the exporter did not subscribe")
            time.sleep(0.01)

        def applied_all() -> None:
            while (scrape_value(url, "sfox_feed_messages_total", account="main", kind="balances") or 0) < count:
                time.sleep(0.02)

        return _timed_flood(simulator, count, payloads, applied_all)


def run(messages: int = 50000, rounds: int = 3, naive_messages: int | None = None,
        shapes: tuple[Shape, ...] = SHAPES) -> IngestResult:
    exporter: dict[Shape, list[float]] = {shape: [] for shape in shapes}
    ceiling: dict[Shape, list[float]] = {shape: [] for shape in shapes}
    floor: dict[Shape, list[float]] = {shape: [] for shape in shapes}
    reader_floor: dict[Shape, list[float]] = {shape: [] for shape in shapes}
    with Simulator({KEY: Ledger("main")}, push_interval=None, limits=UNLIMITED) as simulator:
        payloads = {shape: shape.payloads() for shape in shapes}
        for _ in range(rounds):  # interleaved, so that a noisy neighbour hurts all of them alike
            for shape in shapes:
                ceiling[shape].append(contender(simulator, "ceiling", messages, payloads[shape]))
                floor[shape].append(contender(simulator, "floor", messages, payloads[shape]))
                reader_floor[shape].append(contender(simulator, "reader_floor", messages, payloads[shape]))
                exporter[shape].append(exporter_run(simulator, messages, payloads[shape]))
        naive = 0.0
        if naive_messages != 0 and SHAPES[0] in shapes:
            naive = contender(simulator, "naive", naive_messages or messages, payloads[SHAPES[0]])
    return IngestResult({s: median(v) for s, v in exporter.items()}, {s: median(v) for s, v in ceiling.items()},
                        naive, messages, {s: median(v) for s, v in floor.items()},
                        {s: median(v) for s, v in reader_floor.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--naive-messages", type=int, default=20000, help="0 skips the naive exporter")
    parser.add_argument("--worst-only", action="store_true", help="only the spaced, every-entry-changing shape")
    args = parser.parse_args()
    result = run(args.messages, args.rounds, args.naive_messages, (WORST,) if args.worst_only else SHAPES)
    for row in result.rows():
        print("  ".join(row))


if __name__ == "__main__":
    main()
