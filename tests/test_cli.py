"""The program as users run it: a real process, real signals, real ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfox_exporter.command import parse_args

from .conftest import Samples, scrape, scrape_until, wait_until

ROOT = Path(__file__).resolve().parent.parent


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SFOX_")}
    environment.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "sfox_exporter", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment, cwd=ROOT)


def read_stderr_until(process: subprocess.Popen[str], pattern: str,
                      timeout: float = 10) -> tuple[re.Match[str], list[str]]:
    """Lines of stderr up to the first that matches `pattern`; fails after `timeout` even if the
    process goes quiet (a bare readline() would wait for ever)."""
    assert process.stderr is not None
    stream = process.stderr
    lines: list[str] = []
    found: list[re.Match[str]] = []
    done = threading.Event()

    def read() -> None:
        for line in stream:
            lines.append(line)
            match = re.search(pattern, line)
            if match:
                found.append(match)
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(timeout) or not found:
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s in:\n" + "".join(lines))
    return found[0], list(lines)


def serving_url(process: subprocess.Popen[str], timeout: float = 10) -> tuple[str, list[str]]:
    """Read stderr until the exporter says where it serves."""
    match, lines = read_stderr_until(process, r"serving (https?://[^/\s]+)/metrics", timeout)
    return match.group(1), lines


@pytest.fixture
def demo() -> Iterator[subprocess.Popen[str]]:
    process = spawn("--demo", "--web.listen-address", "127.0.0.1:0")
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


def test_demo_mode_is_said_whatever_the_log_level() -> None:
    """With --log.level error the DEMO MODE line, a warning, was filtered out: no word of it."""
    process = spawn("--demo", "--log.level", "error", "--web.listen-address", "127.0.0.1:0")
    try:
        match, _ = read_stderr_until(process, r"level=\w+ .*DEMO MODE", 10)
        assert match
    finally:
        process.kill()
        process.communicate(timeout=10)


def test_demo_serves_balances_within_5_seconds(demo: subprocess.Popen[str]) -> None:
    started = time.monotonic()
    url, lines = serving_url(demo)
    assert any("DEMO MODE" in line for line in lines)  # never silently simulated

    def complete(samples: Samples) -> bool:
        wallets = samples.all("sfox_wallet_balance")
        currencies_with_all_wallets = {
            labels["currency"] for labels, _ in wallets
            if {w["wallet"] for w, _ in wallets if w["currency"] == labels["currency"]}
            >= {"trading", "collateral", "borrow", "lending"}
        }
        return len(currencies_with_all_wallets) >= 3 and bool(samples.all("sfox_web3_wallet_balance"))

    samples = scrape_until(url, complete, timeout=5.0 - (time.monotonic() - started))
    assert samples.get("sfox_feed_up", account="demo") == 1


def test_sigterm_exits_0_within_5_seconds(demo: subprocess.Popen[str]) -> None:
    url, _ = serving_url(demo)
    wait_until(lambda: scrape(url).get("sfox_feed_up", account="demo") == 1)
    started = time.monotonic()
    demo.send_signal(signal.SIGTERM)
    assert demo.wait(timeout=5) == 0
    assert time.monotonic() - started < 5


def test_a_demo_reload_that_adds_an_account_serves_it(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("accounts: [{name: alpha, api_key_env: UNUSED}]\n")
    process = spawn("--demo", "--config.file", str(config), "--web.listen-address", "127.0.0.1:0")
    try:
        url, _ = serving_url(process)
        wait_until(lambda: scrape(url).get("sfox_feed_up", account="alpha") == 1)
        config.write_text("accounts: [{name: alpha, api_key_env: UNUSED}, {name: beta, api_key_env: UNUSED}]\n")
        process.send_signal(signal.SIGHUP)
        samples = scrape_until(url, lambda s: s.get("sfox_feed_up", account="beta") == 1
                               and bool(s.all("sfox_balance", account="beta")), timeout=15)
        assert samples.get("sfox_feed_errors_total", account="beta", reason="auth") == 0
        assert samples.get("sfox_exporter_config_last_reload_successful") == 1
    finally:
        process.kill()
        process.communicate(timeout=10)


def test_port_in_use_exits_1_with_a_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = spawn("--web.listen-address", f"127.0.0.1:{port}", env={"SFOX_API_KEY": "k" * 20,
                                                                          "SFOX_WS_URL": "ws://127.0.0.1:9/ws"})
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["--config", "c.yaml"], "unrecognized arguments: --config c.yaml"),  # no abbreviations, as Go's flag parsers
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--config.file="], "argument --config.file: an empty value"),  # "$UNSET" must not mean "no config"
    (["--web.listen-address", " "], "argument --web.listen-address: an empty value"),
    (["--web.listen-address"], "argument --web.listen-address: expected one argument"),
])
def test_a_bad_flag_is_one_line_and_status_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error == f"sfox-exporter: {message} (see --help)\n"
