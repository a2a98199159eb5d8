"""Freshness: from the simulator sending a balance update to the new value on /metrics.

    python -m benchmarks.freshness [--updates 300]

The exporter runs in its own process. For each update, a new value of available USD is pushed and
/metrics is scraped in a tight loop (one keep-alive connection) until it shows that value; the delay
runs from just before the push to the scrape that shows it. The reference, in the same run, is the
same push reaching a bare websocket-client receive loop: the loopback WebSocket delivery itself.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass

import websocket

from sfox_exporter.simulator import Ledger, Simulator

from .common import KEY, UNLIMITED, balance_entry, exporter_process, one_account_config, percentile, wait_for
from .contenders.scraper import Scraper

TARGET_P99 = 0.005


@dataclass
class FreshnessResult:
    exporter: list[float]
    delivery: list[float]

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        p50, p99 = percentile(self.exporter, 0.5), percentile(self.exporter, 0.99)
        d50, d99 = percentile(self.delivery, 0.5), percentile(self.delivery, 0.99)
        return [(
            "freshness: sFOX push to /metrics",
            f"p50 {p50 * 1e3:.2f} / p99 {p99 * 1e3:.2f} ms",
            f"WebSocket delivery alone p50 {d50 * 1e3:.2f} / p99 {d99 * 1e3:.2f} ms; {p99 / d99:.1f}x",
            "p99 < 5 ms", "met" if p99 < TARGET_P99 else "MISSED",
        )]


def _entry(value: int) -> dict[str, str]:
    entry = balance_entry("usd", 1000.0)
    entry["available"] = f"{value}.25"
    return entry


def exporter_delays(simulator: Simulator, updates: int) -> list[float]:
    with exporter_process(simulator.ws_url, simulator.rest_url, one_account_config()) as (_, url):
        wait_for(lambda: simulator.subscriber_count(KEY), 15, "the exporter to subscribe")
        host, port = url.removeprefix("http://").split(":")  # a Scraper of the scraper contender, in-process
        scraper = Scraper(host, int(port), "/metrics")
        simulator.push(KEY, [balance_entry(f"c{n:02d}", 10.0 + n) for n in range(5)])
        delays = []
        for index in range(updates):
            needle = f'sfox_balance_available{{account="main",currency="usd"}} {1_000_000 + index}.25\n'.encode()
            started = time.perf_counter()
            simulator.push(KEY, [_entry(1_000_000 + index)])
            while needle not in scraper.get():
                if time.perf_counter() - started > 5:
                    raise TimeoutError("the update never reached /metrics")
            delays.append(time.perf_counter() - started)
            time.sleep(0.01)  # updates a little apart, as real ones are
        return delays


def delivery_delays(simulator: Simulator, updates: int) -> list[float]:
    ws = websocket.create_connection(simulator.ws_url, skip_utf8_validation=True)
    ws.send(json.dumps({"type": "authenticate", "apiKey": KEY}))
    ws.recv()
    ws.send(json.dumps({"type": "subscribe", "feeds": ["private.user.balances"]}))
    ws.recv()
    received: list[float] = []
    done = threading.Event()

    def receive() -> None:
        for _ in range(updates):
            ws.recv()
            received.append(time.perf_counter())
        done.set()

    threading.Thread(target=receive, daemon=True).start()
    sent = []
    for index in range(updates):
        sent.append(time.perf_counter())
        simulator.push(KEY, [_entry(index)])
        wait_for(lambda n=index: len(received) > n, 5, "delivery")  # type: ignore[misc]
        time.sleep(0.01)
    done.wait(5)
    ws.close()
    return [r - s for s, r in zip(sent, received, strict=True)]


def run(updates: int = 300) -> FreshnessResult:
    with Simulator({KEY: Ledger("main")}, push_interval=None, limits=UNLIMITED) as simulator:
        delivery = delivery_delays(simulator, updates)
        exporter = exporter_delays(simulator, updates)
    return FreshnessResult(exporter, delivery)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=300)
    args = parser.parse_args()
    for row in run(args.updates).rows():
        print("  ".join(row))


if __name__ == "__main__":
    main()
