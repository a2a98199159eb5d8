"""A naive exporter, written the way sFOX's documentation example suggests.

    python -m benchmarks.contenders.naive WS_URL API_KEY COUNT

websocket-client with its defaults, json.loads per message, and prometheus_client Gauges set with
Gauge.labels(...).set(...) for every field, served by start_http_server. It prints "ready PORT" once
subscribed and "done" once it has applied COUNT balance messages.
"""

from __future__ import annotations

import json
import sys

from prometheus_client import Gauge, start_http_server

from .sfox import subscribed

BALANCE = Gauge("sfox_balance", "balance", ["account", "currency"])
AVAILABLE = Gauge("sfox_balance_available", "available", ["account", "currency"])
HELD = Gauge("sfox_balance_held", "held", ["account", "currency"])
WALLET = Gauge("sfox_wallet_balance", "wallet", ["account", "currency", "wallet"])


def main() -> None:
    url, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    server, _ = start_http_server(0, addr="127.0.0.1")
    ws = subscribed(url, key)
    print(f"ready {server.server_address[1]}", flush=True)
    applied = 0
    while applied < count:
        message = json.loads(ws.recv())
        if message.get("recipient") != "private.user.balances":
            continue
        for entry in message["payload"]:
            currency = entry["currency"].lower()
            BALANCE.labels("main", currency).set(float(entry["balance"]))
            AVAILABLE.labels("main", currency).set(float(entry["available"]))
            HELD.labels("main", currency).set(float(entry["held"]))
            for wallet in ("trading", "collateral", "borrow", "lending"):
                WALLET.labels("main", currency, wallet).set(float(entry[f"{wallet}_wallet"]))
        applied += 1
    print("done", flush=True)


if __name__ == "__main__":
    main()
