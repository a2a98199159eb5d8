"""The floor of any decoding exporter: the bare websocket-client loop plus one msgspec decode a message.

    python -m benchmarks.contenders.floor WS_URL API_KEY COUNT

Like the ceiling, but every data message is decoded, in msgspec's lax mode, into typed structs of
the documented shape with the amounts as floats: the least an exporter must do to know the
balances, and nothing else (no checks, no labels, no state, no metrics). The exporter can be no
faster than this on one core; the ingest benchmark shows how close it comes.
"""

from __future__ import annotations

import sys

import msgspec

from .sfox import subscribed


class Entry(msgspec.Struct, gc=False):
    currency: str
    balance: float
    available: float
    held: float
    trading_wallet: float
    collateral_wallet: float
    borrow_wallet: float
    lending_wallet: float


class Message(msgspec.Struct, gc=False):
    sequence: int
    recipient: str
    timestamp: int
    payload: list[Entry]


def main() -> None:
    url, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    decode = msgspec.json.Decoder(Message, strict=False).decode
    ws = subscribed(url, key, skip_utf8_validation=True)
    print("ready", flush=True)
    received = 0
    while received < count:
        decode(ws.recv())
        received += 1
    print("done", flush=True)


if __name__ == "__main__":
    main()
