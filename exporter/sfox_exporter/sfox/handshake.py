"""Open a WebSocket connection: TCP, proxy tunnel, TLS and the HTTP upgrade, under one deadline.

Hand-written for safety properties no library gives us together. websocket-client reads the reply
head one byte per recv() with a timeout per read and no size limit, so a server trickling a byte
every few seconds held the connect forever and an endless header line grew memory at full CPU;
it also followed 3xx answers to any host (wss -> ws included), where the API key followed in the
authenticate message. Here:
- one deadline bounds the TCP connect, the proxy CONNECT, the TLS handshake, the request and the
  reply head (DNS resolution is the one step a socket timeout cannot bound);
- every reply head (the proxy's and the server's) is capped at MAX_HEAD_BYTES;
- any answer but 101 is HandshakeRefused, redirects included: they are never followed.
The stdlib does what needs no bound of ours: ssl (certificate checks), http.client's header
parser on the bounded head, urllib's proxy settings from the environment (https_proxy, no_proxy).

Bytes that arrive after the reply head (a first frame in the same TCP segment) are returned with
the socket, for the frame reader to start from: nothing depends on how the server segments.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import select
import socket
import ssl
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

from sfox_exporter.sfox.tls import client_context

MAX_HEAD_BYTES = 16 * 1024
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_REDIRECTS = range(300, 400)


class HandshakeRefused(Exception):
    """sFOX answered the WebSocket upgrade with an HTTP status other than 101: 429 when it
    blocks an IP, 3xx for a redirect (refused: the key must not follow it elsewhere)."""

    def __init__(self, status: int, retry_after: str | None) -> None:
        text = f"HTTP {status} on the WebSocket handshake"
        if status in _REDIRECTS:
            text += ": redirects are refused, not followed"
        super().__init__(text)
        self.status = status
        self.retry_after = retry_after


class HandshakeError(ConnectionError):
    """The handshake failed, ran out of time or broke the protocol."""


@dataclass(frozen=True)
class Opened:
    sock: socket.socket
    leftover: bytes  # received after the reply head: the start of the first frame(s)


def open_websocket(url: str, deadline: float, user_agent: str,
                   tls: ssl.SSLContext | None = None) -> Opened:
    """Connect to a ws:// or wss:// URL and complete the upgrade before `deadline` (monotonic)."""
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "wss"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise HandshakeError(f"not a WebSocket URL: {parts.scheme}://{parts.hostname}")
    host, port = parts.hostname, parts.port or (443 if secure else 80)
    sock = _dial(host, port, secure, deadline)
    try:
        if secure:
            sock = _start_tls(sock, host, deadline, tls or client_context())
        key = base64.b64encode(os.urandom(16)).decode()
        hostport = f"[{host}]" if ":" in host else host
        if parts.port:
            hostport += f":{port}"
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (f"GET {resource} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Origin: {'https' if secure else 'http'}://{hostport}\r\nUser-Agent: {user_agent}\r\n\r\n")
        _send(sock, request.encode(), deadline)
        status, headers, leftover = read_head(sock, deadline)
        if status != 101:
            raise HandshakeRefused(status, headers.get("Retry-After"))
        _validate(headers, key)
        sock.settimeout(None)
        return Opened(sock, leftover)
    except BaseException:
        sock.close()
        raise


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise HandshakeError("the WebSocket handshake did not complete within the connect timeout")
    return remaining


def _dial(host: str, port: int, secure: bool, deadline: float) -> socket.socket:
    proxy = _proxy_for(host, secure)
    target = proxy or (host, port)
    try:
        sock = socket.create_connection(target, timeout=_remaining(deadline))
    except TimeoutError:
        raise HandshakeError(f"TCP connect to {target[0]}:{target[1]} timed out") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if proxy is None:
        return sock
    try:
        _send(sock, f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode(), deadline)
        status, _, leftover = read_head(sock, deadline)
        if status != 200 or leftover:
            raise HandshakeError(f"the proxy answered CONNECT with HTTP {status}")
    except BaseException:
        sock.close()
        raise
    return sock


def _proxy_for(host: str, secure: bool) -> tuple[str, int] | None:
    """The HTTP proxy to tunnel through, from https_proxy/http_proxy and no_proxy, as urllib reads them."""
    proxies = urllib.request.getproxies_environment()
    if urllib.request.proxy_bypass(host):  # no_proxy, on POSIX
        return None
    proxy = proxies.get("https" if secure else "http")
    if not proxy:
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or 80


def _start_tls(sock: socket.socket, host: str, deadline: float, context: ssl.SSLContext) -> socket.socket:
    """The TLS handshake, non-blocking so that the deadline bounds it as a whole, not each read."""
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            return tls
        except ssl.SSLWantReadError:
            ready = select.select([tls], [], [], _remaining(deadline))[0]
        except ssl.SSLWantWriteError:
            ready = select.select([], [tls], [], _remaining(deadline))[1]
        if not ready:
            _remaining(deadline)


def _send(sock: socket.socket, data: bytes, deadline: float) -> None:
    sock.settimeout(_remaining(deadline))
    try:
        sock.sendall(data)
    except TimeoutError:
        raise HandshakeError("sending the handshake request timed out") from None


def read_head(sock: socket.socket, deadline: float) -> tuple[int, http.client.HTTPMessage, bytes]:
    """(status, headers, bytes after the head) of an HTTP reply, within MAX_HEAD_BYTES and the deadline."""
    received = bytearray()
    while (end := received.find(b"\r\n\r\n")) < 0:
        if len(received) > MAX_HEAD_BYTES:
            raise HandshakeError(f"the HTTP reply head exceeds {MAX_HEAD_BYTES} bytes")
        sock.settimeout(_remaining(deadline))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            _remaining(deadline)
            continue
        if not chunk:
            raise HandshakeError("the server closed the connection during the handshake")
        received += chunk
    if end > MAX_HEAD_BYTES:
        raise HandshakeError(f"the HTTP reply head exceeds {MAX_HEAD_BYTES} bytes")
    status_line, _, rest = bytes(received[: end + 2]).partition(b"\r\n")
    version, _, tail = status_line.partition(b" ")
    code = tail[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit() or tail[3:4] not in (b"", b" "):
        raise HandshakeError("the reply is not HTTP/1.x")
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException as error:
        raise HandshakeError(f"malformed reply headers ({type(error).__name__})") from None
    return int(code), headers, bytes(received[end + 4 :])


def _validate(headers: http.client.HTTPMessage, key: str) -> None:
    expected = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()  # noqa: S324 - RFC 6455
    connection = {token.strip().lower() for token in (headers.get("Connection") or "").split(",")}
    if (headers.get("Upgrade") or "").lower() != "websocket" or "upgrade" not in connection:
        raise HandshakeError("the 101 reply does not upgrade to websocket")
    if headers.get("Sec-WebSocket-Accept") != expected:
        raise HandshakeError("the 101 reply has a wrong Sec-WebSocket-Accept")
    if headers.get("Sec-WebSocket-Extensions") or headers.get("Sec-WebSocket-Protocol"):
        raise HandshakeError("the server chose an extension or subprotocol that was not offered")
