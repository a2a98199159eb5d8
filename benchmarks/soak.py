"""Soak: reconnect churn, faults and a message flood for 10 minutes; threads, fds and RSS must stay flat.

    python -m benchmarks.soak [--minutes 10] [--rate 200]

The exporter runs as its own process against an in-process simulator, as in production. Every few
seconds one account's connection is cut, half-opened, or fed a sequence gap or a malformed frame,
REST answers 429 and 500 now and then, /metrics is scraped once a second, and a steady flood of
20-currency balance messages flows. The figures are read from /proc at the start (after warm-up),
every minute, and at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from sfox_exporter.simulator import Ledger, Simulator

ACCOUNTS = {f"soak{i}": f"soak-key-{i}-0123456789abcdef" for i in range(3)}


def process_figures(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "threads": int(fields["Threads"].strip()),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "rss_kib": int(fields["VmRSS"].split()[0]),
    }


def flood_payload(rng: random.Random) -> list[dict[str, str]]:
    return [{"currency": f"c{i:02d}", "balance": f"{rng.uniform(0, 1e6):.8f}", "available": "1", "held": "0",
             "trading_wallet": "1", "collateral_wallet": "0", "borrow_wallet": "0", "lending_wallet": "0"}
            for i in range(20)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="flood messages per second, all accounts")
    args = parser.parse_args()
    rng = random.Random(1)
    simulator = Simulator({key: Ledger.demo(name) for name, key in ACCOUNTS.items()}, push_interval=0.5).start()
    config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)  # noqa: SIM115
    config.write("accounts:\n" + "".join(f"  - {{name: {n}, api_key_env: KEY_{n.upper()}}}\n" for n in ACCOUNTS))
    config.write("feed: {ping_interval_seconds: 2, ping_timeout_seconds: 2, backoff_initial_seconds: 0.5,"
                 " backoff_max_seconds: 5}\n")
    config.close()
    environment = {**os.environ, "SFOX_WS_URL": simulator.ws_url, "SFOX_REST_URL": simulator.rest_url,
                   **{f"KEY_{n.upper()}": k for n, k in ACCOUNTS.items()}}
    exporter = subprocess.Popen([sys.executable, "-m", "sfox_exporter", "--config.file", config.name,
                                 "--web.listen-address", "127.0.0.1:19899", "--log.level", "error"],
                                env=environment)
    stop = threading.Event()
    counts = {"scrapes": 0, "flooded": 0, "faults": 0}

    def scrape_forever() -> None:
        while not stop.wait(1.0):
            try:
                with urllib.request.urlopen("http://127.0.0.1:19899/metrics", timeout=5) as response:
                    response.read()
                counts["scrapes"] += 1
            except OSError:
                pass

    def flood_forever() -> None:
        per_batch = max(1, int(args.rate / 10))
        while not stop.wait(0.1):
            for key in ACCOUNTS.values():
                try:
                    simulator.flood(key, per_batch // len(ACCOUNTS) or 1, flood_payload(rng))
                    counts["flooded"] += per_batch // len(ACCOUNTS) or 1
                except Exception:
                    pass

    def churn_forever() -> None:
        keys = list(ACCOUNTS.values())
        faults = [
            lambda key: simulator.drop_connections(key),
            lambda key: simulator.half_open(key),
            lambda key: simulator.skip_sequence(3, key),
            lambda key: simulator.send_raw("{broken", key),
            lambda key: simulator.fail_rest(rng.choice([429, 500]), retry_after="1"),
        ]
        while not stop.wait(5.0):  # 3 accounts x 2 requests per reconnect stays under 40 a minute
            rng.choice(faults)(rng.choice(keys))
            counts["faults"] += 1

    for target in (scrape_forever, flood_forever, churn_forever):
        threading.Thread(target=target, daemon=True).start()
    time.sleep(15)  # warm-up: imports, first connections, first snapshots
    start = process_figures(exporter.pid)
    print(f"{'minute':>6} {'threads':>8} {'fds':>5} {'rss_MiB':>8} {'scrapes':>8} {'flooded':>9} {'faults':>7}")
    print(f"{'start':>6} {start['threads']:>8} {start['fds']:>5} {start['rss_kib'] / 1024:>8.1f}", flush=True)
    deadline = time.monotonic() + args.minutes * 60
    minute = 0
    while time.monotonic() < deadline:
        time.sleep(min(60.0, max(0.0, deadline - time.monotonic())))
        minute += 1
        now = process_figures(exporter.pid)
        print(f"{minute:>6} {now['threads']:>8} {now['fds']:>5} {now['rss_kib'] / 1024:>8.1f} "
              f"{counts['scrapes']:>8} {counts['flooded']:>9} {counts['faults']:>7}", flush=True)
    end = process_figures(exporter.pid)
    stop.set()
    exporter.send_signal(signal.SIGTERM)
    exit_status = exporter.wait(10)
    simulator.stop()
    os.unlink(config.name)
    print(f"{'end':>6} {end['threads']:>8} {end['fds']:>5} {end['rss_kib'] / 1024:>8.1f}")
    print(f"change: threads {end['threads'] - start['threads']:+d}, fds {end['fds'] - start['fds']:+d}, "
          f"RSS {(end['rss_kib'] - start['rss_kib']) / 1024:+.1f} MiB; exporter exit status {exit_status}; "
          f"simulator saw limit violations: {simulator.observed.limit_violations or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
