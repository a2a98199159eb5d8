"""Scrape under load: many concurrent scrapers over real HTTP while a feed of 30-currency messages flows.

    python -m benchmarks.load [--scrapers 24] [--scrapes 60] [--rate 1000]

The exporter runs in its own process, as in production, fed by the simulator at `rate` messages a
second, each carrying 30 currencies with one changing. `scrapers` scraper processes (as many
Prometheus servers, each its own process so that no client-side GIL distorts the figures) scrape
/metrics back to back on keep-alive connections, all at once. p50/p99 are over every scrape of every
scraper. The reference, in the same run, is the same scrapers against the same exporter with the
feed stopped. A third pass runs the exporter under a shorter GIL switch interval
(sys.setswitchinterval) to show how much of the tail is threads waiting for the feed thread to hand
over the GIL: CPython's default is 5 ms, and a thread that wants the GIL waits that long whenever a
CPU-bound thread holds it.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from sfox_exporter.simulator import Ledger, Simulator

from .common import (
    KEY,
    UNLIMITED,
    cpu_seconds,
    environment,
    exporter_process,
    flood_payloads,
    one_account_config,
    percentile,
    scrape_value,
    wait_for,
)

CURRENCIES = 30
TARGET_P99 = 0.100
SHORT_SWITCH_INTERVAL = 0.0005


@dataclass
class Pass:
    name: str
    latencies: list[float] = field(default_factory=list)
    fed: float = 0.0  # messages a second the exporter applied while scraped
    cpu: float = 0.0  # the exporter's CPU, in cores

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.5)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


@dataclass
class LoadResult:
    scrapers: int
    rate: int
    passes: list[Pass]

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        reference = self.passes[0]
        rows = []
        for measured in self.passes[1:]:
            target, verdict = "", ""
            if measured is self.passes[1]:
                target, verdict = "p99 < 100 ms", "met" if measured.p99 < TARGET_P99 else "MISSED"
            rows.append((f"scrape under load: {self.scrapers} scrapers, feed {self.rate} msg/s x {CURRENCIES} "
                         f"currencies, {measured.name}",
                         f"p50 {measured.p50 * 1e3:.1f} / p99 {measured.p99 * 1e3:.1f} ms "
                         f"(applied {measured.fed:,.0f} msg/s, CPU {measured.cpu:.2f} cores)",
                         f"{reference.name}: p50 {reference.p50 * 1e3:.1f} / p99 {reference.p99 * 1e3:.1f} ms",
                         target, verdict))
        return rows


def _scrape_all(url: str, scrapers: int, scrapes: int) -> list[float]:
    processes = [subprocess.Popen([sys.executable, "-m", "benchmarks.contenders.scraper", str(scrapes), url],
                                  stdout=subprocess.PIPE, text=True, env=environment())
                 for _ in range(scrapers)]
    latencies: list[float] = []
    for process in processes:
        output, _ = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError("a scraper failed")
        latencies += json.loads(output)[0]
    return latencies


def _feed(simulator: Simulator, rate: int, stop: threading.Event) -> None:
    """`rate` messages a second, in bursts of ten."""
    payloads = flood_payloads(CURRENCIES)
    sent = 0
    started = time.monotonic()
    while not stop.is_set():
        simulator.flood(KEY, 10, functools.partial(lambda base, i: payloads(base + i), sent))
        sent += 10
        delay = started + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _measure(simulator: Simulator, name: str, scrapers: int, scrapes: int, rate: int,
             switch_interval: float | None) -> Pass:
    result = Pass(name)
    with exporter_process(simulator.ws_url, simulator.rest_url, one_account_config(),
                          switch_interval) as (process, url):
        wait_for(lambda: simulator.subscriber_count(KEY) >= 1, 15, "the exporter to subscribe")
        stop = threading.Event()
        feeder = threading.Thread(target=_feed, args=(simulator, rate, stop), daemon=True)
        if rate:
            feeder.start()
            time.sleep(1.0)  # let the feed reach its rate
        before = scrape_value(url, "sfox_feed_messages_total", account="main", kind="balances") or 0.0
        cpu_before, started = cpu_seconds(process.pid), time.monotonic()
        result.latencies = _scrape_all(url + "/metrics", scrapers, scrapes)
        elapsed = time.monotonic() - started
        after = scrape_value(url, "sfox_feed_messages_total", account="main", kind="balances") or 0.0
        result.fed, result.cpu = (after - before) / elapsed, (cpu_seconds(process.pid) - cpu_before) / elapsed
        stop.set()
        if feeder.is_alive():
            feeder.join()
    return result


def run(scrapers: int = 24, scrapes: int = 60, rate: int = 1000) -> LoadResult:
    with Simulator({KEY: Ledger("main")}, push_interval=None, limits=UNLIMITED) as simulator:
        passes = [
            _measure(simulator, "feed stopped", scrapers, scrapes, 0, None),
            _measure(simulator, "default switch interval", scrapers, scrapes, rate, None),
            _measure(simulator, f"switch interval {SHORT_SWITCH_INTERVAL * 1e3:g} ms", scrapers, scrapes, rate,
                     SHORT_SWITCH_INTERVAL),
        ]
    return LoadResult(scrapers, rate, passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrapers", type=int, default=24)
    parser.add_argument("--scrapes", type=int, default=60, help="per scraper, after a 20-scrape warm-up")
    parser.add_argument("--rate", type=int, default=1000, help="feed messages a second")
    args = parser.parse_args()
    for row in run(args.scrapers, args.scrapes, args.rate).rows():
        print("  ".join(row))


if __name__ == "__main__":
    main()
