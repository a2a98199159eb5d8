"""What every WebSocket contender does first: connect, authenticate and subscribe to the balances."""

from __future__ import annotations

import json
from typing import Any

import websocket


def subscribed(url: str, key: str, **options: Any) -> websocket.WebSocket:
    """A websocket-client connection, subscribed to private.user.balances (`options` go to
    create_connection). The two replies are read and dropped."""
    ws = websocket.create_connection(url, **options)
    ws.send(json.dumps({"type": "authenticate", "apiKey": key}))
    ws.recv()
    ws.send(json.dumps({"type": "subscribe", "feeds": ["private.user.balances"]}))
    ws.recv()
    return ws
