"""Valuation: freshness from a ticker message to the new price on /metrics, and ingest of a balance
flood beside 50 ticker feeds ticking every 3 s.

    python -m benchmarks.valuation [--updates 200] [--flood 50000]

The exporter runs in its own process. References in the same run: the same exporter's freshness for
a balance update (interleaved with the ticker updates), and the same flood without valuation.
"""

from __future__ import annotations

import argparse
import json
import time

from sfox_exporter.simulator import Ledger, Simulator

from .common import KEY, balance_entry, exporter_process, one_account_config, percentile, scrape_value, wait_for
from .contenders.scraper import Scraper

TARGET_P99 = 0.005
TICKERS = 50


def _config(valuation: bool) -> str:
    return one_account_config() + f"valuation: {json.dumps({'enabled': valuation})}\n"


def freshness(updates: int) -> tuple[list[float], list[float]]:
    with Simulator({KEY: Ledger("main")}, push_interval=None) as simulator, \
            exporter_process(simulator.ws_url, simulator.rest_url, _config(True)) as (_, url):
        wait_for(lambda: simulator.market.subscribers("btcusd"), 15, "the ticker subscription")
        host, port = url.removeprefix("http://").split(":")
        scraper = Scraper(host, int(port), "/metrics")
        prices, balances = [], []
        for index in range(updates):
            last = 50_000 + index + 0.5
            needle = f'sfox_price{{currency="btc",quote="usd"}} {last!r}\n'.encode()
            started = time.perf_counter()
            simulator.market.set_price("btcusd", last)
            while needle not in scraper.get():
                if time.perf_counter() - started > 5:
                    raise TimeoutError("the price never reached /metrics")
            prices.append(time.perf_counter() - started)
            entry = balance_entry("usd", 1000.0)
            entry["available"] = f"{1_000_000 + index}.25"
            needle = f'sfox_balance_available{{account="main",currency="usd"}} {1_000_000 + index}.25\n'.encode()
            started = time.perf_counter()
            simulator.push(KEY, [entry])
            while needle not in scraper.get():
                if time.perf_counter() - started > 5:
                    raise TimeoutError(f"the balance never reached /metrics (update {index})")
            balances.append(time.perf_counter() - started)
            time.sleep(0.01)
        return prices, balances


def flood_rate(valuation: bool, count: int) -> float:
    ledger = Ledger("main")
    with Simulator({KEY: ledger}, push_interval=None) as simulator:
        for n in range(TICKERS):
            simulator.market.add_pair(f"c{n:02d}usd", f"c{n:02d}", "usd", 10.0 + n)
        simulator.market.interval = 3.0
        with exporter_process(simulator.ws_url, simulator.rest_url, _config(valuation)) as (_, url):
            wait_for(lambda: simulator.subscriber_count(KEY), 15, "the account subscription")
            simulator.push(KEY, [balance_entry(f"c{n:02d}", 1.0) for n in range(TICKERS)])
            if valuation:
                wait_for(lambda: simulator.market.subscribers("c49usd"), 15, "50 ticker feeds")
            before = scrape_value(url, "sfox_feed_messages_total", account="main", kind="balances") or 0.0
            started = time.perf_counter()
            simulator.flood(KEY, count, [balance_entry("usd", 1000.0)])
            wait_for(lambda: (scrape_value(url, "sfox_feed_messages_total", account="main", kind="balances") or 0)
                     >= before + count, 120, "the flood")
            return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--flood", type=int, default=50_000)
    args = parser.parse_args()
    prices, balances = freshness(args.updates)
    p50, p99 = percentile(prices, 0.5), percentile(prices, 0.99)
    b50, b99 = percentile(balances, 0.5), percentile(balances, 0.99)
    print(f"freshness: ticker to sfox_price on /metrics  p50 {p50 * 1e3:.2f} / p99 {p99 * 1e3:.2f} ms  "
          f"(balance update, same run: p50 {b50 * 1e3:.2f} / p99 {b99 * 1e3:.2f} ms)  p99 < 5 ms: "
          f"{'met' if p99 < TARGET_P99 else 'MISSED'}")
    without = flood_rate(False, args.flood)
    beside = flood_rate(True, args.flood)
    print(f"ingest: balance flood {beside:,.0f} msg/s beside {TICKERS} ticker feeds at 3 s, "
          f"{without:,.0f} msg/s without valuation ({beside / without:.2f}x)")


if __name__ == "__main__":
    main()
