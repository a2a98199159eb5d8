"""Run every benchmark and print one table: each figure beside its reference and its target.

    python -m benchmarks                # the full run, about 15 minutes
    python -m benchmarks --quick        # a smoke run, 3-4 minutes; figures are rougher
    python -m benchmarks --minutes 1    # the full run with a 1-minute footprint feed
    make bench                          # the full run, the footprint on the exporter as installed

The machines this runs on are shared and noisy, so every figure is measured against a reference in
the same run: ingest against a bare websocket-client loop and a naive exporter, scrapes against
prometheus_client's generate_latest over plain Gauges, scrapes under load against the same
scrapers with the feed stopped, freshness against the WebSocket delivery alone, footprint against
the naive exporter.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from . import footprint, freshness, ingest, load, scrape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and a 1-minute footprint run")
    parser.add_argument("--minutes", type=float, default=None,
                        help="minutes of feed before the footprint is read (default 5, or 1 with --quick)")
    parser.add_argument("--python", default=sys.executable, help="for the footprint, " + footprint.PYTHON_HELP)
    args = parser.parse_args()
    started = time.monotonic()
    print(f"# sfox-exporter benchmarks: Python {platform.python_version()}, {platform.machine()}, "
          f"{'quick' if args.quick else 'full'} run", flush=True)
    rows: list[tuple[str, str, str, str, str]] = []
    rows += ingest.run(messages=30000 if args.quick else 100000, rounds=1 if args.quick else 3,
                       naive_messages=5000 if args.quick else 20000).rows()
    _print(rows)
    rows = scrape.rows(scrape.run(scrapes=50 if args.quick else 200,
                                  sizes=[(10, 100), (1000, 1000)] if args.quick else None))
    _print(rows)
    rows = load.run(scrapes=20 if args.quick else 60).rows()
    _print(rows)
    rows = freshness.run(updates=100 if args.quick else 500).rows()
    _print(rows)
    minutes = args.minutes if args.minutes is not None else 1 if args.quick else 5
    rows = footprint.run(minutes=minutes, idle_seconds=20 if args.quick else 60, python=args.python).rows()
    _print(rows)
    print(f"# done in {(time.monotonic() - started) / 60:.1f} minutes")


def _print(rows: list[tuple[str, str, str, str, str]]) -> None:
    for name, figure, reference, target, verdict in rows:
        print(f"| {name} | {figure} | {reference} | {target} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
