"""--web.config.file: TLS, client certificates, basic auth and response headers.

The file format is the Prometheus exporter-toolkit's web-config.yml, read with the same rules: unknown
keys are errors, relative paths are relative to the file, TLS defaults to versions 1.2 to 1.3, only
the toolkit's five security headers may be set, and passwords are bcrypt hashes. Where Python's ssl
module cannot do what Go's crypto/tls does (a client certificate requested but not verified), the
setting is refused with a reason rather than quietly weakened.
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfox_exporter.config import ConfigError, yamlfile
from sfox_exporter.config.files import MAX_CONFIG_FILE_BYTES, UnreadableFile, read_text_file
from sfox_exporter.config.validate import shown
from sfox_exporter.web.auth import BCRYPT_COSTS, BCRYPT_HASH, BasicAuth, cost
from sfox_exporter.web.tls import ReloadingContext, TlsError, TlsSettings, peer_allowed

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
_TLS_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
             "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
             "curve_preferences")
_HTTP_KEYS = ("http2", "headers")
_RATE_KEYS = ("interval", "burst")
# The exporter-toolkit's allow-list, with the values it accepts (None: any).
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
             "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's TLS 1.2 suite names and their OpenSSL names. TLS 1.3 suites are not configurable, in Go either.
_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
_TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
_CLIENT_AUTH = {"": ssl.CERT_NONE, "NoClientCert": ssl.CERT_NONE,
                "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL, "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


MAX_BURST = 2**31 - 1  # Go's int32: more is no limit, and past float's range a crash


class WebConfigError(ConfigError):
    pass


class _TokenBucket:
    def __init__(self, interval: float, burst: int) -> None:
        self._interval = interval
        self._burst = max(burst, 1)
        self._tokens = float(self._burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._last) / self._interval)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


@dataclass
class WebSecurity:
    """TLS, authentication and headers for the HTTP server."""

    headers: dict[str, str] = field(default_factory=dict)
    auth: BasicAuth = field(default_factory=lambda: BasicAuth({}))
    allowed_sans: tuple[str, ...] | None = None
    rate_limit: _TokenBucket | None = None
    tls: ReloadingContext | None = field(default=None, repr=False)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return None if self.tls is None else self.tls.get()

    def authorized(self, authorization: str | None) -> bool:
        return self.auth.authorized(authorization)

    def peer_allowed(self, sock: ssl.SSLSocket) -> bool:
        return peer_allowed(sock, self.allowed_sans)

    def allow_request(self) -> bool:
        return self.rate_limit is None or self.rate_limit.allow()


def load_web_config(path: Path) -> WebSecurity:
    """Read and check a web-config.yml; raises WebConfigError with one line naming the problem."""
    try:
        return _load_web_config(path)
    except WebConfigError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, ArithmeticError) as error:
        # A value of a shape no check above foresaw: still one line and exit status 2.
        raise WebConfigError(f"--web.config.file: {path}: invalid value ({error})") from None


def _load_web_config(path: Path) -> WebSecurity:
    origin = f"--web.config.file: {path}"
    try:
        document = yamlfile.safe_load(read_text_file(path, origin, MAX_CONFIG_FILE_BYTES))
    except UnreadableFile as error:
        raise WebConfigError(str(error)) from None
    except yamlfile.YAMLError as error:
        problem = getattr(error, "problem", None) or error
        raise WebConfigError(f"{origin} is not valid YAML{yamlfile.where(error)}: {problem}") from None
    if document is None:  # an empty file: no TLS, no auth. But [] or false is no web config at all.
        document = {}
    _mapping(document, origin, _TOP_KEYS)
    base = path.parent
    security = WebSecurity()
    tls_doc = _mapping(document.get("tls_server_config"), f"{origin}: tls_server_config", _TLS_KEYS)
    http_doc = _mapping(document.get("http_server_config"), f"{origin}: http_server_config", _HTTP_KEYS)
    security.headers = _headers(http_doc.get("headers"), f"{origin}: http_server_config.headers")
    if "http2" in http_doc and not isinstance(http_doc["http2"], bool):
        raise WebConfigError(f"{origin}: http_server_config.http2: expected true or false")
    security.auth = BasicAuth(_users(document.get("basic_auth_users"), f"{origin}: basic_auth_users"))
    security.rate_limit = _rate_limit(document.get("rate_limit"), f"{origin}: rate_limit")
    if any(tls_doc.get(key) not in (None, "") for key in
           ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type")):
        settings = _tls_settings(tls_doc, base, f"{origin}: tls_server_config")
        sans = tls_doc.get("client_allowed_sans")
        if sans is not None:
            if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
                raise WebConfigError(f"{origin}: tls_server_config.client_allowed_sans: expected a list of strings")
            if settings.verify_mode != ssl.CERT_REQUIRED:
                raise WebConfigError(f"{origin}: tls_server_config.client_allowed_sans: needs client_auth_type "
                                     "RequireAndVerifyClientCert")
            security.allowed_sans = tuple(sans)
        try:
            security.tls = ReloadingContext(settings)  # loads the certificate now: a bad one stops the start
        except TlsError as error:
            raise WebConfigError(f"{origin}: {error}") from None
    elif tls_doc.get("client_allowed_sans"):
        raise WebConfigError(f"{origin}: tls_server_config.client_allowed_sans: needs TLS with client certificates")
    return security


def _mapping(value: Any, origin: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{origin}: expected a mapping")
    for key in value:
        if key not in allowed:
            raise WebConfigError(f"{origin}: unknown key {shown(key)}")
    return value


def _headers(value: Any, origin: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{origin}: expected a mapping of header names to values")
    headers = {}
    for name, text in value.items():
        if name not in ALLOWED_HEADERS:
            raise WebConfigError(f"{origin}: HTTP header {shown(name)} can not be configured "
                                 f"(allowed: {', '.join(ALLOWED_HEADERS)})")
        if not isinstance(text, str) or "\n" in text or "\r" in text:
            raise WebConfigError(f"{origin}: {name}: expected a one-line string")
        allowed = ALLOWED_HEADERS[name]
        if allowed is not None and text not in allowed:
            raise WebConfigError(f"{origin}: {name}: expected one of {', '.join(allowed)}, got {shown(text)}")
        if text:
            headers[name] = text
    return headers


def _users(value: Any, origin: str) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{origin}: expected a mapping of user names to bcrypt hashes")
    users = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"{origin}: {shown(user)} is not a valid user name")
        if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
            raise WebConfigError(f"{origin}: {user}: the password must be a bcrypt hash "
                                 "(htpasswd -nBC 10 \"\" | tr -d ':\\n')")
        stated = cost(hashed.encode())
        if stated not in BCRYPT_COSTS:
            raise WebConfigError(f"{origin}: {user}: a bcrypt cost of {stated} is outside "
                                 f"{BCRYPT_COSTS.start}..{BCRYPT_COSTS.stop - 1} (each step doubles the time a "
                                 "check takes; 10 to 12 is usual)")
        users[user] = hashed.encode()
    return users


def _rate_limit(value: Any, origin: str) -> _TokenBucket | None:
    document = _mapping(value, origin, _RATE_KEYS)
    if not document:
        return None
    interval = _duration(document.get("interval", 0), f"{origin}.interval")
    burst = document.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or not 0 <= burst <= MAX_BURST:
        raise WebConfigError(f"{origin}.burst: expected a whole number from 0 to {MAX_BURST}")
    return _TokenBucket(interval, burst) if interval > 0 else None


def _duration(value: Any, origin: str) -> float:
    """A Go duration such as 100ms, 1s or 1m30s."""
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0.0
    if not isinstance(value, str) or not re.fullmatch(f"(?:{_DURATION.pattern})+", value):
        raise WebConfigError(f"{origin}: expected a duration such as 100ms or 1s, got {shown(value)}")
    return sum(float(number) * _UNITS[unit] for number, unit in _DURATION.findall(value))


def _tls_settings(doc: dict[str, Any], base: Path, origin: str) -> TlsSettings:
    def path(key: str) -> Path | None:
        value = doc.get(key)
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise WebConfigError(f"{origin}.{key}: expected a file name")
        return base / value

    def text(key: str) -> str | None:
        value = doc.get(key)
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise WebConfigError(f"{origin}.{key}: expected PEM text")
        return value

    cert_file, key_file, client_ca_file = path("cert_file"), path("key_file"), path("client_ca_file")
    cert, key, client_ca = text("cert"), text("key"), text("client_ca")
    if cert_file is None and cert is None:
        raise WebConfigError(f"{origin}: missing one of cert or cert_file")
    if key_file is None and key is None:
        raise WebConfigError(f"{origin}: missing one of key or key_file")
    for inline, named, kind in ((cert, cert_file, "cert"), (key, key_file, "key"),
                                (client_ca, client_ca_file, "client_ca")):
        if inline is not None and named is not None:  # which one is meant? An error naming the other misled
            raise WebConfigError(f"{origin}: both {kind} and {kind}_file are given; keep one")
    verify_mode = _verify_mode(doc, origin, has_ca=client_ca_file is not None or client_ca is not None)
    min_version = _version(doc.get("min_version", "TLS12"), f"{origin}.min_version")
    max_version = _version(doc.get("max_version", "TLS13"), f"{origin}.max_version")
    if min_version > max_version:
        raise WebConfigError(f"{origin}: min_version is above max_version")
    ciphers = _ciphers(doc.get("cipher_suites"), f"{origin}.cipher_suites")
    curve = _curve(doc.get("curve_preferences"), f"{origin}.curve_preferences")
    prefer = doc.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{origin}.prefer_server_cipher_suites: expected true or false")
    return TlsSettings(cert_file, key_file, cert, key, client_ca_file, client_ca, verify_mode, min_version,
                        max_version, ciphers, curve, prefer)


def _verify_mode(doc: dict[str, Any], origin: str, has_ca: bool) -> ssl.VerifyMode:
    auth = doc.get("client_auth_type") or ""
    if not isinstance(auth, str):
        raise WebConfigError(f"{origin}.client_auth_type: expected a string")
    if auth in _UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(f"{origin}.client_auth_type: {auth} accepts certificates without verifying them, which "
                             "this exporter does not support; use RequireAndVerifyClientCert (or "
                             "VerifyClientCertIfGiven)")
    if auth not in _CLIENT_AUTH:
        raise WebConfigError(f"{origin}.client_auth_type: invalid ClientAuth {shown(auth)}")
    verify_mode = _CLIENT_AUTH[auth]
    if has_ca and verify_mode == ssl.CERT_NONE:
        raise WebConfigError(f"{origin}: client CAs have been configured without a client_auth_type")
    if verify_mode != ssl.CERT_NONE and not has_ca:
        raise WebConfigError(f"{origin}.client_auth_type: {auth} needs client_ca_file (or client_ca)")
    return verify_mode


def _curve(curves: Any, origin: str) -> str | None:
    if not curves:
        return None
    if not isinstance(curves, list) or not all(isinstance(c, str) and c in _CURVES for c in curves):
        raise WebConfigError(f"{origin}: expected a list of {', '.join(_CURVES)}")
    return _CURVES[curves[0]]  # Python's ssl takes one curve: the most preferred


def _version(value: Any, origin: str) -> ssl.TLSVersion:
    if not isinstance(value, str) or value not in _VERSIONS:
        raise WebConfigError(f"{origin}: expected one of {', '.join(_VERSIONS)}, got {shown(value)}")
    return _VERSIONS[value]


def _ciphers(value: Any, origin: str) -> str | None:
    if not value:
        return None
    if not isinstance(value, list):
        raise WebConfigError(f"{origin}: expected a list of cipher suite names")
    names = []
    for suite in value:
        if not isinstance(suite, str):
            raise WebConfigError(f"{origin}: expected cipher suite names, got {shown(suite)}")
        if suite in _CIPHERS:
            names.append(_CIPHERS[suite])
        elif suite not in _TLS13_CIPHERS:
            raise WebConfigError(f"{origin}: unknown cipher {shown(suite)}")
    return ":".join(names) or None
