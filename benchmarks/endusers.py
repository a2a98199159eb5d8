"""sFOX Connect end users at scale: ingest, scrape, CPU and memory, each against a reference.

    python -m benchmarks.endusers [--users 100000] [--scale 1000,10000,100000] [--skip-ingest]

- ingest: N users x 5 currencies, one message per user flooded over loopback, the exporter (its own
  process, aggregates-only and per-user) against a bare websocket-client loop on the same flood.
  Timed from the flood's start to the exporter's last-message timestamp, scraped every 15 s as by
  Prometheus.
- scrape (per-user series, N x 5 x 2 series): a render after 15,000 changed users (1,000 updates/s
  for a 15 s scrape interval) against prometheus_client's generate_latest over the same series.
- steady CPU: decoding (as an enterprise connection does: the fast path first) and applying 15,000
  frames plus that render, as a share of 15 s of one core.
- memory: RSS of a process holding N users (aggregates-only; per-user after one render), and per user.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from sfox_exporter.clock import SystemClock
from sfox_exporter.config import EndUsersConfig
from sfox_exporter.metrics.endusers import EndUserBook
from sfox_exporter.metrics.endusers_render import EndUserCollector, EndUserRenderer
from sfox_exporter.metrics.exposition import Exposition
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.decode import parse_end_users_frame
from sfox_exporter.sfox.enterprise import EndUserSink
from sfox_exporter.simulator import Ledger, Simulator
from sfox_exporter.simulator.enterprise import END_USERS_FEED, flood_payloads

from .common import KEY, UNLIMITED, environment, exporter_process, proc_status, scrape_value

SCRAPE_INTERVAL = 15.0  # Prometheus's default
CHANGES_PER_SCRAPE = 15_000  # 1,000 user updates/s, 15 s scrape interval


def frames(users: int, start: int = 0, count: int | None = None) -> Iterator[bytes]:
    """Frames made one at a time, so that the memory figures measure the exporter, not the input."""
    payload = flood_payloads(users)
    for i in range(start, start + (users if count is None else count)):
        yield f'{{"sequence":{i + 1},"recipient":"{END_USERS_FEED}","timestamp":{time.time_ns()},' \
              f'"payload":{payload(i)}}}'.encode()


def loaded(users: int, per_user: bool) -> tuple[State, EndUserBook, Exposition, EndUserSink]:
    book = EndUserBook(EndUsersConfig(per_user_series=per_user), max_series=10 * users + 10)
    state = State(("platform",), clock=SystemClock(), max_series=10 * users + 10, end_users={"platform": book})
    exposition = Exposition(state, "bench", extra=EndUserRenderer({"platform": book}).render)
    sink = EndUserSink(state, "platform", book)
    for frame in frames(users):
        sink.deliver(parse_end_users_frame(frame))  # as an enterprise connection parses
    return state, book, exposition, sink


def scrape_and_cpu(users: int) -> dict[str, float]:
    _, book, exposition, sink = loaded(users, per_user=True)
    exposition.render()  # the first render formats every user
    changed = list(frames(users, start=users, count=min(CHANGES_PER_SCRAPE, users)))
    cpu = time.process_time()
    started = time.perf_counter()
    for frame in changed:
        sink.deliver(parse_end_users_frame(frame))  # as an enterprise connection parses
    ingest_seconds = time.perf_counter() - started
    started = time.perf_counter()
    body = exposition.render().body
    render_seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    registry = CollectorRegistry()
    registry.register(EndUserCollector({"platform": book}))
    started = time.perf_counter()
    reference = generate_latest(registry)
    reference_seconds = time.perf_counter() - started
    return {"series": body.count(b"\nsfox_end_user_balance"), "render_s": render_seconds,
            "reference_s": reference_seconds, "speedup": reference_seconds / render_seconds,
            "ingest_15k_s": ingest_seconds, "cpu_share": cpu_seconds / 15.0,
            "body_mb": len(body) / 2**20, "reference_mb": len(reference) / 2**20}


def memory_child(users: int, per_user: bool) -> None:
    baseline = proc_status_self()
    _, _, exposition, _ = loaded(users, per_user)
    if per_user:
        exposition.render()
    rss = proc_status_self()
    print(json.dumps({"rss_mb": rss / 1024, "bytes_per_user": (rss - baseline) * 1024 / users}))


def proc_status_self() -> int:
    import os  # noqa: PLC0415 - the child only
    return proc_status(os.getpid())["rss_kib"]


def memory(users: int, per_user: bool) -> dict[str, float]:
    output = subprocess.run([sys.executable, "-m", "benchmarks.endusers", "--memory-child", str(users),
                             *(["--per-user"] if per_user else [])], capture_output=True, text=True, check=True,
                            env=environment())
    result: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def ceiling(simulator: Simulator, users: int) -> float:
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.contenders.ceiling", simulator.ws_url, KEY,
                                str(users)], stdout=subprocess.PIPE, text=True, env=environment())
    try:
        assert process.stdout is not None
        if not process.stdout.readline().startswith("ready"):
            raise RuntimeError("the ceiling did not subscribe")
        started = time.perf_counter()
        threading.Thread(target=simulator.flood, args=(KEY, users, flood_payloads(users), END_USERS_FEED),
                         daemon=True).start()
        process.stdout.readline()
        return users / (time.perf_counter() - started)
    finally:
        process.wait(120)


def exporter_ingest(simulator: Simulator, users: int, per_user: bool) -> float:
    config = ("accounts: [{name: main, kind: enterprise, api_key_env: BENCH_KEY}]\n"
              f"feed: {json.dumps({'rest_snapshot': False, 'stale_after_seconds': 0, 'max_series': 10 * users})}\n"
              f"end_users: {{per_user_series: {str(per_user).lower()}}}\nvaluation: {{enabled: false}}\n")
    with exporter_process(simulator.ws_url, simulator.rest_url, config) as (_, url):
        deadline = time.monotonic() + 15
        while simulator.subscriber_count(KEY) < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the exporter did not subscribe")
            time.sleep(0.01)
        started = time.time()
        threading.Thread(target=simulator.flood, args=(KEY, users, flood_payloads(users), END_USERS_FEED),
                         daemon=True).start()
        # Scraped as Prometheus would, at its default interval: the end is read from the exporter's
        # last-message timestamp, so how often it is polled changes only how long we wait, while
        # polling every 2 s (as this did) rendered each new user's per-user series several times
        # in the middle of a 2-second flood, which no 15 s scrape would.
        while (scrape_value(url, "sfox_feed_messages_total", account="main", kind="end_users") or 0) < users:
            time.sleep(SCRAPE_INTERVAL)
        last = scrape_value(url, "sfox_feed_last_message_timestamp_seconds", account="main") or time.time()
        return users / (last - started)


def ingest(users: int) -> dict[str, float]:
    with Simulator({KEY: Ledger("main")}, push_interval=None, limits=UNLIMITED) as simulator:
        bare = ceiling(simulator, users)
        aggregates = exporter_ingest(simulator, users, per_user=False)
        per_user = exporter_ingest(simulator, users, per_user=True)
    return {"bare_msg_s": bare, "aggregates_msg_s": aggregates, "per_user_msg_s": per_user,
            "aggregates_vs_bare": aggregates / bare, "per_user_vs_bare": per_user / bare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--scale", default="1000,10000,100000", help="user counts for the scale table")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--per-user", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.memory_child:
        memory_child(arguments.memory_child, arguments.per_user)
        return
    results: dict[str, Any] = {}
    if not arguments.skip_ingest:
        results["ingest"] = ingest(arguments.users)
        print("ingest", _fmt(results["ingest"]), flush=True)
    for users in (int(n) for n in arguments.scale.split(",")):
        row = {"users": users, **scrape_and_cpu(users)}
        row.update({f"agg_{k}": v for k, v in memory(users, per_user=False).items()})
        row.update({f"per_user_{k}": v for k, v in memory(users, per_user=True).items()})
        print("scale", _fmt(row), flush=True)


def _fmt(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


if __name__ == "__main__":
    main()
