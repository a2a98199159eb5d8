"""Ingest: sustained messages per second on one flood, exporter against a ceiling and a naive exporter.

    python -m benchmarks.ingest [--messages 50000] [--rounds 3]

The simulator floods N account-balance messages of 20 currencies each over loopback. Each contender
runs in its own process, as the exporter does in production, and is timed from the flood's first
frame until it has handled all N: the exporter until sfox_feed_messages_total{kind="balances"} says N.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from sfox_exporter.simulator import Ledger, Simulator

from .common import KEY, environment, exporter_process, flood_payloads, median, one_account_config, scrape_value


@dataclass
class IngestResult:
    exporter: float
    ceiling: float
    naive: float
    messages: int

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        return [
            ("ingest: exporter", f"{self.exporter:,.0f} msg/s", "", "", ""),
            ("ingest: vs ceiling (bare websocket-client loop)", f"{self.ceiling:,.0f} msg/s",
             f"{self.exporter / self.ceiling:.2f}x", ">= 0.5x", _ok(self.exporter / self.ceiling >= 0.5)),
            ("ingest: vs naive exporter (docs style)", f"{self.naive:,.0f} msg/s",
             f"{self.exporter / self.naive:.1f}x", ">= 5x", _ok(self.exporter / self.naive >= 5)),
        ]


def _ok(passed: bool) -> str:
    return "met" if passed else "MISSED"


def _timed_flood(simulator: Simulator, count: int, done: threading.Event | None, until: object) -> float:
    payloads = flood_payloads()
    started = time.perf_counter()
    threading.Thread(target=simulator.flood, args=(KEY, count, payloads), daemon=True).start()
    until()  # type: ignore[operator]
    return count / (time.perf_counter() - started)


def contender(simulator: Simulator, module: str, count: int) -> float:
    process = subprocess.Popen([sys.executable, "-m", f"benchmarks.contenders.{module}", simulator.ws_url, KEY,
                                str(count)], stdout=subprocess.PIPE, text=True, env=environment())
    try:
        assert process.stdout is not None
        stdout = process.stdout
        if not stdout.readline().startswith("ready"):
            raise RuntimeError(f"{module} did not subscribe")
        return _timed_flood(simulator, count, None, lambda: stdout.readline())
    finally:
        process.wait(60)


def exporter_run(simulator: Simulator, count: int) -> float:
    with exporter_process(simulator.ws_url, simulator.rest_url, one_account_config()) as (_, url):
        deadline = time.monotonic() + 15
        while simulator.subscriber_count(KEY) < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the exporter did not subscribe")
            time.sleep(0.01)

        def applied_all() -> None:
            while (scrape_value(url, "sfox_feed_messages_total", account="main", kind="balances") or 0) < count:
                time.sleep(0.02)

        return _timed_flood(simulator, count, None, applied_all)


def run(messages: int = 50000, rounds: int = 3, naive_messages: int | None = None) -> IngestResult:
    naive_messages = naive_messages or messages
    with Simulator({KEY: Ledger("main")}, push_interval=None) as simulator:
        exporter, ceiling, naive = [], [], []
        for _ in range(rounds):  # interleaved, so that a noisy neighbour hurts all of them alike
            ceiling.append(contender(simulator, "ceiling", messages))
            exporter.append(exporter_run(simulator, messages))
        naive.append(contender(simulator, "naive", naive_messages))
        return IngestResult(median(exporter), median(ceiling), median(naive), messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = run(args.messages, args.rounds)
    for row in result.rows():
        print("  ".join(row))


if __name__ == "__main__":
    main()
