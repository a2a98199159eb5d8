"""The HTTP server on its own: bounded requests, slow and idle clients, methods, keep-alive."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from sfox_exporter.metrics.exposition import Rendered
from sfox_exporter.web.connections import Phase
from sfox_exporter.web.server import HttpServer, Limits

from .conftest import http_get, wait_until


class StubApp:
    telemetry_path = "/metrics"

    def __init__(self) -> None:
        self.scrapes = 0

    def render_metrics(self, accept: str | None, accept_encoding: str | None) -> Rendered:
        self.scrapes += 1
        return Rendered((b"up 1\n",), "text/plain; version=0.0.4; charset=utf-8")

    def health(self) -> tuple[bool, str]:
        return True, "ok\n"

    def readiness(self) -> tuple[bool, str]:
        return False, "not ready: feed not up for main (connecting)\n"

    def landing_page(self) -> str:
        return "<html></html>"


@pytest.fixture
def server() -> Iterator[HttpServer]:
    limits = Limits(max_connections=4, idle_seconds=30, request_head_seconds=0.5, max_request_head_bytes=4096)
    instance = HttpServer("127.0.0.1", 0, StubApp(), "test", limits=limits)
    instance.start()
    yield instance
    instance.stop()


def url(server: HttpServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def connect(server: HttpServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def closed_by_server(sock: socket.socket, timeout: float = 5) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_readyz_answers_503_with_the_reason(server: HttpServer) -> None:
    status, headers, body = http_get(url(server) + "/readyz")
    assert status == 503 and b"main (connecting)" in body
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_only_get_and_head(server: HttpServer) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, headers, _ = http_get(url(server) + "/metrics", method=method)
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("BREW", "/metrics")
    response = connection.getresponse()
    assert response.status == 501
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    connection.close()


def test_keep_alive_serves_several_requests_on_one_connection(server: HttpServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for _ in range(3):
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b"up 1\n"
    connection.close()


def test_a_request_head_that_never_ends_is_cut_off(server: HttpServer) -> None:
    slow = connect(server)
    slow.sendall(b"GET /metrics HTTP/1.1\r\n")
    started = time.monotonic()
    for _ in range(10):  # a byte every 0.1 s keeps each read inside its timeout, but not the deadline
        time.sleep(0.1)
        try:
            slow.sendall(b"X")
        except OSError:
            break
    assert closed_by_server(slow)
    assert time.monotonic() - started < 3
    slow.close()


def test_an_oversized_request_head_is_refused(server: HttpServer) -> None:
    big = connect(server)
    with contextlib.suppress(OSError):  # the server may hang up before it has all of it
        big.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Padding: " + b"a" * 60000 + b"\r\n\r\n")
    data = b""
    try:
        big.settimeout(5)
        while chunk := big.recv(65536):
            data += chunk
    except OSError:
        pass
    big.close()
    assert b"200 OK" not in data


def test_idle_clients_cannot_lock_out_a_scrape(server: HttpServer) -> None:
    idle = [connect(server) for _ in range(6)]  # more than max_connections, all silent
    try:
        wait_until(lambda: server.connections.phases()[Phase.IDLE] >= 3, timeout=5)
        for _ in range(3):
            status, _, body = http_get(url(server) + "/metrics")
            assert status == 200 and body == b"up 1\n"
    finally:
        for sock in idle:
            sock.close()


def test_busy_slow_clients_are_bounded_by_the_head_deadline(server: HttpServer) -> None:
    slow = [connect(server) for _ in range(4)]
    for sock in slow:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # started, never finished
    try:
        status = wait_until(lambda: http_get(url(server) + "/metrics")[0] == 200, timeout=5)
        assert status
    finally:
        for sock in slow:
            sock.close()


def test_a_get_with_a_body_closes_the_connection(server: HttpServer) -> None:
    sock = connect(server)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nHELLO")
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data
    sock.close()


def test_concurrent_scrapes(server: HttpServer) -> None:
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(http_get(url(server) + "/metrics")[0]))
               for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [200] * 16


def exchange(server: HttpServer, request: bytes) -> tuple[bytes, bool]:
    """Send raw bytes; return what came back and whether the server then closed the connection."""
    sock = connect(server)
    sock.sendall(request)
    sock.settimeout(2)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), b"0"))
        while len(body) < length:
            body += sock.recv(65536)
        closed = closed_by_server(sock, timeout=1)
        return head + b"\r\n\r\n" + body, closed
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "status", "closes"),
    [
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"200", False),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"200", True),
        (b"GET /metrics HTTP/1.0\r\n\r\n", b"200", True),
        (b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", b"200", False),
        (b"GET /metrics\r\n\r\n", b"400", True),
        (b"GET /metrics HTTP/2.0\r\n\r\n", b"505", True),
        (b"GET /metrics HTTP/one\r\n\r\n", b"400", True),
        (b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", b"431", True),
        (b"GET //metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"200", False),
        (b"\r\n" * 9 + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", b"400", True),  # past the empty lines allowed
        (b"GET /metrics HTTP/1.1\r\n\r\n", b"400", True),  # RFC 9112 3.2: no Host
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", b"400", True),
    ],
)
def test_request_parsing(server: HttpServer, request_bytes: bytes, status: bytes, closes: bool) -> None:
    response, closed = exchange(server, request_bytes)
    assert response.split(b" ")[1] == status, response[:80]
    assert b"X-Content-Type-Options: nosniff" in response
    assert closed == closes
    if request_bytes.startswith(b"GET /metrics HTTP/1.0") and not closes:  # kept open, and said so
        assert b"\r\nConnection: keep-alive\r\n" in response


@pytest.mark.parametrize(("telemetry_path", "target", "status"), [
    ("/métriques", b"/m%C3%A9triques", b"200"),  # as clients send it
    ("/métriques", "/métriques".encode(), b"200"),  # raw UTF-8
    ("/metrics", b"/%6detrics?x=1", b"200"),  # percent-decoded, as Go's net/http matches paths
    ("/metrics", b"/metrics%3Fx", b"404"),  # an encoded "?" is part of the path
])
def test_the_telemetry_path_is_matched_percent_decoded(telemetry_path: str, target: bytes, status: bytes) -> None:
    """A non-ASCII --web.telemetry-path was accepted and advertised, yet answered 404 however asked for."""
    app = StubApp()
    app.telemetry_path = telemetry_path
    instance = HttpServer("127.0.0.1", 0, app, "test")
    instance.start()
    try:
        response, _ = exchange(instance, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert response.split(b" ")[1] == status
    finally:
        instance.stop()
