"""Scrape latency of a real client while slowloris attacks the exporter's HTTP server.

    python -m benchmarks.slowloris                 # this tree
    python -m benchmarks.slowloris --tree DIR      # another checkout (DIR/exporter on PYTHONPATH), e.g. before

Two attacks, each against a fresh `sfox-exporter --demo` process: 300 connections sending partial
request heads (a byte every 0.5 s, reconnecting when dropped), and, with TLS and client
certificates, 100 connections that never start the TLS handshake. A scrape that fails or takes
over 10 s counts as failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .common import percentile, wait_for


def _pki(directory: Path) -> dict[str, Path]:
    now = datetime.datetime.now(datetime.UTC)
    paths: dict[str, Path] = {}

    def issue(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, ca: bool,
              sans: list[x509.GeneralName]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(issuer[0].subject if issuer else subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
        paths[name + ".crt"] = directory / f"{name}.crt"
        paths[name + ".crt"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        paths[name + ".key"] = directory / f"{name}.key"
        paths[name + ".key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return certificate, key

    ca = issue("ca", None, True, [])
    issue("server", ca, False, [x509.DNSName("localhost")])
    issue("client", ca, False, [x509.DNSName("prometheus")])
    return paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Attack:
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
                    else:
                        sock.setblocking(False)
                        if sock.recv(1) == b"":
                            raise ConnectionError
                except BlockingIOError:
                    pass
                except OSError:
                    sock.close()
                    with contextlib.suppress(OSError):
                        self.sockets[index] = self._open()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def _scrape(port: int, context: ssl.SSLContext | None) -> float | None:
    started = time.perf_counter()
    connection = (http.client.HTTPSConnection("localhost", port, context=context, timeout=10) if context
                  else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        ok = response.status == 200 and b"sfox_feed_up" in response.read()
    except (OSError, http.client.HTTPException):
        ok = False
    finally:
        connection.close()
    return time.perf_counter() - started if ok else None


def run(tree: Path | None, scrapes: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        pki = _pki(Path(scratch))
        web = Path(scratch) / "web.yml"
        web.write_text(f"tls_server_config:\n  cert_file: {pki['server.crt']}\n  key_file: {pki['server.key']}\n"
                       f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki['ca.crt']}\n")
        context = ssl.create_default_context(cafile=str(pki["ca.crt"]))
        context.load_cert_chain(str(pki["client.crt"]), str(pki["client.key"]))
        attacks = [("300 partial request heads", [], None, 300, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "),
                   ("100 silent TLS connections (mTLS)", ["--web.config.file", str(web)], context, 100, b"")]
        for name, extra, client, count, opening in attacks:
            port = _free_port()
            environment = dict(os.environ)
            if tree is not None:
                environment["PYTHONPATH"] = str(tree / "exporter")
            process = subprocess.Popen([sys.executable, "-m", "sfox_exporter", "--demo", "--log.level", "error",
                                        "--web.listen-address", f"127.0.0.1:{port}", *extra], env=environment)
            try:
                wait_for(lambda: _scrape(port, client) is not None, 30, "the exporter to serve")  # noqa: B023
                attack = _Attack(port, count, opening)
                try:
                    time.sleep(1.0)  # let the attack fill the server before measuring
                    results = [_scrape(port, client) for _ in range(scrapes)]
                finally:
                    attack.close()
            finally:
                process.terminate()
                process.wait(10)
            done = sorted(r for r in results if r is not None)
            failed = len(results) - len(done)
            figures = (f"p50 {percentile(done, 0.5) * 1000:.0f} ms, p99 {percentile(done, 0.99) * 1000:.0f} ms"
                       if done else "no scrape succeeded")
            print(f"{name}: {figures}, {failed}/{len(results)} scrapes failed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, help="a checkout to measure instead of this one")
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    run(args.tree, args.scrapes)


if __name__ == "__main__":
    main()
