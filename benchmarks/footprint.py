"""Footprint: memory after 5 minutes of 10 messages a second over 100 currencies, and CPU when idle.

    python -m benchmarks.footprint [--minutes 5] [--idle-seconds 60]

The exporter and the naive exporter (the reference) run side by side, each in its own process, each
fed the same messages on its own connection, and each scraped every 15 s as by Prometheus. RSS is
read from /proc after the feed; idle CPU is the CPU time each uses over a quiet spell (still scraped
and, for the exporter, still pinging), as a share of one core.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from sfox_exporter.simulator import Ledger, Simulator

from .common import KEY, cpu_seconds, environment, exporter_process, flood_payloads, one_account_config, proc_status

NAIVE_KEY = "bench-naive-key-0123456789"
CURRENCIES = 100
RATE = 10  # messages per second
SCRAPE_INTERVAL = 15.0
TARGET_RSS_MB = 30.0
TARGET_IDLE_CPU = 0.01
PYTHON_HELP = ("the interpreter that runs the exporter (default: this one). The benchmarks' environment also "
               "holds the test tools: msgspec imports their typing_extensions when it finds it, and setuptools "
               "hooks into every start (0.45 MB together). `make bench` gives the interpreter of .venv-runtime, "
               "where the exporter is installed with its runtime dependencies only, as in the container image")


@dataclass
class FootprintResult:
    rss_mb: float
    reference_rss_mb: float
    idle_cpu: float
    reference_idle_cpu: float
    minutes: float

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        return [
            (f"footprint: RSS after {self.minutes:g} min of {RATE} msg/s, {CURRENCIES} currencies",
             f"{self.rss_mb:.1f} MB", f"naive exporter {self.reference_rss_mb:.1f} MB; "
             f"{self.rss_mb / self.reference_rss_mb:.2f}x", f"<= {TARGET_RSS_MB:g} MB",
             "met" if self.rss_mb <= TARGET_RSS_MB else "MISSED"),
            ("footprint: idle CPU (scraped every 15 s)", f"{self.idle_cpu * 100:.3f} % of a core",
             f"naive exporter {self.reference_idle_cpu * 100:.3f} %", "< 1 %",
             "met" if self.idle_cpu < TARGET_IDLE_CPU else "MISSED"),
        ]


def _naive_metrics_port(process: subprocess.Popen[str]) -> int:
    assert process.stdout is not None
    ready = process.stdout.readline().split()
    if not ready or ready[0] != "ready":
        raise RuntimeError("the naive exporter did not subscribe")
    return int(ready[1])


def run(minutes: float = 5.0, idle_seconds: float = 60.0, python: str = sys.executable) -> FootprintResult:
    ledgers = {KEY: Ledger("main"), NAIVE_KEY: Ledger("naive")}
    with Simulator(ledgers, push_interval=None) as simulator:
        naive = subprocess.Popen([sys.executable, "-m", "benchmarks.contenders.naive", simulator.ws_url, NAIVE_KEY,
                                  str(10**12)], stdout=subprocess.PIPE, text=True, env=environment())
        try:
            naive_port = _naive_metrics_port(naive)
            with exporter_process(simulator.ws_url, simulator.rest_url, one_account_config(),
                                  python=python) as (exporter, url):
                while simulator.subscriber_count(KEY) < 1:
                    time.sleep(0.01)
                stop = threading.Event()
                scrapes = [url + "/metrics", f"http://127.0.0.1:{naive_port}/metrics"]
                threading.Thread(target=_scrape_forever, args=(scrapes, stop), daemon=True).start()
                payloads = flood_payloads(CURRENCIES)
                sent = 0
                started = time.monotonic()
                deadline = started + minutes * 60
                while time.monotonic() < deadline:
                    message = _constant(payloads(sent))
                    for key in (KEY, NAIVE_KEY):
                        simulator.flood(key, 1, message)
                    sent += 1
                    time.sleep(max(0.0, started + sent / RATE - time.monotonic()))
                rss = proc_status(exporter.pid)["rss_kib"] / 1024
                reference_rss = proc_status(naive.pid)["rss_kib"] / 1024
                cpu_before, reference_before = cpu_seconds(exporter.pid), cpu_seconds(naive.pid)
                quiet_start = time.monotonic()
                time.sleep(idle_seconds)
                elapsed = time.monotonic() - quiet_start
                idle = (cpu_seconds(exporter.pid) - cpu_before) / elapsed
                reference_idle = (cpu_seconds(naive.pid) - reference_before) / elapsed
                stop.set()
        finally:
            naive.terminate()
            naive.wait(10)
    return FootprintResult(rss, reference_rss, idle, reference_idle, minutes)


def _constant(text: str) -> Callable[[int], str]:
    return lambda _: text


def _scrape_forever(urls: list[str], stop: threading.Event) -> None:
    while not stop.wait(SCRAPE_INTERVAL):
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    response.read()
            except OSError:
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--python", default=sys.executable, help=PYTHON_HELP)
    args = parser.parse_args()
    for row in run(args.minutes, args.idle_seconds, args.python).rows():
        print("  ".join(row))


if __name__ == "__main__":
    main()
