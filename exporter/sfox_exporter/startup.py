"""What the start-up log says: where the exporter really listens, whether that is exposed without
protection, and how the request budget spreads the first connections.

Kept out of app.py so the wording and the arithmetic can be tested without starting anything.
"""

from __future__ import annotations

import ipaddress
import math

LOOPBACK_NAMES = ("localhost",)


def listen_address(host: str, port: int) -> str:
    """HOST:PORT as bound: "0.0.0.0:9841" stays that, never a rewritten 127.0.0.1."""
    host = host or "0.0.0.0"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # "" (every interface) or a name: assume reachable from elsewhere


def exposure_warning(host: str, port: int, *, tls: bool, basic_auth: bool) -> str | None:
    """A warning when balances would be served in clear and to anyone who can reach the port."""
    if is_loopback(host) or tls or basic_auth:
        return None
    return (f"listening on {listen_address(host, port)} without TLS or basic auth: anyone who can reach this "
            "port can read the balances; set --web.config.file (tls_server_config, basic_auth_users) "
            "or listen on 127.0.0.1")


def budget_plan(connections: int, per_connection: int, limit: int, window: float, seconds: float) -> str:
    """One line on how the first connections fit the request budget."""
    needed = connections * per_connection
    head = (f"{connections} sFOX connection(s) at {per_connection} requests each ({needed} requests) "
            f"within a budget of {limit} requests per {window:.0f}s (sfox.max_requests_per_minute)")
    if math.isinf(seconds):
        return f"{head}: the budget is too small for even one connection"
    if seconds <= 0:
        return f"{head}: all connect at once"
    return f"{head}: spread out, all connected in about {seconds:.0f}s"
