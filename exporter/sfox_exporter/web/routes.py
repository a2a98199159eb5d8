"""What each path answers: the metrics, the health pages, the landing page and /-/reload.

Kept apart from the transport (server.py, handler.py) so that what a request gets can be read, and
tested, without a socket; and apart from app.py, which only assembles the exporter.
"""

from __future__ import annotations

import html
import logging
import ssl
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Protocol

from sfox_exporter.metrics.exposition import Rendered
from sfox_exporter.metrics.state import Snapshot
from sfox_exporter.vocabulary import FeedStatus
from sfox_exporter.web import landing

log = logging.getLogger("sfox_exporter.http")

TEXT = "text/plain; charset=utf-8"
HEALTH_PATHS = ("/healthz", "/readyz")
RELOAD_PATH = "/-/reload"
READ_METHODS = ("GET", "HEAD")
RELOAD_METHODS = ("POST", "PUT")  # as Prometheus serves it
_LANDING_CSP = landing.CSP  # the balances' refresh script is allowed by its hash


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


@dataclass(frozen=True)
class Lifecycle:
    """--web.enable-lifecycle: whether POST /-/reload may reload, and what reloading does (it returns
    an error text, or None on success)."""

    enabled: bool = False
    reload: Callable[[], str | None] | None = None


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    parts: tuple[bytes, ...]
    headers: dict[str, str] = field(default_factory=dict)


def text(status: int, body: str, **headers: str) -> Response:
    return Response(status, TEXT, (body.encode(),), {name.replace("_", "-"): v for name, v in headers.items()})


def respond(app: WebApp, security: Security, lifecycle: Lifecycle, method: str, target: str, *,
            headers: Message) -> Response:
    path = request_path(target)
    if path == RELOAD_PATH:
        if method not in RELOAD_METHODS:
            return text(405, "method not allowed: use POST\n", Allow=", ".join(RELOAD_METHODS))
    elif method not in READ_METHODS:
        return text(405, "method not allowed: use GET or HEAD\n", Allow=", ".join(READ_METHODS))
    if not security.allow_request():
        return text(429, "too many requests\n")
    if path == "/healthz":  # no credentials wanted, so none checked: bcrypt costs ~0.1 s a guess
        ok, body = app.health()
        return text(200 if ok else 503, body)
    authorized = security.authorized(headers.get("Authorization"))
    if path not in HEALTH_PATHS and not authorized:
        return text(401, "unauthorized\n", WWW_Authenticate='Basic realm="sfox-exporter", charset="UTF-8"')
    if path == RELOAD_PATH:
        return _reload(lifecycle)
    if path == app.telemetry_path:
        encoding = "gzip" if gzip_wanted(headers.get("Accept-Encoding")) else None
        rendered = app.render_metrics(headers.get("Accept"), encoding)
        extra = {"Vary": "Accept, Accept-Encoding"}
        if rendered.content_encoding:
            extra["Content-Encoding"] = rendered.content_encoding
        return Response(200, rendered.content_type, rendered.parts, extra)
    if path == "/readyz":
        ok, body = app.readiness()
        if not authorized:
            body = "ready\n" if ok else "not ready\n"  # probes get the status; only users see the names
        return text(200 if ok else 503, body)
    if path == "/":
        return Response(200, "text/html; charset=utf-8", (app.landing_page().encode(),),
                        {"Content-Security-Policy": _LANDING_CSP})
    return text(404, "not found\n")


def _reload(lifecycle: Lifecycle) -> Response:
    if not lifecycle.enabled or lifecycle.reload is None:
        return text(403, "Lifecycle API is not enabled.\n")
    try:
        error = lifecycle.reload()
    except Exception as failure:  # a reload must never take the server down; the reason goes back
        log.exception("reload through /-/reload failed")
        error = f"{type(failure).__name__}: {failure}"
    if error is not None:
        return text(500, f"failed to reload config: {error}\n")
    return text(200, "config reloaded\n")


def request_path(target: str) -> str:
    """The path of an origin-form ("/metrics?x") or absolute-form ("http://host/metrics") target,
    which RFC 9112 says a server must accept; percent-decoded as UTF-8, as Go's net/http matches it:
    a --web.telemetry-path of /métriques is asked for as /m%C3%A9triques. The standard library hands
    the target over as Latin-1 text, byte for byte."""
    if target.startswith(("http://", "https://")):
        path = urllib.parse.urlsplit(target).path or "/"
    else:
        path = target.split("?", 1)[0]
    if "%" not in path and path.isascii():
        return path
    return urllib.parse.unquote_to_bytes(path.encode("latin-1", "replace")).decode("utf-8", "replace")


def gzip_wanted(accept_encoding: str | None) -> bool:
    """Accept-Encoding with its q-values (RFC 9110 12.5.3): "gzip;q=0" means no gzip, and "*"
    stands for gzip unless gzip is named."""
    weights: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding:
            weights.setdefault(coding.lower(), weight)
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def health(dead_threads: Iterable[str], stopping: bool) -> tuple[bool, str]:
    dead = list(dead_threads)
    if dead and not stopping:
        return False, f"unhealthy: thread(s) stopped: {', '.join(dead)}\n"
    return True, "ok\n"


def readiness(statuses: Mapping[str, str]) -> tuple[bool, str]:
    not_ready = {name: status for name, status in statuses.items() if status != FeedStatus.UP}
    if not not_ready:
        return True, "ready\n"
    listing = ", ".join(f"{name} ({status})" for name, status in not_ready.items())
    return False, f"not ready: feed not up for {listing}\n"


DEMO_BANNER = ('<p class="demo" role="alert"><strong>DEMO MODE</strong>: these balances come from the built-in '
               'sFOX simulator (--demo), not from sFOX.</p>')


def landing_page(snapshot: Snapshot, now: float, version: str, telemetry_path: str, *, demo: bool = False) -> str:
    rows = []
    for view in snapshot.accounts:
        age = "never" if view.last_message_time is None else f"{max(0.0, now - view.last_message_time):.1f}s ago"
        errors = sum(view.errors.values())
        rows.append(
            f"<tr><td>{html.escape(view.name)}</td><td class=\"{'up' if view.up else 'down'}\">"
            f"{html.escape(view.status)}</td><td>{age}</td><td>{len(view.balances)}</td>"
            f"<td>{len(view.wallets)}</td><td>{view.reconnects}</td><td>{errors}</td></tr>"
        )
    path = html.escape(telemetry_path)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sFOX exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}
.up{{color:#1a7f37}}.down{{color:#cf222e}}
.demo{{background:#fff8c5;border:2px solid #d4a72c;padding:.6em 1em}}</style></head>
<body><h1>sFOX exporter</h1>{DEMO_BANNER if demo else ""}<p>Version {html.escape(version)}</p>
<ul><li><a href="{path}">Metrics</a></li><li><a href="/healthz">Health</a></li>
<li><a href="/readyz">Readiness</a></li></ul>
<table><tr><th>Account</th><th>Feed</th><th>Last message</th><th>Currencies</th><th>Web3 wallets</th>
<th>Reconnects</th><th>Errors</th></tr>
{''.join(rows)}
</table>{landing.page_additions(snapshot)}</body></html>
"""
