"""A scraper, in a process of its own as Prometheus is: GET each URL COUNT times, print the latencies.

    python -m benchmarks.contenders.scraper COUNT URL [URL ...]

HTTP/1.1 over a plain socket, one keep-alive connection per URL, reopened whenever the server closes
it (the time that takes counts), so that the client's own cost stays small beside what is measured.
Several URLs are scraped in turn, request by request. A warm-up of 20 requests is not counted, so
that no figure includes a cold start. Checks that every answer is a 200
with a whole Content-Length body. Prints a JSON list of latency lists, in seconds, one per URL.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from urllib.parse import urlsplit

_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)\r$")
_CLOSE = re.compile(rb"(?im)^connection:\s*close\r$")


class Scraper:
    def __init__(self, host: str, port: int, path: str) -> None:
        self._address = (host, port)
        self._request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: bench\r\n\r\n".encode()
        self._sock: socket.socket | None = None
        self._buffer = b""

    def get(self) -> bytes:
        if self._sock is None:
            self._sock = socket.create_connection(self._address, timeout=30)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buffer = b""
        self._sock.sendall(self._request)
        while b"\r\n\r\n" not in self._buffer:
            self._receive()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
            raise SystemExit(f"bad response: {head[:60]!r}")
        length = _LENGTH.search(head + b"\r")
        if length is None:
            raise SystemExit("no Content-Length")
        size = int(length.group(1))
        while len(rest) < size:
            rest += self._receive_chunk()
        body, self._buffer = rest[:size], rest[size:]
        if head.startswith(b"HTTP/1.0") or _CLOSE.search(head + b"\r"):
            self._sock.close()
            self._sock = None
        return body

    def _receive(self) -> None:
        self._buffer += self._receive_chunk()

    def _receive_chunk(self) -> bytes:
        assert self._sock is not None
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise SystemExit("the server closed the connection mid-response")
        return chunk


WARM_UP = 20


def main() -> None:
    count = int(sys.argv[1])
    scrapers = []
    for url in map(urlsplit, sys.argv[2:]):
        scrapers.append(Scraper(url.hostname or "127.0.0.1", url.port or 80, url.path))
    latencies: list[list[float]] = [[] for _ in scrapers]
    for round_number in range(WARM_UP + count):
        for scraper, measured in zip(scrapers, latencies, strict=True):
            started = time.perf_counter()
            body = scraper.get()
            if round_number >= WARM_UP:
                measured.append(time.perf_counter() - started)
            if not body:
                raise SystemExit("empty body")
    print(json.dumps(latencies))


if __name__ == "__main__":
    main()
