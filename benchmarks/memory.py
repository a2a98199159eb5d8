"""Peak RSS of decoding in-cap inputs, each in a fresh subprocess (ru_maxrss is a high-water mark).

Usage: .venv/bin/python benchmarks/memory.py [MESSAGE_MIB] [REST_MIB]
Prints the baseline RSS of an interpreter with the package imported, the peak while decoding a
WebSocket balances message and a REST body of the given sizes (many small entries, the worst
case per byte), and the extra peak per byte of input, for sizing the caps against the 64 MiB limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

CHILD = r'''
import json, resource, sys
from sfox_exporter.sfox.decode import parse_frame, parse_rest_balances
kind, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read() if path else b""
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if kind == "ws":
    parse_frame(data)
elif kind == "rest":
    parse_rest_balances(data)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"bytes": len(data), "before_kib": before, "peak_kib": after}))
'''


def make_input(kind: str, size: int) -> str:
    """Many small entries (the worst case per byte), written to a file so that building them
    does not raise the child's high-water mark."""
    entry = {"currency": "btc", "balance": 1.5, "available": 1.25, "held": 0.25}
    one = len(json.dumps(entry)) + 2
    entries = [dict(entry, currency=f"c{i % 1000}") for i in range(size // one)]
    document: object = entries
    if kind == "ws":
        document = {"sequence": 1, "recipient": "private.user.balances", "timestamp": 1, "payload": entries}
    with tempfile.NamedTemporaryFile(delete=False, suffix=".json") as file:
        file.write(json.dumps(document).encode())
        return file.name


def run(kind: str, size: int) -> dict[str, int]:
    path = make_input(kind, size) if size else ""
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, kind, path], check=True, capture_output=True, text=True)
    finally:
        if path:
            os.unlink(path)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    message_mib = float(sys.argv[1]) if len(sys.argv) > 1 else 8
    rest_mib = float(sys.argv[2]) if len(sys.argv) > 2 else 8
    base = run("none", 0)
    print(f"baseline (interpreter + package): {base['peak_kib'] / 1024:.1f} MiB")
    for kind, mib in (("ws", message_mib), ("rest", rest_mib)):
        result = run(kind, int(mib * 2**20))
        extra = (result["peak_kib"] - base["peak_kib"]) * 1024
        print(f"{kind}: input {result['bytes'] / 2**20:.2f} MiB, peak {result['peak_kib'] / 1024:.1f} MiB, "
              f"above baseline {extra / 2**20:.1f} MiB = {extra / result['bytes']:.2f} bytes per input byte "
              "(input held + decode)")


if __name__ == "__main__":
    main()
