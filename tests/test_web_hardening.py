"""The HTTP server against hostile peers, with raw sockets: slowloris, request desync, oversized
heads, odd but valid requests, and the lifecycle endpoint."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from email.message import Message

import pytest

from sfox_exporter.metrics.exposition import Rendered
from sfox_exporter.web.connections import Connections, Phase
from sfox_exporter.web.handler import framing_error
from sfox_exporter.web.routes import gzip_wanted
from sfox_exporter.web.server import HttpServer, Limits

from .conftest import http_get, wait_until


class RecordingApp:
    telemetry_path = "/metrics"

    def __init__(self) -> None:
        self.encodings: list[str | None] = []

    def render_metrics(self, accept: str | None, accept_encoding: str | None) -> Rendered:
        self.encodings.append(accept_encoding)
        return Rendered((b"up 1\n",), "text/plain; version=0.0.4; charset=utf-8")

    def health(self) -> tuple[bool, str]:
        return True, "ok\n"

    def readiness(self) -> tuple[bool, str]:
        return True, "ready\n"

    def landing_page(self) -> str:
        return "<html></html>"


class OneUser:
    """Basic auth that lets in exactly the header "Basic ok"."""

    headers: dict[str, str] = {}
    ssl_context = None

    def authorized(self, authorization: str | None) -> bool:
        return authorization == "Basic ok"

    def peer_allowed(self, sock: object) -> bool:
        return True

    def allow_request(self) -> bool:
        return True


def start(**options: object) -> HttpServer:
    server = HttpServer("127.0.0.1", 0, RecordingApp(), "test", **options)  # type: ignore[arg-type]
    server.start()
    return server


@pytest.fixture
def server() -> Iterator[HttpServer]:
    instance = start(limits=Limits(request_head_seconds=2.0))
    yield instance
    instance.stop()


def connect(server: HttpServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def read_all(sock: socket.socket, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Everything until the server closes (True) or goes quiet for `timeout` (False)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    except OSError:
        pass
    return data, True


def exchange(server: HttpServer, request: bytes, timeout: float = 3.0) -> tuple[bytes, bool]:
    with connect(server) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before it has it all
            sock.sendall(request)
        return read_all(sock, timeout)


def statuses(data: bytes) -> list[bytes]:
    return [line.split(b" ")[1] for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.")]


def timed_scrapes(server: HttpServer, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        status, _, body = http_get(f"http://127.0.0.1:{server.port}/metrics")
        latencies.append(time.perf_counter() - started)
        assert status == 200 and body == b"up 1\n"
    return latencies


class Slowloris:
    """Connections that each send part of a request head, then a byte now and then, never the end;
    dropped ones are opened again, as a real attacker's would be."""

    def __init__(self, port: int, count: int, opening: bytes) -> None:
        self.port, self.opening = port, opening
        self.sockets = [self._open() for _ in range(count)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        with contextlib.suppress(OSError):
            sock.sendall(self.opening)
        return sock

    def _trickle(self) -> None:
        while not self._stop.wait(0.5):
            for index, sock in enumerate(self.sockets):
                try:
                    if self.opening:
                        sock.sendall(b"X")
                except OSError:
                    sock.close()
                    with contextlib.suppress(OSError):
                        self.sockets[index] = self._open()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def test_slowloris_partial_heads_do_not_stop_a_scrape(server: HttpServer) -> None:
    attack = Slowloris(server.port, 300, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    try:
        latencies = timed_scrapes(server, 20)
    finally:
        attack.close()
    assert max(latencies) < 5.0
    assert server.connections.evicted > 0  # the attack did fill the server


def test_a_refused_body_is_not_read_as_the_next_request(server: HttpServer) -> None:
    smuggled = b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n"
    for method in (b"POST", b"DELETE", b"OPTIONS"):
        data, closed = exchange(server, method + b" /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled)
        assert statuses(data) == [b"405"], data
        assert closed


@pytest.mark.parametrize("framing", [
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Content-Length: +5\r\n",
])
def test_ambiguous_framing_is_refused_and_closed(server: HttpServer, framing: bytes) -> None:
    data, closed = exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\nHELLO0\r\n\r\n")
    assert statuses(data) == [b"400"] and closed
    assert b"X-Content-Type-Options: nosniff" in data


def test_a_100_kb_request_line_gets_414_and_a_close(server: HttpServer) -> None:
    data, closed = exchange(server, b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(data) == [b"414"] and closed


def test_too_large_headers_get_431_and_a_close(server: HttpServer) -> None:
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * 1000) for n in range(60))
    data, closed = exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert statuses(data) == [b"431"] and closed


def test_an_absolute_form_target_is_served(server: HttpServer) -> None:
    data, _ = exchange(server, b"GET http://exporter:9841/metrics HTTP/1.1\r\nHost: exporter\r\n"
                       b"Connection: close\r\n\r\n")
    assert statuses(data) == [b"200"] and data.endswith(b"up 1\n")


def test_gzip_with_q_0_is_not_gzip(server: HttpServer) -> None:
    http_get(f"http://127.0.0.1:{server.port}/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
    http_get(f"http://127.0.0.1:{server.port}/metrics", headers={"Accept-Encoding": "gzip"})
    assert server.app.encodings == [None, "gzip"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("header", "wanted"), [
    ("gzip", True), ("GZIP;q=0.5", True), ("gzip;q=0", False), ("gzip; q=0.000", False), ("identity", False),
    ("*", True), ("*, gzip;q=0", False), ("br, x-gzip", True), ("gzip;q=zero", False), ("", False),
])
def test_accept_encoding_q_values(header: str, wanted: bool) -> None:
    assert gzip_wanted(header) is wanted


def test_reload_is_forbidden_without_lifecycle(server: HttpServer) -> None:
    assert http_get(f"http://127.0.0.1:{server.port}/-/reload", method="POST")[0] == 403


@pytest.mark.parametrize(("outcome", "status", "text"), [
    (None, 200, b"config reloaded"), ("accounts: expected a mapping", 500, b"accounts: expected a mapping")])
def test_reload_with_lifecycle(outcome: str | None, status: int, text: bytes) -> None:
    calls: list[int] = []

    def reload() -> str | None:
        calls.append(1)
        return outcome

    server = start(lifecycle=True, reload=reload, security=OneUser())
    try:
        base = f"http://127.0.0.1:{server.port}/-/reload"
        assert http_get(base, method="POST")[0] == 401 and calls == []  # basic auth applies
        assert http_get(base, headers={"Authorization": "Basic ok"})[0] == 405
        answer, _, body = http_get(base, headers={"Authorization": "Basic ok"}, method="POST")
        assert (answer, calls) == (status, [1]) and text in body
    finally:
        server.stop()


def test_framing_error_is_none_for_plain_requests() -> None:
    headers = Message()
    headers["Content-Length"] = "5"
    headers["Content-Length"] = "5"  # the same value twice is not ambiguous
    assert framing_error(headers) is None


@pytest.mark.parametrize("header", [b"Content-Length : 38", b"Transfer-Encoding\t: chunked", b"X-Folded: a\r\n b"])
def test_a_malformed_header_line_is_refused_not_dropped(server: HttpServer, header: bytes) -> None:
    # The standard library would drop the line and every one after it, and answer the body as a
    # second request: what a lenient proxy in front of us took for one request would be two.
    smuggled = b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n"
    data, closed = exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n" + smuggled)
    assert statuses(data) == [b"400"] and closed


def test_the_head_cap_is_exact() -> None:
    server = start(limits=Limits(max_request_head_bytes=2000))
    try:
        def head(size: int) -> bytes:
            opening = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: "
            return opening + b"p" * (size - len(opening) - 4) + b"\r\n\r\n"

        assert len(head(2000)) == 2000
        at_cap, _ = exchange(server, head(2000) + b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert at_cap.count(b"HTTP/1.1 200 OK\r\n") == 2
        over, closed = exchange(server, head(2001))
        assert statuses(over) == [b"431"] and closed
    finally:
        server.stop()


def test_empty_lines_before_a_request_are_ignored(server: HttpServer) -> None:
    data, _ = exchange(server, b"\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert statuses(data) == [b"200"] and data.endswith(b"up 1\n")


class CountingAuth(OneUser):
    def __init__(self) -> None:
        self.checks = 0

    def authorized(self, authorization: str | None) -> bool:
        self.checks += 1
        return super().authorized(authorization)


def test_healthz_checks_no_credentials() -> None:
    security = CountingAuth()
    server = start(security=security)
    try:
        wrong = {"Authorization": "Basic wrong"}
        assert http_get(f"http://127.0.0.1:{server.port}/healthz", headers=wrong)[0] == 200
        assert security.checks == 0  # no bcrypt for a probe, and none for guesses sent to it
        assert http_get(f"http://127.0.0.1:{server.port}/metrics", headers=wrong)[0] == 401
        assert security.checks == 1
    finally:
        server.stop()


BIG_BODY = b"#" * (16 << 20) + b"\n"  # far more than the kernel's socket buffers hold (4 MiB at most)


class BigAnswer(RecordingApp):
    """An answer far bigger than the socket buffers: a client that does not read keeps it busy."""

    def render_metrics(self, accept: str | None, accept_encoding: str | None) -> Rendered:
        return Rendered((BIG_BODY,), "text/plain; version=0.0.4; charset=utf-8")


def unread_request(port: int, source: str, receive_buffer: int = 4096) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


@contextlib.contextmanager
def every_slot_busy(limits: Limits) -> Iterator[HttpServer]:
    """A server whose doubled caps are all held, by two addresses at the doubled cap of their own,
    with connections whose answers they never read."""
    server = HttpServer("127.0.0.1", 0, BigAnswer(), "test", limits=limits)
    server.start()
    attackers: list[socket.socket] = []
    try:
        per_address = 2 * limits.max_connections_per_address
        attackers = [unread_request(server.port, source) for source in ("127.0.0.2", "127.0.0.3")
                     for _ in range(per_address)]
        wait_until(lambda: server.connections.phases()[Phase.BUSY] == 2 * per_address,
                   message="the attack to fill every slot")
        yield server
    finally:
        for sock in attackers:
            sock.close()
        server.stop()


def test_clients_that_do_not_read_cannot_lock_out_a_scrape() -> None:
    limits = Limits(max_connections=4, max_connections_per_address=2, busy_grace_seconds=0.0)
    with every_slot_busy(limits) as server:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data, closed = read_all(sock, timeout=10)
        assert statuses(data) == [b"200"] and closed and len(data) > 16 << 20
        assert time.monotonic() - started < 5
        assert server.connections.evicted >= 1


def test_an_answer_read_slowly_ends_at_the_write_deadline() -> None:
    # 5 s: long enough that no single send times out even on a loaded machine, far shorter than
    # the 20 s the whole answer takes at the reader's pace.
    server = HttpServer("127.0.0.1", 0, BigAnswer(), "test", limits=Limits(write_seconds=5.0))
    server.start()
    stop = threading.Event()
    sock = unread_request(server.port, "127.0.0.1", receive_buffer=1 << 20)

    def read_slowly() -> None:
        # 16 KiB every 0.02 s: every send makes progress well within write_seconds, so none times
        # out, and the whole answer would take 20 s.
        with contextlib.suppress(OSError):
            while not stop.wait(0.02) and sock.recv(16384):
                pass

    reader = threading.Thread(target=read_slowly, daemon=True)
    reader.start()
    try:
        wait_until(lambda: server.connections.phases()[Phase.BUSY] == 1, message="the answer to start")
        started = time.monotonic()
        wait_until(lambda: len(server.connections) == 0, timeout=12, message="the connection to be cut")
        assert time.monotonic() - started < 9  # write_seconds, one more, and the reaper's poll
        assert server.connections.evicted == 1
    finally:
        stop.set()
        sock.close()
        reader.join(5)
        server.stop()


def test_the_connection_busy_the_longest_gives_way_not_a_scraper_holding_two() -> None:
    # Many addresses with one slow reader each, and a Prometheus pair behind one address scraping:
    # "the address holding the most" would be the pair's; the one busy the longest is an attacker's.
    connections = Connections(4, 2, {}, busy_grace=0.0)
    pairs = [socket.socketpair() for _ in range(9)]
    try:
        keys = [object() for _ in pairs]
        for index, (ours, _) in enumerate(pairs[:6]):  # six attackers, one connection each
            entry = connections.admit(keys[index], ours, f"10.0.0.{index}")
            assert entry is not None
            connections.set_phase(entry, Phase.BUSY)
        for index in (6, 7):  # the pair, busy since after them
            entry = connections.admit(keys[index], pairs[index][0], "10.0.1.1")
            assert entry is not None
            connections.set_phase(entry, Phase.BUSY)
        assert len(connections) == 8  # the doubled cap
        assert connections.admit(keys[8], pairs[8][0], "10.0.2.2") is not None
        assert connections.entry(keys[0]) is None  # the oldest attacker's went
        assert pairs[0][1].recv(1) == b""  # shut down, so its thread wakes
        assert all(connections.entry(keys[index]) is not None for index in (6, 7))
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def test_a_refused_connection_never_holds_up_the_next() -> None:
    # Slots all busy, none evictable yet: each newcomer is refused at once. Waiting for a slot in
    # the accept loop held up every connection behind it, of any address, a second each.
    with every_slot_busy(Limits(max_connections=2, max_connections_per_address=1, busy_grace_seconds=60.0)) as server:
        started = time.monotonic()
        for _ in range(5):
            data, closed = exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
            assert data == b"" and closed  # refused: nobody could make room
        assert time.monotonic() - started < 2.5


def send_queue(server_port: int, client_port: int) -> int | None:
    """Bytes in the kernel's send queue of the server's end of one loopback connection."""
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            if (int(fields[1].rpartition(":")[2], 16), int(fields[2].rpartition(":")[2], 16)) == (server_port,
                                                                                                  client_port):
                return int(fields[4].partition(":")[0], 16)
    return None


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the kernel's socket table (Linux)")
def test_a_client_that_never_reads_pins_little_kernel_memory() -> None:
    """Without the cap the kernel lets the send queue grow to tcp_wmem's maximum (2.8 MB measured),
    charged to the container, per connection."""
    server = HttpServer("127.0.0.1", 0, BigAnswer(), "test")
    server.start()
    try:
        with unread_request(server.port, "127.0.0.1") as sock:
            client_port = sock.getsockname()[1]
            queued: list[int] = []

            def settled() -> bool:
                queued.append(send_queue(server.port, client_port) or 0)
                # Stalled: unchanged over the last 25 looks, 20 ms apart; or already past any cap.
                return queued[-1] > 1 << 20 or (queued[-1] > 0 and len(set(queued[-25:])) == 1 and len(queued) >= 25)

            wait_until(settled, timeout=20, message="the server's answer to stall")
            assert 0 < max(queued) <= 512 * 1024, max(queued)
    finally:
        server.stop()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_an_empty_host_listens_on_ipv4_and_ipv6() -> None:
    """":9841" listens everywhere, as Go exporters' do; it was IPv4 only."""
    server = HttpServer("", 0, RecordingApp(), "test")
    server.start()
    try:
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family) as sock:
                sock.settimeout(5)
                sock.connect((address, server.port))
                sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                data, _ = read_all(sock)
            assert statuses(data) == [b"200"], (address, data)
    finally:
        server.stop()
