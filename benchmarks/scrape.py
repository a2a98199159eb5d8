"""Scrape: /metrics latency of the exporter against prometheus_client over equivalent plain Gauges.

    python -m benchmarks.scrape [--scrapes 200]

For each size, in one process: the exporter (fed by the simulator) and a reference registry of plain
prometheus_client Gauges with the same series and values, served by prometheus_client's own
start_http_server (generate_latest per request). A scraper in its own process, as Prometheus is,
measures both over HTTP; then the rendering alone (Exposition.render against generate_latest) is
timed in-process. Each twice: idle, and under a feed of 1,000 messages a second that moves one
currency per message, applied to both sides alike.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

from sfox_exporter.app import Exporter
from sfox_exporter.config import (
    AccountConfig,
    Config,
    FeedConfig,
    KeySource,
    LogConfig,
    Secret,
    SfoxEndpoints,
    WebConfig,
)
from sfox_exporter.sfox.decode import parse_frame
from sfox_exporter.simulator import Ledger, Simulator

from .common import KEY, UNLIMITED, WALLETS, balance_entry, environment, flood_payloads, percentile, wait_for

SIZES = [(10, 100), (100, 100), (1000, 100), (10, 1000), (100, 1000), (1000, 1000)]
FEED_RATE = 1000  # messages per second
# A render right after a balance change, against generate_latest over the same series.
TARGET_CHANGED_SPEEDUP = 5.0


@dataclass
class Measurement:
    currencies: int
    wallets: int
    mode: str  # idle, busy, or changed (render only: every render right after a balance change)
    http_ours: list[float] = field(default_factory=list)
    http_reference: list[float] = field(default_factory=list)
    render_ours: list[float] = field(default_factory=list)
    render_reference: list[float] = field(default_factory=list)


class Reference:
    """The same series as plain Gauges, as a straightforward exporter would keep them, beside the
    process, platform and GC collectors that prometheus_client's default registry holds and the
    exporter serves too: both sides render the same families the same way."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for default in (ProcessCollector, PlatformCollector, GCCollector):
            default(registry=self.registry)
        self.balance = Gauge("sfox_balance", "b", ["account", "currency"], registry=self.registry)
        self.available = Gauge("sfox_balance_available", "a", ["account", "currency"], registry=self.registry)
        self.held = Gauge("sfox_balance_held", "h", ["account", "currency"], registry=self.registry)
        self.wallet = Gauge("sfox_wallet_balance", "w", ["account", "currency", "wallet"], registry=self.registry)
        self.web3 = Gauge("sfox_web3_wallet_balance", "3", ["account", "currency", "network", "address"],
                          registry=self.registry)

    def apply(self, entry: dict[str, str]) -> None:
        currency = entry["currency"]
        self.balance.labels("main", currency).set(float(entry["balance"]))
        self.available.labels("main", currency).set(float(entry["available"]))
        self.held.labels("main", currency).set(float(entry["held"]))
        for wallet in WALLETS:
            self.wallet.labels("main", currency, wallet).set(float(entry[f"{wallet}_wallet"]))


def web3_entries(count: int) -> list[dict[str, str]]:
    return [{"type": "web3", "network": "Ethereum", "address": f"0x{n:040x}", "currency": "USDC",
             "balance": f"{100 + n}.5"} for n in range(count)]


def exporter_config(simulator: Simulator) -> Config:
    return Config(WebConfig("127.0.0.1", 0), SfoxEndpoints(simulator.ws_url, simulator.rest_url),
                  (AccountConfig("main", KeySource(fixed=Secret(KEY))),),
                  FeedConfig(rest_snapshot=False, stale_after_seconds=0, max_series=100000), (), LogConfig())


def scraper(count: int, *urls: str) -> list[list[float]]:
    """Latencies of each URL, scraped in turn by the scraper process."""
    output = subprocess.run([sys.executable, "-m", "benchmarks.contenders.scraper", str(count), *urls],
                            capture_output=True, text=True, check=True, env=environment()).stdout
    return list(json.loads(output))


def timed(function: Any, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        function()
        latencies.append(time.perf_counter() - started)
    return latencies


def measure_size(currencies: int, wallets: int, scrapes: int) -> list[Measurement]:
    results = []
    with Simulator({KEY: Ledger("main")}, push_interval=None, limits=UNLIMITED) as simulator:
        exporter = Exporter(exporter_config(simulator))
        exporter.start()
        reference = Reference()
        server, _ = start_http_server(0, addr="127.0.0.1", registry=reference.registry)
        try:
            wait_for(lambda: simulator.subscriber_count(KEY), 15, "the exporter to subscribe")
            entries = [balance_entry(f"c{n:04d}", 1000.0 + n) for n in range(currencies)]
            simulator.push(KEY, entries)
            simulator.push(KEY, web3_entries(wallets))
            for entry in entries:
                reference.apply(entry)
            for wallet in web3_entries(wallets):
                labels = ("main", "usdc", wallet["network"], wallet["address"])
                reference.web3.labels(*labels).set(float(wallet["balance"]))
            wait_for(lambda: exporter.state.snapshot().accounts[0].series == 7 * currencies + wallets, 30,
                     "the exporter to hold every series")
            # As the exporter's command line does after start-up; in this shared process it spares the
            # reference the same full-collection pauses.
            gc.collect()
            gc.freeze()
            ours_url = f"{exporter.url}/metrics"
            reference_url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
            for mode in ("idle", "busy"):
                stop = threading.Event()
                feeder = threading.Thread(target=_feed, args=(simulator, reference, currencies, stop), daemon=True)
                if mode == "busy":
                    feeder.start()
                    time.sleep(0.5)  # let the feed reach its rate
                measurement = Measurement(currencies, wallets, mode)
                # One URL at a time (interleaved requests would make ours wait on what the reference
                # leaves behind in this shared process), each after its own warm-up, in both orders.
                half = scrapes // 2
                measurement.http_ours += scraper(half, ours_url)[0]
                measurement.http_reference += scraper(half, reference_url)[0]
                measurement.http_reference += scraper(half, reference_url)[0]
                measurement.http_ours += scraper(half, ours_url)[0]
                renders = max(20, scrapes // (4 if currencies >= 1000 else 1))
                measurement.render_ours = timed(lambda: exporter.exposition.render(None, None), renders)
                measurement.render_reference = timed(lambda: generate_latest(reference.registry), renders)
                stop.set()
                if feeder.is_alive():
                    feeder.join()
                results.append(measurement)
            _drain(simulator, exporter)
            results.append(_changed_renders(exporter, reference, currencies, wallets, scrapes))
        finally:
            server.shutdown()
            exporter.stop()
            gc.unfreeze()
    return results


def _drain(simulator: Simulator, exporter: Exporter) -> None:
    """Wait until the exporter has applied everything sent so far, so its feed thread is quiet.

    The feed is ordered: once a marker pushed last is visible, every message before it was applied.
    """
    marker = 987654.0
    simulator.push(KEY, [balance_entry("c0000", marker)])
    wait_for(lambda: exporter.state.snapshot().accounts[0].balances["c0000"].balance == marker, 30,
             "the exporter to apply the whole busy feed")


def _changed_renders(exporter: Exporter, reference: Reference, currencies: int, wallets: int,
                     count: int) -> Measurement:
    """The worst case: each render follows a change, so nothing can come from the cache."""
    measurement = Measurement(currencies, wallets, "changed")
    warm_up = 10

    def render_ours() -> float:
        started = time.perf_counter()
        exporter.exposition.render(None, None)
        return time.perf_counter() - started

    def render_reference() -> float:
        started = time.perf_counter()
        generate_latest(reference.registry)
        return time.perf_counter() - started

    for index in range(count + warm_up):
        entry = balance_entry(f"c{index % currencies:04d}", 2000.0 + index)
        exporter.state.ingest("main", parse_frame(json.dumps(
            {"sequence": index, "recipient": "private.user.balances", "payload": [entry]})))
        reference.apply(entry)
        # Alternate which side renders first, so neither always pays for what the other left behind.
        if index % 2:
            ours, theirs = render_ours(), render_reference()
        else:
            theirs, ours = render_reference(), render_ours()
        if index >= warm_up:
            measurement.render_ours.append(ours)
            measurement.render_reference.append(theirs)
    return measurement


def _feed(simulator: Simulator, reference: Reference, currencies: int, stop: threading.Event) -> None:
    """FEED_RATE messages a second, in bursts of ten, each moving one currency, to both sides."""
    width = min(currencies, 20)
    payloads = flood_payloads(width)
    sent = 0
    started = time.monotonic()
    while not stop.is_set():
        simulator.flood(KEY, 10, functools.partial(lambda base, i: payloads(base + i), sent))
        for index in range(sent, sent + 10):
            moved = balance_entry(f"c{index % width:04d}", 1000.0 + index * 0.01)
            reference.apply(moved)
        sent += 10
        delay = started + sent / FEED_RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def run(scrapes: int = 200, sizes: list[tuple[int, int]] | None = None) -> list[Measurement]:
    results = []
    for currencies, wallets in sizes or SIZES:
        results.extend(measure_size(currencies, wallets, scrapes))
    return results


def rows(results: list[Measurement]) -> list[tuple[str, str, str, str, str]]:
    table = []
    for m in results:
        label = f"scrape {m.currencies}c+{m.wallets}w {m.mode}"
        for kind, ours, reference in (("HTTP", m.http_ours, m.http_reference),
                                      ("render", m.render_ours, m.render_reference)):
            if not ours:
                continue
            p50, p99 = percentile(ours, 0.5), percentile(ours, 0.99)
            r50, r99 = percentile(reference, 0.5), percentile(reference, 0.99)
            speedup = r50 / p50
            # No target on idle scrapes: over HTTP they mostly measure the client and the kernel.
            target, verdict = "", ""
            if m.mode == "changed":
                target, verdict = f">= {TARGET_CHANGED_SPEEDUP:g}x faster", _ok(speedup >= TARGET_CHANGED_SPEEDUP)
            elif m.mode == "busy":
                target, verdict = "not slower", _ok(p50 <= r50 and p99 <= r99)
            table.append((f"{label} {kind}", f"p50 {p50 * 1e3:.3f} / p99 {p99 * 1e3:.3f} ms",
                          f"ref p50 {r50 * 1e3:.3f} / p99 {r99 * 1e3:.3f} ms; {speedup:.1f}x", target, verdict))
    return table


def _ok(passed: bool) -> str:
    return "met" if passed else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    for row in rows(run(args.scrapes)):
        print("  ".join(row))


if __name__ == "__main__":
    main()
