"""TLS to sFOX: one shared client context, certificates checked, over a raw wss:// server made here."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from sfox_exporter.sfox.connection import WebSocketConnection
from sfox_exporter.sfox.frames import OP_TEXT
from sfox_exporter.sfox.tls import SharedContext, client_context

from .fakes import RawServer, frame, upgrade_reply
from .pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_server(pki: Pki) -> RawServer:
    """A wss:// server with a certificate from the test CA that upgrades and sends one text frame."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)

    def handler(conn: socket.socket, server: RawServer) -> None:
        conn.settimeout(5)
        with context.wrap_socket(conn, server_side=True) as tls:
            request = server.read_request(tls)
            tls.sendall(upgrade_reply(request) + frame(OP_TEXT, b'{"type":"hello"}'))
            tls.recv(1)  # hold the connection until the client is done

    return RawServer(handler)


def test_one_context_for_every_connection() -> None:
    context = client_context()
    assert client_context() is context  # the CA bundle is loaded once, not per connection
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_threads_at_first_use_share_one_context() -> None:
    made: list[ssl.SSLContext] = []
    start = threading.Barrier(8)

    def slow_factory() -> ssl.SSLContext:
        time.sleep(0.05)  # creating one takes ~45 ms: the window in which the others arrive
        made.append(ssl.create_default_context())
        return made[-1]

    shared = SharedContext(slow_factory)
    got: list[ssl.SSLContext] = []

    def worker() -> None:
        start.wait()
        got.append(shared.get())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(made) == 1 and len(got) == 8 and all(context is made[0] for context in got)


def test_a_certificate_from_an_unknown_ca_is_refused(pki: Pki) -> None:
    with tls_server(pki) as server, pytest.raises(ssl.SSLCertVerificationError):
        WebSocketConnection(server.url("wss"), 5.0, "test-agent")  # the shared context knows no test CA


def test_wss_with_a_trusted_certificate(pki: Pki) -> None:
    trusting = ssl.create_default_context(cafile=str(Path(pki.ca)))
    with tls_server(pki) as server:
        connection = WebSocketConnection(server.url("wss"), 5.0, "test-agent", tls=trusting)
        try:
            assert connection.receive(time.monotonic() + 5) == (OP_TEXT, b'{"type":"hello"}')
        finally:
            connection.close()
