"""One HTTP connection: the standard library's request handler, bounded in time and size.

BaseHTTPRequestHandler parses the request line and headers and writes the replies; around it, this
adds what it lacks for a server facing the internet: the TLS handshake in the connection's own
thread, deadlines for the handshake and the request head (not only per read), a bound on the head's
size (414, 431), a refusal of ambiguous framing (two Content-Lengths, or one with
Transfer-Encoding: 400) and of any body it would otherwise take for the next request, the reply
"use HTTPS" to plain HTTP on a TLS port, and a lingering close, so that an error reply is not lost
to a reset when the client's unread bytes are discarded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import ssl
import time
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from sfox_exporter.web.connections import Connection, Phase
from sfox_exporter.web.routes import Response, Security, respond, text

if TYPE_CHECKING:
    from sfox_exporter.web.server import HttpServer

log = logging.getLogger("sfox_exporter.http")

KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"))
TLS_HANDSHAKE_RECORD = 0x16
PLAIN_ON_TLS = "Client sent an HTTP request to an HTTPS server.\n"  # exporter-toolkit's (Go's) words
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
MAX_EMPTY_LINES = 8  # each still counts against the head's size and deadline
SEND_BUFFER_BYTES = 128 * 1024  # the kernel doubles it; a LAN's bandwidth-delay product is less


class HeadTooLarge(Exception):
    pass


class _DeadlineReader(io.RawIOBase):
    """The connection's read side, bounded in time and size for each request head."""

    def __init__(self, sock: socket.socket, handler: Handler) -> None:
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        handler = self._handler
        remaining = handler.read_deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request head deadline passed")
        allowance = handler.server.limits.max_request_head_bytes - handler.head_bytes
        if allowance <= 0:
            raise HeadTooLarge
        self._sock.settimeout(remaining)
        # Never more than the head may still take: a head one byte over the cap is refused exactly.
        count = self._sock.recv_into(buffer, min(len(buffer), allowance))
        if count and handler.head_bytes == 0:
            handler.read_deadline = time.monotonic() + handler.server.limits.request_head_seconds
            handler.server.connections.set_phase(handler.entry, Phase.HEAD)
        handler.head_bytes += count
        return count


def header_error(headers: Message) -> str | None:
    """A header line the parser could not read. The standard library takes it, and every line after
    it, for the start of a body and drops them silently; "Content-Length : 5" (RFC 9112 5.1: no space
    before the colon) would then frame the request otherwise than a lenient proxy in front of us did.
    A folded line (obs-fold) is refused too, as RFC 9112 5.2 allows, rather than kept inside a value."""
    if headers.defects or headers.get_payload():
        return "malformed header field"
    if any("\n" in value for value in headers.values()):
        return "obsolete line folding"
    return None


def framing_error(headers: Message) -> str | None:
    """Where the request's body would end is ambiguous (RFC 9112 6.3): a proxy in front of us may
    have read it otherwise, so the request is refused rather than guessed at."""
    lengths = {value.strip() for value in headers.get_all("Content-Length") or ()}
    if lengths and headers.get_all("Transfer-Encoding"):
        return "Content-Length with Transfer-Encoding"
    if len(lengths) > 1:
        return "conflicting Content-Length headers"
    if lengths and not all(value.isascii() and value.isdigit() for value in lengths):
        return "invalid Content-Length"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers to requests too broken to have a version still get a status line and headers, which
    # the standard library leaves out for its default, HTTP/0.9.
    default_request_version = "HTTP/1.0"
    server: HttpServer
    entry: Connection
    read_deadline = 0.0
    head_bytes = 0
    plain_on_tls = False
    linger = False

    def setup(self) -> None:
        sock: socket.socket = self.request
        server = self.server
        self.entry = server.connection_of(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A client that never reads would otherwise pin up to tcp_wmem's 4 MiB of kernel memory per
        # connection, charged to the container: 512 MiB at the connection cap.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        context = server.security.ssl_context
        if context is not None:
            sock.settimeout(server.limits.tls_handshake_seconds)
            first = sock.recv(1, socket.MSG_PEEK)
            if not first:
                raise ConnectionError("closed before the TLS handshake")
            if first[0] != TLS_HANDSHAKE_RECORD:
                self.plain_on_tls = True
            else:
                sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                self.entry.sock = sock
                sock.do_handshake()
                if not server.security.peer_allowed(sock):
                    raise ssl.SSLError("the client certificate carries none of client_allowed_sans")
        server.connections.set_phase(self.entry, Phase.IDLE)
        self.connection = sock
        self.rfile = io.BufferedReader(_DeadlineReader(sock, self))
        self.wfile = sock.makefile("wb")  # buffered: a small reply goes out in one segment

    def handle(self) -> None:
        if self.plain_on_tls:
            self.request_version, self.requestline, self.command = "HTTP/1.0", "", ""
            self._use_https()
            return
        super().handle()

    def handle_one_request(self) -> None:
        limits = self.server.limits
        self.read_deadline = time.monotonic() + limits.idle_seconds
        self.head_bytes = 0
        self.requestline, self.request_version, self.command = "", self.default_request_version, ""
        self.server.connections.set_phase(self.entry, Phase.IDLE)
        try:
            self.raw_requestline = self.rfile.readline(limits.max_request_line + 1)
            for _ in range(MAX_EMPTY_LINES):  # RFC 9112 2.2: empty lines before a request are ignored
                if self.raw_requestline not in (b"\r\n", b"\n"):
                    break
                self.raw_requestline = self.rfile.readline(limits.max_request_line + 1)
            if len(self.raw_requestline) > limits.max_request_line:
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self.server.connections.set_phase(self.entry, Phase.BUSY)
            if self.command not in KNOWN_METHODS:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
                return
            if self.headers.get("Content-Length", "0").strip() != "0" or "Transfer-Encoding" in self.headers:
                # A body we will not read must not be taken for the next request.
                self.close_connection = self.linger = True
            server, security = self.server, self.server.security  # one of them, even across a reload
            if self._outdated(security):
                return
            self._send(respond(server.app, security, server.lifecycle, self.command, self.path,
                               headers=self.headers),
                       head_only=self.command == "HEAD")
        except HeadTooLarge:
            status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE if self.requestline else HTTPStatus.REQUEST_URI_TOO_LONG
            self._try(lambda: self.send_error(status))
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            self.close_connection = True

    def _outdated(self, security: Security) -> bool:
        """Whether a reload has since required TLS, or client certificates this connection lacks: it
        must not go on serving under the rules it began with (a plain connection kept alive went on
        serving balances in the clear). A plain one is told to use HTTPS, as a new one would be."""
        context = security.ssl_context
        if context is None:
            return False
        sock = self.connection
        if not isinstance(sock, ssl.SSLSocket):
            self._use_https()
            return True
        if (context.verify_mode == ssl.CERT_REQUIRED and not sock.getpeercert()) or not security.peer_allowed(sock):
            self.close_connection = True
            return True
        return False

    def _use_https(self) -> None:
        """Plain HTTP where TLS is served: told so, as exporter-toolkit does, and closed."""
        self.close_connection = self.linger = True
        self._send(text(400, PLAIN_ON_TLS), head_only=False)

    def parse_request(self) -> bool:
        if not self.raw_requestline.strip():  # still empty after MAX_EMPTY_LINES: say so, not just close
            self.close_connection = True
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request: no request line")
            return False
        if not super().parse_request():
            return False
        if len(self.requestline.split()) != 3:  # the standard library takes "GET /path" for HTTP/0.9
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({self.requestline!r})")
            return False
        problem = header_error(self.headers) or framing_error(self.headers) or self._host_error()
        if problem is not None:
            self.send_error(HTTPStatus.BAD_REQUEST, problem)
            return False
        return True

    def _host_error(self) -> str | None:
        """RFC 9112 3.2: an HTTP/1.1 request without Host, or any with two, is answered 400."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            return "more than one Host header"
        return "no Host header" if not hosts and self.request_version != "HTTP/1.0" else None

    def _send(self, response: Response, head_only: bool) -> None:
        self.connection.settimeout(self.server.limits.write_seconds)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(sum(map(len, response.parts))))
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":  # kept open as it asked: it must be told (RFC 9112 9.3)
            self.send_header("Connection", "keep-alive")
        self.end_headers()
        if not head_only:
            for part in response.parts:
                self.wfile.write(part)
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.linger = True  # the rest of a refused request is still on its way
        self.connection.settimeout(self.server.limits.write_seconds)
        super().send_error(code, message, explain)
        self.wfile.flush()

    def end_headers(self) -> None:
        """Every reply, the standard library's error pages included, comes this way."""
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in self.server.security.headers.items():
            if name != "X-Content-Type-Options":
                self.send_header(name, value)
        super().end_headers()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        if self.linger:
            _lingering_close(self.connection)

    def version_string(self) -> str:
        return f"sfox-exporter/{self.server.version}"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The request line, not self.path: a malformed request is answered before it has a path.
        log.debug("%s -> %s", self.requestline, code, extra={"client": self.client_address[0]})

    def log_error(self, format: str, *args: Any) -> None:
        log.debug("http error from %s: %s", self.client_address[0], format % args)

    def _try(self, action: Any) -> None:
        try:
            action()
        except OSError:
            self.close_connection = True


def _lingering_close(sock: socket.socket) -> None:
    """Send our end of file, then read and drop what the client still sends for a moment: closing
    with unread bytes makes the kernel send a reset, which can destroy the reply before it is read."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        dropped = 0
        while dropped < LINGER_BYTES and (remaining := deadline - time.monotonic()) > 0:
            socket.socket.settimeout(sock, remaining)
            chunk = socket.socket.recv(sock, 65536)
            if not chunk:
                break
            dropped += len(chunk)
    except OSError:
        pass
