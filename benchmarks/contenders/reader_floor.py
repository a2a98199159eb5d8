"""The floor of this exporter's design: its own WebSocket reader plus one msgspec decode a message.

    python -m benchmarks.contenders.reader_floor WS_URL API_KEY COUNT

Like floor.py, but frames come from the exporter's own connection (sfox/handshake.py and
sfox/frames.py) instead of websocket-client's recv: what the exporter would reach if checking
labels, keeping the balance book, counting and answering pings cost nothing. The ingest benchmark
reports it beside the bare websocket-client loop, to show how much of that loop's speed any exporter
that decodes the balances in Python can have at all.
"""

from __future__ import annotations

import json
import sys
import time

import msgspec

from sfox_exporter.sfox.connection import WebSocketConnection
from sfox_exporter.sfox.frames import OP_TEXT

from .floor import Message


def main() -> None:
    url, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    decode = msgspec.json.Decoder(Message, strict=False).decode
    connection = WebSocketConnection(url, 10.0, "benchmark")
    connection.send_text(json.dumps({"type": "authenticate", "apiKey": key}))
    connection.send_text(json.dumps({"type": "subscribe", "feeds": ["private.user.balances"]}))
    replies = 0
    while replies < 2:  # the two replies, read and dropped
        if connection.receive(time.monotonic() + 10) is not None:
            replies += 1
    print("ready", flush=True)
    received = 0
    receive = connection.receive
    while received < count:
        message = receive(time.monotonic() + 60)
        if message is not None and message[0] == OP_TEXT:
            decode(message[1])
            received += 1
    print("done", flush=True)


if __name__ == "__main__":
    main()
