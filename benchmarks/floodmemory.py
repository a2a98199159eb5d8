"""Peak memory under a hostile flood: every account's connection flooded with messages at the cap.

    python -m benchmarks.floodmemory [--accounts 10] [--messages 30] [--python PY]

Each account's connection gets MESSAGES messages just under the 1 MiB message cap, in two shapes, each
against a fresh exporter: minimal new currencies (refused past feed.max_series once the account is
full), and one entry of some 65,000 `*_wallet` fields (the costliest input per byte to decode). The
exporter runs in its own process; reported are its resident memory before the flood (the reference,
in the same run), its peak (VmHWM, the kernel's high-water mark) and the shipped manifests' 128 Mi
limit. The figures in the README ("Bounds on every input") come from this command.
"""

from __future__ import annotations

import argparse
import itertools
import string
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sfox_exporter.sfox.frames import DEFAULT_MAX_MESSAGE_BYTES
from sfox_exporter.simulator import Ledger, Simulator

from .common import UNLIMITED, exporter_process, scrape_value

LIMIT_MIB = 128  # deploy/kubernetes/*.yaml
ENVELOPE_BYTES = 200  # sequence, recipient, timestamp


def _names() -> Iterator[str]:
    alphabet = string.ascii_lowercase + string.digits
    return ("".join(letters) for size in itertools.count(1) for letters in itertools.product(alphabet, repeat=size))


def payload(shape: str) -> str:
    """A balances payload just under the cap: many new currencies, or one entry of many wallets."""
    room = DEFAULT_MAX_MESSAGE_BYTES - ENVELOPE_BYTES
    template = '"{}_wallet":1' if shape == "wallets" else '{{"currency":"{}","held":1}}'
    parts, size = [], 30
    for name in _names():
        part = template.format(name)
        if size + len(part) + 1 > room:
            break
        parts.append(part)
        size += len(part) + 1
    joined = ",".join(parts)
    return '[{"currency":"usd",' + joined + "}]" if shape == "wallets" else "[" + joined + "]"


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@dataclass(frozen=True)
class Flood:
    before_mib: float
    peak_mib: float
    taken: int  # messages taken in, of all sent
    reconnects: int


def run_shape(shape: str, accounts: int, messages: int, python: str, max_series: int) -> Flood:
    keys = [f"flood-key-{n:02d}-0123456789abcdef" for n in range(accounts)]
    body = payload(shape)
    with tempfile.TemporaryDirectory() as directory, \
            Simulator({key: Ledger(f"a{n}") for n, key in enumerate(keys)}, push_interval=None,
                      limits=UNLIMITED) as simulator:
        lines = []
        for n, key in enumerate(keys):
            path = Path(directory) / f"key{n}"
            path.write_text(key)
            path.chmod(0o600)
            lines.append(f"  - {{name: a{n}, api_key_file: {path}}}")
        feed = f"{{rest_snapshot: false, stale_after_seconds: 0, max_series: {max_series}}}"
        config = ("accounts:\n" + "\n".join(lines) + f"\nfeed: {feed}\n"
                  "valuation: {enabled: false}\nsfox: {max_requests_per_minute: 40}\n")
        with exporter_process(simulator.ws_url, simulator.rest_url, config, python=python) as (process, url):
            deadline = time.monotonic() + 120
            while any(simulator.subscriber_count(key) < 1 for key in keys):
                if time.monotonic() > deadline:
                    raise RuntimeError("the exporter did not subscribe every account")
                time.sleep(0.05)
            before = vm_kib(process.pid, "VmRSS")
            text = lambda index: body  # noqa: E731 - the payload as JSON text (a str alone is sent as a JSON string)
            floods = [threading.Thread(target=simulator.flood, args=(key, messages, text)) for key in keys]
            for flood in floods:
                flood.start()
            for flood in floods:
                flood.join()
            # Until every message is taken in, or none more comes for 5 s: a connection whose pong
            # waits behind seconds of flood is ended (no pong within ping_timeout), and what sFOX
            # sent on it is lost, as it would be from sFOX.
            taken, still = -1.0, time.monotonic()
            while taken < messages * accounts and time.monotonic() - still < 5:
                time.sleep(0.2)
                now_taken = sum(scrape_value(url, "sfox_feed_messages_total", account=f"a{n}", kind="balances") or 0
                                for n in range(accounts))
                if now_taken != taken:
                    taken, still = now_taken, time.monotonic()
            reconnects = sum(scrape_value(url, "sfox_feed_reconnects_total", account=f"a{n}") or 0
                             for n in range(accounts))
            return Flood(before / 1024, vm_kib(process.pid, "VmHWM") / 1024, int(taken), int(reconnects))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--messages", type=int, default=30, help="per account")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the exporter")
    parser.add_argument("--max-series", type=int, default=10000,
                        help="feed.max_series: the series a flood of new currencies fills each account with")
    args = parser.parse_args()
    for shape in ("currencies", "wallets"):
        flood = run_shape(shape, args.accounts, args.messages, args.python, args.max_series)
        verdict = "under" if flood.peak_mib < LIMIT_MIB else "OVER"
        print(f"flood of {args.messages} x {DEFAULT_MAX_MESSAGE_BYTES >> 10} KiB messages of {shape} on each of "
              f"{args.accounts} connection(s), max_series {args.max_series}: RSS {flood.before_mib:.0f} MiB before, "
              f"peak {flood.peak_mib:.0f} MiB "
              f"({verdict} the {LIMIT_MIB} Mi limit); {flood.taken} of {args.messages * args.accounts} messages "
              f"taken in, {flood.reconnects} reconnect(s)", flush=True)


if __name__ == "__main__":
    main()
