"""The HTTP endpoint: /metrics, /healthz, /readyz, a landing page and /-/reload.

The standard library's threaded server and request handler (handler.py), a thread per connection,
so a slow scrape never holds up another and the feed threads never wait on HTTP at all. Around the
accept loop, what the library does not do: a cap on connections, overall and per address, that
evicts slow or silent ones rather than refuse a scrape (connections.py), and deadlines for every
phase of a connection, enforced from the accept loop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import HTTPServer
from socketserver import TCPServer, ThreadingMixIn
from typing import Any

from sfox_exporter.web.connections import Connection, Connections, Phase
from sfox_exporter.web.handler import Handler
from sfox_exporter.web.routes import Lifecycle, Security, WebApp

log = logging.getLogger("sfox_exporter.http")

__all__ = ["HttpServer", "Lifecycle", "Limits", "Security", "WebApp"]



@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    # One address's share: a flood from one source then only evicts its own connections. The oldest
    # unfinished one of the same address goes first, so a scraper behind the same address still gets in.
    max_connections_per_address: int = 32
    idle_seconds: float = 60.0  # a kept-alive connection may wait this long for its next request
    request_head_seconds: float = 5.0  # from the first byte of a request to the end of its headers
    max_request_line: int = 8 * 1024
    max_request_head_bytes: int = 32 * 1024
    write_seconds: float = 30.0  # for a whole answer, however slowly the client reads it
    busy_grace_seconds: float = 1.0  # busy this long, a connection may be closed for a newcomer
    tls_handshake_seconds: float = 5.0  # from the accept to the end of the TLS handshake


class _NoSecurity:
    headers: dict[str, str] = {}
    ssl_context = None

    def authorized(self, authorization: str | None) -> bool:
        return True

    def peer_allowed(self, sock: Any) -> bool:
        return True

    def allow_request(self) -> bool:
        return True


class HttpServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, app: WebApp, version: str, *, security: Security | None = None,
                 limits: Limits | None = None, lifecycle: bool = False,
                 reload: Callable[[], str | None] | None = None) -> None:
        self.app = app
        self.version = version
        self.security: Security = security or _NoSecurity()
        self.limits = limits or Limits()
        self.lifecycle = Lifecycle(lifecycle, reload)
        self.connections = Connections(
            self.limits.max_connections, self.limits.max_connections_per_address,
            # Reads also stop at their deadline on their own; these catch a trickled TLS handshake.
            {Phase.HANDSHAKE: self.limits.tls_handshake_seconds,
             Phase.HEAD: self.limits.request_head_seconds + 1.0,
             Phase.IDLE: self.limits.idle_seconds + 1.0,
             Phase.BUSY: self.limits.write_seconds + 1.0},
            self.limits.busy_grace_seconds)
        self._thread: threading.Thread | None = None
        if host == "" and socket.has_ipv6:
            # ":9841" listens everywhere, IPv6 too, as Go exporters do; IPv4 alone where the kernel
            # has IPv6 switched off (some clusters do).
            self.address_family = socket.AF_INET6
            try:
                super().__init__(("::", port), Handler)
                return
            except OSError as error:
                if error.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT):
                    raise
        self.address_family = _address_family(host)
        super().__init__((host, port), Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # "[::]:9841" serves IPv4 too, as Go programs do.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # HTTPServer.server_bind would also look up the host's FQDN, which can hang without DNS.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def set_security(self, security: Security | None) -> None:
        """A reloaded web config: one assignment, so each request sees the old or the new, never a mix;
        connections already open keep the TLS session they began with."""
        self.security = security or _NoSecurity()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
        self.server_close()

    def service_actions(self) -> None:
        self.connections.reap()

    def process_request(self, request: Any, client_address: Any) -> None:
        address = str(client_address[0])
        if self.connections.admit(request, request, address) is None:
            log.warning("refusing a connection from %s: %d connections already open and busy", address,
                        len(self.connections))
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release(request)
            raise

    def connection_of(self, request: socket.socket) -> Connection:
        entry = self.connections.entry(request)
        if entry is None:  # evicted before its thread began
            raise ConnectionError("evicted")
        return entry

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        entry = self.connections.entry(request)  # kept: an eviction takes it out of the table
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release(request)
            if entry is not None and entry.sock is not request:  # the TLS socket that replaced it
                with contextlib.suppress(OSError):
                    entry.sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)


def _address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
