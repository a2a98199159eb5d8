"""The TLS side of --web.config.file: the server's SSL context, rebuilt when its files change, and
client_allowed_sans.

A renewed certificate is picked up on the next connection without a restart; a half-written renewal
keeps the last good context. Loading errors name the file at fault: OpenSSL's own message for a bad
PEM file ("[SSL] PEM lib") names none, so the certificate and CA are probed on their own first.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("sfox_exporter.http")


class TlsError(ValueError):
    """A certificate, key or CA that cannot be loaded; the message names it."""


@dataclass(frozen=True)
class TlsSettings:
    cert_file: Path | None
    key_file: Path | None
    cert: str | None
    key: str | None
    client_ca_file: Path | None
    client_ca: str | None
    verify_mode: ssl.VerifyMode
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    ciphers: str | None
    curve: str | None
    prefer_server_ciphers: bool

    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None)


class ReloadingContext:
    """The SSL context for `settings`, rebuilt when a certificate, key or CA file changes on disk."""

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._stamp = _stamp(settings.files())
        self._context = build_context(settings)  # a bad certificate stops the start

    def get(self) -> ssl.SSLContext:
        stamp = _stamp(self.settings.files())
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp  # tried once a change of the files, not again at every handshake
                try:
                    self._context = build_context(self.settings)
                except TlsError as error:
                    # A half-written renewal (finished, it changes the files again) or a broken one:
                    # keep serving the last good certificate, and say so before it expires unnoticed.
                    log.warning("keeping the TLS certificate in use: the changed files cannot be loaded (%s)", error)
                else:
                    log.info("TLS certificate files changed: loaded")
            return self._context


def build_context(settings: TlsSettings) -> ssl.SSLContext:
    for path in settings.files():
        if not path.is_file():
            raise TlsError(f"{path} does not exist")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = settings.min_version
    context.maximum_version = settings.max_version
    _probe_certificates(settings.cert_file, settings.cert, "cert", "the TLS certificate")
    try:
        if settings.cert is not None or settings.key is not None:
            _load_inline_chain(context, settings)
        else:
            context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    except (ssl.SSLError, OSError, ValueError) as error:
        key = settings.key_file or "tls_server_config.key"
        if getattr(error, "reason", None) == "KEY_VALUES_MISMATCH":
            raise TlsError(f"cannot load the TLS key {key}: it does not match the certificate "
                           f"{settings.cert_file or 'tls_server_config.cert'}") from None
        raise TlsError(f"cannot load the TLS key {key}: not a PEM private key{_reason(error)}") from None
    if settings.verify_mode != ssl.CERT_NONE:
        _probe_certificates(settings.client_ca_file, settings.client_ca, "client_ca", "the client CA")
        if settings.client_ca_file is not None:
            context.load_verify_locations(cafile=str(settings.client_ca_file))
        else:
            context.load_verify_locations(cadata=settings.client_ca)
    try:
        if settings.ciphers:
            context.set_ciphers(settings.ciphers)
        if settings.curve:
            context.set_ecdh_curve(settings.curve)
    except (ssl.SSLError, ValueError) as error:
        raise TlsError(f"tls_server_config: cipher_suites or curve_preferences not usable{_reason(error)}") from None
    context.verify_mode = settings.verify_mode
    if settings.prefer_server_ciphers:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def peer_allowed(sock: ssl.SSLSocket, allowed_sans: tuple[str, ...] | None) -> bool:
    """client_allowed_sans: the client certificate must carry one of the listed SANs."""
    if allowed_sans is None:
        return True
    certificate = sock.getpeercert()
    if not certificate:
        return False
    for entry in certificate.get("subjectAltName", ()):
        if any(_same_san(str(entry[1]), allowed) for allowed in allowed_sans):
            return True
    return False


def _probe_certificates(path: Path | None, text: str | None, key: str, what: str) -> None:
    """Load the certificates alone, so that a bad file is named rather than reported as "PEM lib"."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if path is not None:
            probe.load_verify_locations(cafile=str(path))
        else:
            probe.load_verify_locations(cadata=text)
    except (ssl.SSLError, OSError, ValueError) as error:
        raise TlsError(f"cannot load {what} {path or 'tls_server_config.' + key}: "
                       f"no PEM certificate in it{_reason(error)}") from None


def _reason(error: BaseException) -> str:
    """OpenSSL's reason code when it says something ("NO_START_LINE"); its "PEM lib" does not."""
    if isinstance(error, ssl.SSLError):
        return f" ({error.reason})" if error.reason and error.reason != "PEM lib" else ""
    return f" ({getattr(error, 'strerror', None) or error})"


def _load_inline_chain(context: ssl.SSLContext, settings: TlsSettings) -> None:
    """ssl loads certificates from files only; inline PEM goes through a private temporary file."""
    cert = settings.cert if settings.cert is not None else Path(str(settings.cert_file)).read_text()
    key = settings.key if settings.key is not None else Path(str(settings.key_file)).read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as bundle:  # created with mode 0600
        bundle.write(cert.strip() + "\n" + key.strip() + "\n")
        bundle.flush()
        context.load_cert_chain(bundle.name)


def _stamp(files: tuple[Path, ...]) -> tuple[float, ...]:
    stamps: list[float] = []
    for path in files:
        try:
            stat = path.stat()
            # Nanoseconds: a same-size rewrite within a coarser tick would never be tried again.
            stamps.extend((float(stat.st_mtime_ns), float(stat.st_size), float(stat.st_ino)))
        except OSError:
            stamps.append(-1.0)
    return tuple(stamps)


def _same_san(value: str, allowed: str) -> bool:
    if value == allowed:
        return True
    try:
        return ipaddress.ip_address(value.strip()) == ipaddress.ip_address(allowed)
    except ValueError:
        return False
