"""The simulator's REST side on the standard library's threading HTTP server: balances and currency pairs."""

from __future__ import annotations

import logging
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from .market import PAIRS_PATH

if TYPE_CHECKING:
    from .server import Simulator

log = logging.getLogger("sfox_exporter.simulator")


class RestHandler(BaseHTTPRequestHandler):
    server_version = "sfox-simulator"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        simulator: Simulator = self.server.simulator  # type: ignore[attr-defined]
        if self.path.split("?")[0] == PAIRS_PATH:
            status, body = simulator.market.rest_pairs(simulator.key_valid(self.headers.get("Authorization")))
            self._reply(status, {}, body)
            return
        if self.path.split("?")[0] != "/v1/user/balance":
            self._reply(404, {}, b'{"error":"not found"}')
            return
        if simulator.rest_delay:
            time.sleep(simulator.rest_delay)
        status, headers, body = simulator.rest_balance(self.headers.get("Authorization"))
        self._reply(status, headers, body)

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("rest %s", format % args)
