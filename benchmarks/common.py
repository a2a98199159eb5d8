"""Helpers shared by the benchmarks: processes, the flood payload, percentiles, /proc readings."""

from __future__ import annotations

import compileall
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import sfox_exporter
from sfox_exporter.simulator import Limits

KEY = "bench-key-0123456789abcdef"
# A benchmark opens connection after connection from one address; sFOX's per-IP request limit (which
# the simulator enforces, and the tests check) would block it within a minute of rounds.
UNLIMITED = Limits(ws_requests=100_000, connections=100)
WALLETS = ("trading", "collateral", "borrow", "lending")


def balance_entry(currency: str, amount: float) -> dict[str, str]:
    return {"currency": currency, "balance": f"{amount:.8f}", "available": f"{amount * 0.9:.8f}",
            "held": f"{amount * 0.1:.8f}", "trading_wallet": f"{amount * 0.7:.8f}",
            "collateral_wallet": f"{amount * 0.1:.8f}", "borrow_wallet": "0", "lending_wallet": f"{amount * 0.2:.8f}"}


COMPACT = (",", ":")
SPACED = (", ", ": ")  # json.dumps's default, as many JSON encoders write
# Distinct messages pre-built for a flood in which every entry changes: far more entries than any
# parser cache keeps, and built before the flood so that building them never slows it down.
CHANGING_POOL = 2000


def flood_payloads(currencies: int = 20, *, spaced: bool = False,
                   every_entry_changes: bool = False) -> Callable[[int], str]:
    """Message i carries every currency. By default one of them, in turn, has a new balance, as
    live trading would move them; with `every_entry_changes`, every entry of every message is new."""
    separators = SPACED if spaced else COMPACT

    def entry(currency: int, amount: float) -> str:
        return json.dumps(balance_entry(f"c{currency:04d}", amount), separators=separators)

    join = separators[0].join
    if every_entry_changes:
        pool = ["[" + join([entry(n, 1000.0 + n + index * 0.01) for n in range(currencies)]) + "]"
                for index in range(CHANGING_POOL)]
        return lambda index: pool[index % CHANGING_POOL]
    entries = [entry(n, 1000.0 + n) for n in range(currencies)]

    def payload(index: int) -> str:
        changed = index % currencies
        moved = entry(changed, 1000.0 + index * 0.01)
        return "[" + join([*entries[:changed], moved, *entries[changed + 1 :]]) + "]"

    return payload


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


def environment(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SFOX_")}, **extra}


@contextmanager
def exporter_process(ws_url: str, rest_url: str, config: str, switch_interval: float | None = None,
                     python: str = sys.executable) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The exporter in its own process, as it runs in production. Yields it and its base URL.

    `switch_interval` runs it under sys.setswitchinterval(value), to see how GIL hand-over affects it.
    `python` is the interpreter that runs it: by default the benchmarks' own, whose environment also
    holds the test tools."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(config)
    arguments = ["--config.file", handle.name, "--web.listen-address", "127.0.0.1:0"]
    launcher = ["-m", "sfox_exporter"]
    if switch_interval is not None:
        launcher = ["-c", f"import runpy, sys; sys.setswitchinterval({switch_interval!r}); "
                          "sys.argv[0] = 'sfox-exporter'; runpy.run_module('sfox_exporter', run_name='__main__')"]
    byte_compiled()
    process = subprocess.Popen(
        [python, *launcher, *arguments],
        stderr=subprocess.PIPE, text=True,
        env=environment(SFOX_WS_URL=ws_url, SFOX_REST_URL=rest_url, BENCH_KEY=KEY))
    try:
        url = ""
        while not url:
            line = process.stderr.readline() if process.stderr else ""
            if not line:
                raise RuntimeError("the exporter exited before serving")
            match = re.search(r"serving (http://\S+?)/metrics", line)
            url = match.group(1) if match else ""
        # Keep reading, so that a full pipe can never block the exporter's logging.
        threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True).start()
        yield process, url
    finally:
        process.terminate()
        process.wait(10)
        os.unlink(handle.name)


@functools.cache
def byte_compiled() -> None:
    """Byte-compile the exporter and the contenders, as pip does when it installs a package.

    A source checkout with PYTHONDONTWRITEBYTECODE set (as on CI machines and in containers) would
    otherwise compile every module from source at each start: slower, and it leaves about 1 MB of
    the compiler's memory in the process, which the footprint would count as the exporter's."""
    for package in (Path(sfox_exporter.__file__).parent, Path(__file__).parent):
        compileall.compile_dir(package, quiet=1)


def one_account_config(**feed: object) -> str:
    settings = {"ping_interval_seconds": 20, "rest_snapshot": False, "stale_after_seconds": 0, **feed}
    return ("accounts: [{name: main, api_key_env: BENCH_KEY}]\n"
            f"feed: {json.dumps(settings)}\n")


def scrape_value(url: str, name: str, **labels: str) -> float | None:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def proc_status(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_kib": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"])}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
