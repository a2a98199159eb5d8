"""Certificates made by the tests: a CA, a server certificate for localhost and 127.0.0.1, a client
certificate, and a stranger's from another CA."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Pki:
    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from a CA the server does not trust
    stranger_key: Path


def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 issuer_key: ec.EllipticCurvePrivateKey | None, *, ca: bool = False,
                 sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def write_pem(directory: Path, name: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey | None
           ) -> tuple[Path, Path | None]:
    cert_path = directory / f"{name}.crt"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    if key is None:
        return cert_path, None
    key_path = directory / f"{name}.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def make_pki(directory: Path) -> Pki:
    ca_key = private_key()
    ca = certificate("test CA", ca_key, None, None, ca=True)
    server_key = private_key()
    server = certificate("localhost", server_key, ca, ca_key, sans=[
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key = private_key()
    client = certificate("prometheus", client_key, ca, ca_key, sans=[x509.DNSName("prometheus.monitoring")])
    other_ca_key = private_key()
    other_ca = certificate("other CA", other_ca_key, None, None, ca=True)
    stranger_key = private_key()
    stranger = certificate("stranger", stranger_key, other_ca, other_ca_key)
    ca_path, _ = write_pem(directory, "ca", ca, None)
    server_cert, server_key_path = write_pem(directory, "server", server, server_key)
    client_cert, client_key_path = write_pem(directory, "client", client, client_key)
    stranger_cert, stranger_key_path = write_pem(directory, "stranger", stranger, stranger_key)
    assert server_key_path and client_key_path and stranger_key_path
    return Pki(directory, ca_path, server_cert, server_key_path, client_cert, client_key_path, stranger_cert,
               stranger_key_path)
