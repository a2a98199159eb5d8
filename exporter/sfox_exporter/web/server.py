"""The HTTP endpoint: /metrics, /healthz, /readyz and a landing page.

A thread per connection, so a slow scrape never holds up another, and the feed threads never wait
on HTTP at all. The number of connections is capped, each request head must arrive whole within a
deadline, responses must drain within one too, and only GET and HEAD are served. TLS handshakes
happen in the connection's thread, never in the accept loop.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import TCPServer, ThreadingMixIn
from typing import Any, Protocol

from sfox_exporter.metrics.exposition import Rendered

log = logging.getLogger("sfox_exporter.http")

HEALTH_PATHS = ("/healthz", "/readyz")
MAX_HEADERS = 100  # as http.client allows
MAX_LINE = 65536
_HTTP_VERSION = re.compile(r"HTTP/(\d{1,10})\.(\d{1,10})")


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64
    idle_seconds: float = 60.0  # a kept-alive connection may wait this long for its next request
    request_head_seconds: float = 10.0  # from the first byte of a request to the end of its headers
    max_request_head_bytes: int = 32 * 1024
    write_seconds: float = 30.0
    tls_handshake_seconds: float = 10.0


class WebApp(Protocol):
    """What the server serves; the exporter provides it."""

    telemetry_path: str

    def render_metrics(self, accept: str | None, accept_encoding: str | None) -> Rendered: ...

    def health(self) -> tuple[bool, str]: ...

    def readiness(self) -> tuple[bool, str]: ...

    def landing_page(self) -> str: ...


class Security(Protocol):
    """TLS and authentication from --web.config.file."""

    headers: dict[str, str]

    @property
    def ssl_context(self) -> ssl.SSLContext | None: ...

    def authorized(self, authorization: str | None) -> bool: ...

    def peer_allowed(self, sock: ssl.SSLSocket) -> bool: ...

    def allow_request(self) -> bool: ...


class _NoSecurity:
    headers: dict[str, str] = {}

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return None

    def authorized(self, authorization: str | None) -> bool:
        return True

    def peer_allowed(self, sock: ssl.SSLSocket) -> bool:
        return True

    def allow_request(self) -> bool:
        return True


class HttpServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, app: WebApp, version: str, *, security: Security | None = None,
                 limits: Limits | None = None) -> None:
        self.app = app
        self.version = version
        self.security: Security = security or _NoSecurity()
        self.limits = limits or Limits()
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)
        # Connections waiting for their next request, oldest first: the ones to close when full.
        self._idle: dict[socket.socket, float] = {}
        self._idle_lock = threading.Lock()
        self.address_family = _address_family(host)
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # "[::]:9841" serves IPv4 too, as Go programs do.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # HTTPServer.server_bind would also look up the host's FQDN, which can hang without DNS.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

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

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        context = self.security.ssl_context
        if context is not None:
            sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # Full: make room by closing the connection that has waited longest for a request, so an
            # idle client can never lock out a scrape; busy ones free their slot within a deadline.
            self._close_oldest_idle()
            if not self._slots.acquire(timeout=1.0):
                log.warning("refusing a connection from %s: %d connections already busy",
                            client_address[0], self.limits.max_connections)
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def mark_idle(self, sock: socket.socket, idle: bool) -> None:
        with self._idle_lock:
            if idle:
                self._idle[sock] = time.monotonic()
            else:
                self._idle.pop(sock, None)

    def _close_oldest_idle(self) -> None:
        with self._idle_lock:
            if not self._idle:
                return
            oldest = min(self._idle, key=self._idle.__getitem__)
            del self._idle[oldest]
        with contextlib.suppress(OSError):
            oldest.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)


class _DeadlineReader(io.RawIOBase):
    """The connection's read side, bounded in time and size for each request head."""

    def __init__(self, sock: socket.socket, handler: _Handler) -> None:
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        handler = self._handler
        remaining = handler.read_deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request head deadline passed")
        limits = handler.server.limits
        if handler.head_bytes > limits.max_request_head_bytes:
            raise ValueError("request head too large")
        self._sock.settimeout(remaining)
        count = self._sock.recv_into(buffer)
        if count and handler.head_bytes == 0:
            handler.read_deadline = time.monotonic() + limits.request_head_seconds
            handler.server.mark_idle(self._sock, False)
        handler.head_bytes += count
        return count


class _Headers(dict[str, str]):
    """Request headers by lower-cased name; a repeated header keeps its last value."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class _Date:
    """The Date header, formatted once a second rather than once a response."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __str__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._text, self._second = email.utils.formatdate(now, usegmt=True), now
        return self._text


_DATE = _Date()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers to requests too broken to have a version still get a status line and headers, which
    # the standard library leaves out for its default, HTTP/0.9.
    default_request_version = "HTTP/1.0"
    server: HttpServer
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's, created by send_response
    raw_requestline: bytes  # BaseHTTPRequestHandler's, read by handle_one_request
    read_deadline = 0.0
    head_bytes = 0

    def setup(self) -> None:
        sock = self.request
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(self.server.limits.tls_handshake_seconds)
            sock.do_handshake()
            if not self.server.security.peer_allowed(sock):
                raise ssl.SSLError("the client certificate carries none of client_allowed_sans")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection = sock
        self.rfile = io.BufferedReader(_DeadlineReader(sock, self))
        self.wfile = sock.makefile("wb", buffering=0)

    def handle_one_request(self) -> None:
        self.read_deadline = time.monotonic() + self.server.limits.idle_seconds
        self.head_bytes = 0
        self.server.mark_idle(self.connection, True)
        try:
            super().handle_one_request()
        except (TimeoutError, ValueError, ConnectionError, ssl.SSLError):
            self.close_connection = True
        finally:
            self.server.mark_idle(self.connection, False)

    def version_string(self) -> str:
        return f"sfox-exporter/{self.server.version}"

    def parse_request(self) -> bool:
        """The request line and headers, with BaseHTTPRequestHandler's rules for versions, errors and
        keep-alive, but without the email parser it reads headers with: a GET of /metrics needs a
        handful of them, and this runs for every scrape. HTTP/0.9 is refused."""
        self.command = None  # type: ignore[assignment]
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) != 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({self.requestline!r})")
            return False
        command, path, version = words
        match = _HTTP_VERSION.fullmatch(version)
        if match is None:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
            return False
        number = (int(match.group(1)), int(match.group(2)))
        if number >= (2, 0):
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version})")
            return False
        self.close_connection = number < (1, 1)
        self.command, self.request_version = command, version
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        headers = _Headers()
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_LINE + 1)
            if len(line) > MAX_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = (headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        return True

    def do_GET(self) -> None:
        self._serve(head_only=False)

    def do_HEAD(self) -> None:
        self._serve(head_only=True)

    def _refuse_method(self) -> None:
        self._reply(405, "text/plain; charset=utf-8", b"method not allowed: use GET or HEAD\n",
                    extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def _serve(self, head_only: bool) -> None:
        if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # a body we will not read would be taken for the next request
        path = self.path.split("?", 1)[0]
        app = self.server.app
        security = self.server.security
        if not security.allow_request():
            self._reply(429, "text/plain; charset=utf-8", b"too many requests\n", head_only)
            return
        if path not in HEALTH_PATHS and not security.authorized(self.headers.get("Authorization")):
            self._reply(401, "text/plain; charset=utf-8", b"unauthorized\n", head_only,
                        extra={"WWW-Authenticate": 'Basic realm="sfox-exporter", charset="UTF-8"'})
            return
        if path == app.telemetry_path:
            rendered = app.render_metrics(self.headers.get("Accept"), self.headers.get("Accept-Encoding"))
            extra = {"Vary": "Accept, Accept-Encoding"}
            if rendered.content_encoding:
                extra["Content-Encoding"] = rendered.content_encoding
            self._reply(200, rendered.content_type, rendered.parts, head_only, extra)
        elif path == "/healthz":
            ok, text = app.health()
            self._reply(200 if ok else 503, "text/plain; charset=utf-8", text.encode(), head_only)
        elif path == "/readyz":
            ok, text = app.readiness()
            if not security.authorized(self.headers.get("Authorization")):
                text = "ready\n" if ok else "not ready\n"  # probes get the status; only users see the names
            self._reply(200 if ok else 503, "text/plain; charset=utf-8", text.encode(), head_only)
        elif path == "/":
            self._reply(200, "text/html; charset=utf-8", app.landing_page().encode(), head_only,
                        extra={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found\n", head_only)

    def _reply(self, status: int, content_type: str, body: bytes | tuple[bytes, ...], head_only: bool = False,
               extra: dict[str, str] | None = None) -> None:
        parts = (body,) if isinstance(body, bytes) else body
        self.connection.settimeout(self.server.limits.write_seconds)
        self.log_request(status)
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Server: {self.version_string()}",
            f"Date: {_DATE}",
            f"Content-Type: {content_type}",
            f"Content-Length: {sum(map(len, parts))}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            *(f"{name}: {value}" for name, value in (extra or {}).items()),
            *(f"{name}: {value}" for name, value in self.server.security.headers.items()),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        _send_all(self.connection, (head,) if head_only else (head, *parts))

    def end_headers(self) -> None:
        """The standard library's own responses (error pages) come this way: they get these too."""
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in self.server.security.headers.items():
            self.send_header(name, value)
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The request line, not self.path: a malformed request is answered before it has a path.
        log.debug("%s -> %s", getattr(self, "requestline", ""), code, extra={"client": self.client_address[0]})

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("http error from %s: %s", self.client_address[0], format % args)


def _send_all(sock: socket.socket, chunks: tuple[bytes, ...]) -> None:
    """Headers and body in one system call where the socket allows (not TLS), else one by one."""
    if isinstance(sock, ssl.SSLSocket):
        for chunk in chunks:
            sock.sendall(chunk)
        return
    sent = sock.sendmsg(chunks)
    total = sum(map(len, chunks))
    if sent < total:  # the kernel took part of it; the rest goes plainly
        sock.sendall(memoryview(b"".join(chunks))[sent:])


def _address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
