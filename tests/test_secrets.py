"""A canary API key, driven through every failure path, shows up nowhere."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sfox_exporter.app import Exporter
from sfox_exporter.config import ConfigError, Overrides, load_config
from sfox_exporter.logs import JsonFormatter, LogfmtFormatter, Redactor
from sfox_exporter.simulator import Ledger, Simulator

from .conftest import feed_up, http_get, make_config, scrape_until, wait_until

CANARY = "CANARYKEY-7c1d0e5a9b3f4e2d8a6c1b0f9e8d7c6b5a4f3e2d"
ROOT = Path(__file__).resolve().parent.parent


def leaks(text: str) -> bool:
    return CANARY in text or CANARY[10:30] in text


def test_canary_through_every_failure_path(start_exporter: Callable[..., Exporter],
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Simulator({CANARY: Ledger.demo("main")}, push_interval=None) as simulator:
        simulator.reject_auth(CANARY)  # auth error, and REST 401 for the rejected key
        exporter = start_exporter(make_config(simulator, {"main": CANARY}, ping_interval_seconds=0.3,
                                              ping_timeout_seconds=0.3))
        wait_until(lambda: len(simulator.requests("authenticate")) >= 2)
        wait_until(lambda: any(r.status == 401 for r in simulator.rest_requests()))
        simulator.fail_rest(429, retry_after="0")
        simulator.fail_rest(500)
        simulator.reject_auth(CANARY, False)
        wait_until(feed_up(exporter))
        wait_until(lambda: exporter.snapshots["main"].completed >= 1, timeout=15)
        simulator.drop_connections()  # dropped connection
        wait_until(lambda: len(simulator.requests("subscribe")) >= 2)
        wait_until(feed_up(exporter))
        simulator.half_open()  # missing pong
        wait_until(lambda: len(simulator.requests("subscribe")) >= 3)
        wait_until(feed_up(exporter))
        simulator.send_raw("not json " + CANARY[:5])
        scrape_until(exporter.url, lambda s: s.number("sfox_feed_errors_total", account="main", reason="decode") >= 1)
        bodies = [http_get(exporter.url + path)[2].decode() for path in ("/metrics", "/", "/healthz", "/readyz")]
        bodies.append(http_get(exporter.url + "/metrics", {"Accept": "application/openmetrics-text"})[2].decode())
        representations = [repr(exporter.config), repr(exporter.feeds[0].__dict__), repr(exporter.snapshots)]

    reasons = {r.getMessage() for r in caplog.records}
    assert any("rejected the API key" in m for m in reasons)  # the paths were really taken
    assert any("HTTP 401" in m for m in reasons) and any("HTTP 429" in m for m in reasons)
    assert any("HTTP 500" in m for m in reasons) and any("no pong" in m for m in reasons)
    bare = Redactor()  # no redaction: the key must not be there to begin with
    for record in caplog.records:
        if record.name.startswith("sfox_exporter.simulator"):
            continue  # the sFOX side of the conversation, which must of course see the key
        for formatter in (LogfmtFormatter(bare), JsonFormatter(bare)):
            assert not leaks(formatter.format(record)), record.getMessage()
    for text in bodies + representations:
        assert not leaks(text)


def test_redactor_scrubs_a_key_that_slips_into_a_message() -> None:
    redactor = Redactor()
    redactor.add(CANARY)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "library said: bad key %s", (CANARY,), None)
    assert not leaks(LogfmtFormatter(redactor).format(record))
    assert "[REDACTED]" in JsonFormatter(redactor).format(record)


def test_redactor_hides_the_longer_of_two_keys_that_overlap() -> None:
    redactor = Redactor()
    redactor.add(CANARY[:20])
    redactor.add(CANARY)
    assert redactor.redact(f"key {CANARY} and {CANARY[:20]}") == "key [REDACTED] and [REDACTED]"


@pytest.mark.parametrize(("bad_key", "said"), [(CANARY + " tail", "whitespace or control characters"),
                                               (CANARY + "\u0007", "whitespace or control characters"),
                                               (CANARY + "\u2713", "other than ASCII")])
def test_config_errors_about_a_key_do_not_quote_it(tmp_path: Path, bad_key: str, said: str) -> None:
    """A key of other than ASCII passed, then failed every REST call with UnicodeEncodeError, which
    named one of its characters and where it stood."""
    key_file = tmp_path / "key"
    key_file.write_text(bad_key)
    with pytest.raises(Exception) as caught:
        load_config(Overrides(), {"SFOX_API_KEY_FILE": str(key_file)})
    assert said in str(caught.value)
    assert not leaks(str(caught.value))


# A key pasted into the wrong place: config errors quote what the user wrote, but never a key.
PASTED = "a3f9c2e1d4b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1"  # shaped like an sFOX key


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        pytest.param(f"accounts: [{{name: main, api_key_env: {PASTED}}}]\n", {"MY_KEY": PASTED},
                     "accounts[0]: environment variable", id="key as the variable name, key also in env"),
        pytest.param(f"accounts: [{{name: main, api_key_env: {PASTED}}}]\n", {},
                     "accounts[0]: environment variable", id="key as the variable name, only in the file"),
        pytest.param(f"accounts: [{{name: main, api_key_env: MY_KEY, {PASTED}: 1}}]\n", {"MY_KEY": PASTED},
                     "unknown key", id="key as a field name"),
        pytest.param(f"accounts: [{{name: 'main {PASTED}', api_key_env: MY_KEY}}]\n", {"MY_KEY": PASTED},
                     "accounts[0].name", id="key inside the account name"),
        pytest.param(f"accounts: [{{name: main, api_key_env: SFOX_MAIN}}, {{name: x, api_key_file: {PASTED}}}]\n",
                     {"SFOX_MAIN": PASTED}, "accounts[1]: key file", id="key as a file path"),
        pytest.param(None, {"SFOX_API_KEY_FILE": PASTED}, "SFOX_API_KEY_FILE: key file",
                     id="key in SFOX_API_KEY_FILE"),
        pytest.param(f"web: {{listen_address: {PASTED}}}\n", {"SFOX_API_KEY": PASTED},
                     "web.listen_address", id="key as the listen address"),
    ],
)
def test_a_key_pasted_into_the_wrong_place_is_not_echoed(tmp_path: Path, text: str | None, env: dict[str, str],
                                                           expected: str) -> None:
    config_file = None
    if text is not None:
        config_file = tmp_path / "config.yaml"
        config_file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(Overrides(config_file=str(config_file) if config_file else None), env)
    message = str(caught.value)
    assert expected in message
    assert PASTED not in message and PASTED[:16] not in message


def test_ordinary_names_and_paths_are_still_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(Overrides(), {"SFOX_API_KEY_FILE": "/run/secrets/sfox_main_2024"})
    assert "/run/secrets/sfox_main_2024 does not exist" in str(caught.value)
    config_file = tmp_path / "config.yaml"
    config_file.write_text("accounts: [{name: main, api_key_env: SFOX_KEY_MAIN_ACCOUNT_2024}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(Overrides(config_file=str(config_file)), {})
    assert "SFOX_KEY_MAIN_ACCOUNT_2024 is not set" in str(caught.value)


def test_debug_logging_of_a_real_process_never_shows_the_key() -> None:
    with Simulator({CANARY: Ledger.demo("main")}, push_interval=0.2) as simulator:
        simulator.reject_auth(CANARY)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SFOX_")}
        environment.update(SFOX_API_KEY=CANARY, SFOX_WS_URL=simulator.ws_url, SFOX_REST_URL=simulator.rest_url)
        process = subprocess.Popen(
            [sys.executable, "-m", "sfox_exporter", "--log.level", "debug", "--log.format", "json",
             "--web.listen-address", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, cwd=ROOT)
        try:
            wait_until(lambda: len(simulator.requests("authenticate")) >= 2)
            simulator.reject_auth(CANARY, False)
            wait_until(lambda: simulator.subscriber_count() >= 1)
            simulator.fail_rest(500)
            simulator.drop_connections()
            wait_until(lambda: len(simulator.requests("subscribe")) >= 2)
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert '"level": "debug"' in stderr  # debug lines were really written
    assert not leaks(stdout + stderr)
