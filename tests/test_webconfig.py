"""--web.config.file: TLS, mutual TLS, basic auth, headers and rate limits, with certificates made here."""

from __future__ import annotations

import base64
import gc
import http.client
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import yaml
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfox_exporter.app import Exporter
from sfox_exporter.simulator import Simulator
from sfox_exporter.vocabulary import FeedStatus
from sfox_exporter.web.server import HttpServer, Limits
from sfox_exporter.web.toolkit import WebConfigError, WebSecurity, load_web_config

from .conftest import make_config, wait_until
from .pki import Pki, certificate, make_pki, private_key, write_pem
from .test_web_hardening import RecordingApp

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))




@pytest.fixture
def serve(simulator: Simulator, tmp_path: Path, start_exporter: Callable[..., Exporter]) -> Callable[[str], Exporter]:
    """Start an exporter with the given web-config.yml text."""

    def start(web_config: str) -> Exporter:
        path = tmp_path / "web-config.yml"
        path.write_text(web_config)
        return start_exporter(make_config(simulator), security=load_web_config(path))

    return start


def client_context(pki: Pki, cert: Path | None = None, key: Path | None = None,
                   max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    if max_version is not None:
        context.maximum_version = max_version
    return context


def get(exporter: Exporter, path: str = "/metrics", context: ssl.SSLContext | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    port = exporter.http.port
    connection: http.client.HTTPConnection
    if context is not None:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def tls_config(pki: Pki, extra: str = "") -> str:
    return f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
{extra}"""


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_tls_scrape(pki: Pki, serve: Callable[[str], Exporter]) -> None:
    exporter = serve(tls_config(pki))
    assert exporter.url.startswith("https://")
    status, headers, body = get(exporter, context=client_context(pki))
    assert status == 200 and b"sfox_feed_up" in body
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, body = get(exporter)  # plain HTTP on a TLS port: told to use HTTPS, as exporter-toolkit does
    assert status == 400 and body == b"Client sent an HTTP request to an HTTPS server.\n"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(exporter, context=client_context(pki))[0] == 200


def test_mutual_tls_required_and_refused_without_a_client_certificate(
        pki: Pki, serve: Callable[[str], Exporter]) -> None:
    exporter = serve(tls_config(pki, f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"))
    status, _, _ = get(exporter, context=client_context(pki, pki.client_cert, pki.client_key))
    assert status == 200
    for context in (client_context(pki), client_context(pki, pki.stranger_cert, pki.stranger_key)):
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
            get(exporter, context=context)
    assert get(exporter, "/healthz", client_context(pki, pki.client_cert, pki.client_key))[0] == 200


def test_connections_kept_alive_follow_a_reload_that_requires_tls_or_client_certificates(
        pki: Pki, serve: Callable[[str], Exporter]) -> None:
    """A plain connection kept alive across a reload that turned TLS on went on serving balances in
    the clear, and a Prometheus still scraping http:// never noticed."""
    exporter = serve("")
    plain = http.client.HTTPConnection("127.0.0.1", exporter.http.port, timeout=10)
    plain.request("GET", "/metrics")
    first = plain.getresponse()
    assert first.status == 200 and first.read()
    exporter.http.set_security(load_web_config_text(tls_config(pki)))
    plain.request("GET", "/metrics")
    response = plain.getresponse()
    assert response.status == 400 and response.read() == b"Client sent an HTTP request to an HTTPS server.\n"
    plain.close()
    kept = http.client.HTTPSConnection("127.0.0.1", exporter.http.port, context=client_context(pki), timeout=10)
    kept.request("GET", "/metrics")
    assert kept.getresponse().read()
    exporter.http.set_security(load_web_config_text(
        tls_config(pki, f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n")))
    kept.request("GET", "/metrics")
    with pytest.raises((ConnectionError, http.client.HTTPException)):  # closed: no certificate to show
        kept.getresponse()
    kept.close()
    assert get(exporter, context=client_context(pki, pki.client_cert, pki.client_key))[0] == 200


def test_client_allowed_sans(pki: Pki, serve: Callable[[str], Exporter]) -> None:
    mtls = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
    allowed = serve(tls_config(pki, mtls + "  client_allowed_sans: [prometheus.monitoring]\n"))
    assert get(allowed, context=client_context(pki, pki.client_cert, pki.client_key))[0] == 200
    denied = serve(tls_config(pki, mtls + "  client_allowed_sans: [someone.else]\n"))
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
        get(denied, context=client_context(pki, pki.client_cert, pki.client_key))


def test_min_version(pki: Pki, serve: Callable[[str], Exporter]) -> None:
    exporter = serve(tls_config(pki, "  min_version: TLS13\n"))
    assert get(exporter, context=client_context(pki))[0] == 200
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        get(exporter, context=client_context(pki, max_version=ssl.TLSVersion.TLSv1_2))


def test_basic_auth(serve: Callable[[str], Exporter]) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    exporter = serve(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    status, headers, _ = get(exporter)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(exporter, headers=basic("prometheus", "wrong"))[0] == 401
    assert get(exporter, headers=basic("nobody", PASSWORD))[0] == 401
    assert get(exporter, headers={"Authorization": "Basic !!!"})[0] == 401
    assert get(exporter, headers={"Authorization": "Bearer " + PASSWORD})[0] == 401
    status, _, body = get(exporter, headers=basic("prometheus", PASSWORD))
    assert status == 200 and b"sfox_balance" in body
    assert get(exporter, "/", headers=basic("prometheus", PASSWORD))[0] == 200
    assert get(exporter, "/")[0] == 401
    # The documented exception: probes need no password, and the health pages show no balances;
    # without credentials /readyz gives its status but not the account names.
    assert get(exporter, "/healthz")[0] == 200
    status, _, body = get(exporter, "/readyz")
    assert status in (200, 503) and b"main" not in body
    wait_until(lambda: get(exporter, "/readyz")[0] == 200)
    exporter.state.set_status("main", FeedStatus.CONNECTING)
    assert get(exporter, "/readyz")[2] == b"not ready\n"
    assert b"main (connecting)" in get(exporter, "/readyz", headers=basic("prometheus", PASSWORD))[2]


def test_bcrypt_runs_once_per_credential() -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12))  # about 250 ms per check
    security = load_web_config_text(f"basic_auth_users:\n  prometheus: '{hashed.decode()}'\n")
    header = basic("prometheus", PASSWORD)["Authorization"]
    assert security.authorized(header)
    started = time.perf_counter()
    for _ in range(50):
        assert security.authorized(header)
    assert time.perf_counter() - started < 0.25  # cached: 50 checks cost less than one bcrypt


def load_web_config_text(text: str, directory: Path | None = None) -> WebSecurity:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(directory or scratch) / "web.yml"
        path.write_text(text)
        return load_web_config(path)


def test_headers(pki: Pki, serve: Callable[[str], Exporter]) -> None:
    exporter = serve(tls_config(pki) + """http_server_config:
  headers:
    Strict-Transport-Security: max-age=31536000
    X-Frame-Options: deny
    Content-Security-Policy: default-src 'none'
""")
    for path in ("/metrics", "/nothing-here"):
        _, headers, _ = get(exporter, path, context=client_context(pki))
        assert headers["Strict-Transport-Security"] == "max-age=31536000"
        assert headers["X-Frame-Options"] == "deny"
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_rate_limit(serve: Callable[[str], Exporter]) -> None:
    exporter = serve("rate_limit:\n  interval: 1m\n  burst: 2\n")
    assert [get(exporter)[0] for _ in range(3)] == [200, 200, 429]


def test_renewed_certificate_is_served_without_a_restart(pki: Pki, tmp_path: Path,
                                                         serve: Callable[[str], Exporter]) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    exporter = serve(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    first = ssl.get_server_certificate(("127.0.0.1", exporter.http.port))
    renewed_key = private_key()
    renewed = certificate("renewed", renewed_key, None, None, sans=[x509.DNSName("localhost")])
    new_cert, new_key = write_pem(tmp_path, "renewed", renewed, renewed_key)
    assert new_key is not None
    os.replace(new_key, key)
    os.replace(new_cert, cert)
    second = ssl.get_server_certificate(("127.0.0.1", exporter.http.port))
    assert first != second


def test_a_renewal_that_cannot_be_loaded_keeps_the_certificate_and_says_so(
        pki: Pki, tmp_path: Path, serve: Callable[[str], Exporter], caplog: pytest.LogCaptureFixture) -> None:
    """Silent, a broken renewal went unnoticed until the certificate in use expired."""
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    exporter = serve(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    first = ssl.get_server_certificate(("127.0.0.1", exporter.http.port))
    cert.write_text(cert.read_text()[:200])  # truncated
    with caplog.at_level(logging.INFO, logger="sfox_exporter.http"):
        for _ in range(3):
            assert ssl.get_server_certificate(("127.0.0.1", exporter.http.port)) == first
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(cert) in warnings[0], warnings  # once a change, not at every handshake
    renewed_key = private_key()  # put right, with a renewal: loaded and served
    renewed = certificate("renewed", renewed_key, None, None, sans=[x509.DNSName("localhost")])
    new_cert, new_key = write_pem(tmp_path, "renewed", renewed, renewed_key)
    assert new_key is not None
    os.replace(new_key, key)
    os.replace(new_cert, cert)
    assert ssl.get_server_certificate(("127.0.0.1", exporter.http.port)) not in (first, "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config:\n  cert_file: {cert}\n", "missing one of key or key_file"),
        ("tls_server_config:\n  key_file: {key}\n", "missing one of cert or cert_file"),
        ("tls_server_config:\n  cert_file: nope.crt\n  key_file: {key}\n", "nope.crt does not exist"),
        ("tls_server_config:\n  cert_file: {key}\n  key_file: {cert}\n", "cannot load the TLS certificate"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {ca}\n",
         "client CAs have been configured without a client_auth_type"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: RequireAndVerifyClientCert\n",
         "needs client_ca_file"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: RequireAnyClientCert\n",
         "without verifying them"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: Sometimes\n",
         "invalid ClientAuth"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS14\n", "min_version"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  cipher_suites: [TLS_MADE_UP]\n",
         "unknown cipher"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_allowed_sans: [x]\n",
         "needs client_auth_type RequireAndVerifyClientCert"),
        ("tls_server_config:\n  cert_filez: {cert}\n", "unknown key 'cert_filez'"),
        ("tls_server_config:\n  cert_file: {cert}\n  cert: junk\n  key_file: {key}\n", "both cert and cert_file"),
        ("tls_config: {{}}\n", "unknown key 'tls_config'"),
        ("basic_auth_users:\n  admin: plaintext\n", "must be a bcrypt hash"),
        ("http_server_config:\n  headers:\n    Server: mine\n", "'Server' can not be configured"),
        ("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n", "expected one of nosniff"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "expected one of deny, sameorigin"),
        ("rate_limit:\n  interval: soon\n", "expected a duration"),
        ("tls_server_config: [\n", "not valid YAML"),
        ("basic_auth_users:\n  admin: x\nbasic_auth_users: {{}}\n",
         "at line 3, column 1: found duplicate key 'basic_auth_users'"),
        # A decoy hash of the highest cost was made at load: at cost 99 (run as 31), 45 hours of a
        # SIGHUP's main thread, deaf to SIGTERM. bcrypt cannot read cost 3, nor "$2$".
        ("basic_auth_users:\n  p: $2y$99$X0h1gDsPszWURQaxFh.zoubFi6DXNSjdpwF8mn/5m.CP1gvZ..Tp2\n",
         "p: a bcrypt cost of 99 is outside 4..20"),
        ("basic_auth_users:\n  p: $2y$03$X0h1gDsPszWURQaxFh.zoubFi6DXNSjdpwF8mn/5m.CP1gvZ..Tp2\n",
         "p: a bcrypt cost of 3 is outside 4..20"),
        ("basic_auth_users:\n  p: $2$10$X0h1gDsPszWURQaxFh.zoubFi6DXNSjdpwF8mn/5m.CP1gvZ..Tp2\n",
         "p: the password must be a bcrypt hash"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: [x]\n",
         "client_auth_type: expected a string"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: [TLS12]\n", "min_version"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  cipher_suites: [[a]]\n",
         "expected cipher suite names"),
        ("tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  curve_preferences: [[a]]\n",
         "curve_preferences"),
        ("tls_server_config:\n  cert_file: [{cert}]\n  key_file: {key}\n", "cert_file: expected a file name"),
        ("basic_auth_users: [admin]\n", "basic_auth_users: expected a mapping"),
        ("http_server_config:\n  headers: [x]\n", "headers: expected a mapping"),
        ("rate_limit:\n  interval: 1s\n  burst: many\n", "burst: expected a whole number"),
        ("rate_limit:\n  interval: 1s\n  burst: 1%s\n" % ("0" * 400), "burst: expected a whole number from 0 to"),
        ("[]\n", "expected a mapping"),  # not an empty web config: no TLS and no auth without a word
        ("false\n", "expected a mapping"),
    ],
)
def test_invalid_web_config_is_refused(pki: Pki, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text.format(cert=pki.server_cert, key=pki.server_key, ca=pki.ca))
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_relative_paths_are_relative_to_the_web_config(pki: Pki) -> None:
    security = load_web_config_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
                                    pki.directory)
    assert security.ssl_context is not None


def test_cli_exits_2_on_an_invalid_web_config(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  admin: hunter2\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SFOX_")}
    result = subprocess.run([sys.executable, "-m", "sfox_exporter", "--demo", "--web.config.file", str(path)],
                            capture_output=True, text=True, timeout=30, env=environment, cwd=ROOT)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "admin: the password must be a bcrypt hash" in lines[0]
    assert "hunter2" not in result.stderr


def test_tls_handshake_of_a_silent_client_does_not_block_others(pki: Pki, serve: Callable[[str], Exporter]) -> None:
    exporter = serve(tls_config(pki))
    silent = socket.create_connection(("127.0.0.1", exporter.http.port))  # connects, never says hello
    try:
        started = time.monotonic()
        assert get(exporter, context=client_context(pki))[0] == 200
        assert time.monotonic() - started < 2
    finally:
        silent.close()


def test_the_example_web_config_works(pki: Pki, tmp_path: Path) -> None:
    shutil.copy(ROOT / "web-config.example.yml", tmp_path / "web-config.yml")
    shutil.copy(pki.server_cert, tmp_path / "exporter.crt")
    shutil.copy(pki.server_key, tmp_path / "exporter.key")
    shutil.copy(pki.ca, tmp_path / "ca.crt")
    security = load_web_config(tmp_path / "web-config.yml")
    assert security.ssl_context is not None
    assert security.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert security.authorized(basic("prometheus", "change-me")["Authorization"])
    assert security.headers["X-Frame-Options"] == "deny"


def test_no_credential_can_borrow_another_ones_cache_entry() -> None:
    """A key built by joining user, hash and password with a separator let one crafted pair of
    requests log in without the password; the cache must keep credentials apart."""
    hashed = bcrypt.hashpw(b"the-real-password", bcrypt.gensalt(4))
    security = load_web_config_text(f"basic_auth_users:\n  prom: '{hashed.decode()}'\n")
    decoy = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"

    def header(user: bytes, password: bytes) -> str:
        return "Basic " + base64.b64encode(user + b":" + password).decode()

    assert not security.authorized(header(b"prom\0" + hashed + b"\0x", b"fakepassword"))
    assert not security.authorized(header(b"prom", b"x\0" + decoy + b"\0fakepassword"))
    assert security.authorized(header(b"prom", b"the-real-password"))


def test_a_flood_of_guesses_queues_a_bounded_number_of_checks() -> None:
    # Every guess used to wait its turn for bcrypt, holding its thread (and its connection, even
    # one closed for its slot meanwhile): a flood grew the threads without end.
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(12))  # about 250 ms per check
    security = load_web_config_text(f"basic_auth_users:\n  prom: '{hashed.decode()}'\n")
    started = time.perf_counter()
    assert not security.authorized(basic("prom", "wrong")["Authorization"])
    one_check = time.perf_counter() - started
    guesses = 30
    barrier = threading.Barrier(guesses)
    durations: list[float] = []

    def guess(attempt: int) -> None:
        barrier.wait()
        began = time.perf_counter()
        assert not security.authorized(basic("prom", f"wrong-{attempt}")["Authorization"])
        durations.append(time.perf_counter() - began)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(durations) == guesses
    refused_unchecked = sum(1 for duration in durations if duration < one_check / 2)
    # At most 8 wait their turn (web/auth.py: MAX_QUEUED_CHECKS); a few more may find a place freed meanwhile.
    assert refused_unchecked >= guesses - 12


def test_failed_guesses_cannot_evict_a_good_credential() -> None:
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(4))
    security = load_web_config_text(f"basic_auth_users:\n  prom: '{hashed.decode()}'\n")
    good = basic("prom", "right")["Authorization"]
    assert security.authorized(good)
    for attempt in range(300):
        assert not security.authorized(basic("prom", f"wrong-{attempt}")["Authorization"])
    assert security.auth.cached == 1  # the good credential is still remembered
    assert security.authorized(good)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8)
tls_keys = st.sampled_from(["cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
                            "client_allowed_sans", "min_version", "max_version", "cipher_suites",
                            "prefer_server_cipher_suites", "curve_preferences", "bogus"])


@given(st.fixed_dictionaries({}, optional={
    "tls_server_config": st.dictionaries(tls_keys, yaml_values, max_size=5) | yaml_values,
    "http_server_config": st.dictionaries(st.sampled_from(["http2", "headers", "x"]), yaml_values) | yaml_values,
    "basic_auth_users": st.dictionaries(st.text(max_size=8), yaml_values, max_size=3) | yaml_values,
    "rate_limit": st.dictionaries(st.sampled_from(["interval", "burst"]), yaml_values) | yaml_values,
}))
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_web_config_is_loaded_or_refused_with_one_line(tmp_path: Path, document: dict[str, object]) -> None:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_web_config(path)
    except WebConfigError as error:
        assert "\n" not in str(error)


def test_silent_clients_never_starting_tls_do_not_stop_a_scrape(pki: Pki, serve: Callable[[str], Exporter]) -> None:
    exporter = serve(tls_config(pki, f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"))
    silent = [socket.create_connection(("127.0.0.1", exporter.http.port)) for _ in range(100)]
    try:
        context = client_context(pki, pki.client_cert, pki.client_key)
        for _ in range(10):
            started = time.monotonic()
            assert get(exporter, context=context)[0] == 200
            assert time.monotonic() - started < 5
    finally:
        for sock in silent:
            sock.close()


def raw_basic(user: bytes, password: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user + b":" + password).decode()}


def test_a_password_over_72_bytes_is_refused_alike_for_every_user(serve: Callable[[str], Exporter]) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    exporter = serve(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    for user in (b"prometheus", b"nobody"):
        status, headers, _ = get(exporter, headers=raw_basic(user, b"p" * 100))
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert get(exporter, headers=basic("prometheus", PASSWORD))[0] == 200


def test_the_decoy_for_unknown_users_costs_what_the_configured_hashes_cost() -> None:
    cheap = bcrypt.hashpw(b"a", bcrypt.gensalt(4)).decode()
    dear = bcrypt.hashpw(b"b", bcrypt.gensalt(8)).decode()
    security = load_web_config_text(f"basic_auth_users:\n  one: '{cheap}'\n  two: '{dear}'\n")
    assert security.auth.decoy.split(b"$")[2] == b"08"
    assert not security.authorized(basic("nobody", "b")["Authorization"])


def test_loading_users_runs_no_bcrypt() -> None:
    """The decoy is a configured hash, not one made at load, where a high cost held start-up or a SIGHUP."""
    hashed = "$2y$20$X0h1gDsPszWURQaxFh.zoubFi6DXNSjdpwF8mn/5m.CP1gvZ..Tp2"
    started = time.perf_counter()
    security = load_web_config_text(f"basic_auth_users:\n  p: {hashed}\n")
    assert time.perf_counter() - started < 5  # one cost-20 bcrypt takes minutes
    assert security.auth.decoy == hashed.encode()


@pytest.mark.parametrize(("broken", "named"), [("cert", "server.crt"), ("key", "server.key"), ("ca", "ca.crt")])
def test_tls_errors_name_the_file_at_fault(pki: Pki, tmp_path: Path, broken: str, named: str) -> None:
    for source in (pki.server_cert, pki.server_key, pki.ca):
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / named).write_text("-----BEGIN GARBAGE-----\nnot PEM at all\n-----END GARBAGE-----\n")
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                    "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n")
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    assert str(tmp_path / named) in str(caught.value) and "PEM lib" not in str(caught.value)


def test_a_tls_connection_closed_for_its_slot_gives_its_descriptor_back_at_once(pki: Pki) -> None:
    security = load_web_config_text(tls_config(pki))
    server = HttpServer("127.0.0.1", 0, RecordingApp(), "test", security=security,
                        limits=Limits(max_connections=1, max_connections_per_address=1))
    server.start()
    context = client_context(pki)
    clients: list[ssl.SSLSocket] = []
    gc.disable()  # the leak was of descriptors only the garbage collector closed
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(12):  # idle once the handshake is done; beyond two, each evicts the oldest
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            clients.append(context.wrap_socket(raw, server_hostname="localhost"))
        wait_until(lambda: server.connections.evicted >= 10, message="the evictions")
        for client in clients:
            client.close()
        wait_until(lambda: len(server.connections) == 0, message="every connection to end")
        # The clients' sockets are closed; the server's must be too, without a collection.
        wait_until(lambda: len(os.listdir("/proc/self/fd")) <= before + 1, timeout=5,
                   message="the server's TLS sockets to be closed")
    finally:
        gc.enable()
        server.stop()
