"""Day-one operations as users meet them: SIGHUP reloads, honest start-up lines, demo marking, build labels."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfox_exporter import build, startup
from sfox_exporter.sfox.ratelimit import seconds_to_connect
from sfox_exporter.signals import Signals

from .conftest import http_get, scrape, scrape_until, wait_until
from .test_cli import read_stderr_until, serving_url, spawn

CONFIG = """
accounts:
  - {name: alpha, api_key_env: UNUSED_IN_DEMO}
thresholds:
  - {account: alpha, currency: usd, field: available, below: 10}
"""


@pytest.fixture
def demo_with_config(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    process = spawn("--demo", "--config.file", str(config), "--web.listen-address", "127.0.0.1:0",
                    "--web.enable-lifecycle")
    yield process, config
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=10)


def stderr_until(process: subprocess.Popen[str], needle: str) -> list[str]:
    return read_stderr_until(process, re.escape(needle))[1]


def test_sighup_reloads_the_config_file_and_a_bad_one_is_refused(
        demo_with_config: tuple[subprocess.Popen[str], Path]) -> None:
    process, config = demo_with_config
    url, _ = serving_url(process)
    samples = scrape_until(url, lambda s: s.get("sfox_feed_up", account="alpha") == 1)
    assert samples.get("sfox_exporter_demo_mode") == 1
    assert samples.get("sfox_exporter_config_last_reload_successful") == 1
    assert b"DEMO MODE" in http_get(url + "/")[2]

    config.write_text(CONFIG + "  - {account: alpha, currency: usd, field: held, above: 5000}\n")
    process.send_signal(signal.SIGHUP)
    lines = stderr_until(process, "config reloaded")
    # Both connections, the account's and the market-data one, are left alone.
    assert "SIGHUP" in lines[-1] and "unchanged: 2" in lines[-1] and "restarted" not in lines[-1]
    samples = scrape(url)
    assert samples.get("sfox_balance_high_threshold", account="alpha", currency="usd", field="held") == 5000
    assert samples.get("sfox_feed_up", account="alpha") == 1  # the process lives on

    config.write_text("accounts: [\n")
    process.send_signal(signal.SIGHUP)
    lines = stderr_until(process, "config reload (SIGHUP) failed")
    assert "not valid YAML" in lines[-1]
    samples = scrape(url)
    assert samples.get("sfox_exporter_config_last_reload_successful") == 0
    assert samples.get("sfox_balance_high_threshold", account="alpha", currency="usd", field="held") == 5000

    config.write_text(CONFIG)
    status, _, body = http_get(url + "/-/reload", method="POST")
    assert (status, body) == (200, b"config reloaded\n")
    wait_until(lambda: scrape(url).get("sfox_exporter_config_last_reload_successful") == 1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0


def test_start_up_names_the_wildcard_address_and_warns_once_when_unprotected() -> None:
    process = spawn("--demo", "--web.listen-address", "0.0.0.0:0")
    try:
        url, lines = serving_url(process)
        assert url.startswith("http://0.0.0.0:")
        assert "127.0.0.1" not in url
        scrape_until(url.replace("0.0.0.0", "127.0.0.1"), lambda s: s.get("sfox_feed_up", account="demo") == 1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        finally:
            if process.poll() is None:  # never a test that hangs: fail, and say so
                process.kill()
        # communicate() reads the pipe's file descriptor and would skip what readline() buffered.
        assert process.stderr is not None
        rest = process.stderr.read()
    assert process.returncode == 0
    everything = "".join(lines) + rest
    assert everything.count("without TLS or basic auth") == 1
    # The demo's user account, its enterprise account and the market-data connection.
    assert "3 sFOX connection(s) at 3 requests each" in everything


def test_no_exposure_warning_on_loopback_or_with_protection() -> None:
    assert startup.exposure_warning("127.0.0.1", 9841, tls=False, basic_auth=False) is None
    assert startup.exposure_warning("::1", 9841, tls=False, basic_auth=False) is None
    assert startup.exposure_warning("0.0.0.0", 9841, tls=True, basic_auth=False) is None
    assert startup.exposure_warning("0.0.0.0", 9841, tls=False, basic_auth=True) is None
    assert startup.exposure_warning("", 9841, tls=False, basic_auth=False) is not None
    assert startup.exposure_warning("10.0.0.5", 9841, tls=False, basic_auth=False) is not None
    assert startup.listen_address("::", 9841) == "[::]:9841"
    assert startup.listen_address("", 9841) == "0.0.0.0:9841"


def test_connection_spread_arithmetic() -> None:
    # 3 requests an attempt: 6 attempts fit 20 requests, so 10 accounts take one more window.
    assert seconds_to_connect(10, 3, 20, 61.0) == 61.0
    assert seconds_to_connect(6, 3, 20, 61.0) == 0.0
    assert seconds_to_connect(7, 3, 20, 61.0) == 61.0
    assert seconds_to_connect(13, 3, 20, 61.0) == 122.0
    assert seconds_to_connect(10, 3, 40, 61.0) == 0.0
    assert seconds_to_connect(1, 3, 2, 61.0) == float("inf")
    line = startup.budget_plan(10, 3, 20, 61.0, 61.0)
    assert "10 sFOX connection(s)" in line and "budget of 20" in line and "about 61s" in line


def test_revision_comes_from_the_environment_then_git_else_unknown(tmp_path: Path) -> None:
    assert build.revision_from({build.REVISION_ENV: "abc1234"}, tmp_path) == "abc1234"
    assert build.revision_from({build.REVISION_ENV: 'bad"value\n'}, tmp_path) == "unknown"
    assert build.revision_from({}, tmp_path) == "unknown"  # not a checkout
    package = Path(build.__file__).resolve().parent
    found = build.revision_from({}, package)
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()
    assert found == (head or "unknown")


def test_an_installed_package_inside_another_repository_has_no_revision(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "someone else's project"], check=True)
    installed = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages" / "sfox_exporter"
    installed.mkdir(parents=True)
    assert build.revision_from({}, installed) == "unknown"


def test_version_flag_shows_revision_and_python_version() -> None:
    process = spawn("--version", env={build.REVISION_ENV: "f00dfeed"})
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "revision f00dfeed" in out
    assert f"python {build.python_version()}" in out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_before_the_exporter_exists_exits_0_at_once(signum: int) -> None:
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        signals = Signals()  # as cli.main does first, before the config is read
        with pytest.raises(SystemExit) as exited:
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler runs at the next bytecode; this only bounds a failure
        assert exited.value.code == 0
        signals = Signals()
        signals.started()
        os.kill(os.getpid(), signum)
        wait_until(lambda: signals.stopping, message="the stop to be noted")  # and no exit: serve() stops it
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class NoReloader:
    reloader = None


def test_a_stop_delivered_to_another_thread_is_heeded_within_a_second() -> None:
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    main = threading.get_ident()
    served: list[float] = []

    def elsewhere() -> None:
        # The kernel may hand a process's signal to any thread that does not block it; CPython then
        # runs the handler in the main thread only when that one next runs Python code. So first
        # let the main thread settle into its wait (a moment here is the scenario, not a guess).
        time.sleep(1.0)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        if not served_event.wait(5):
            signal.pthread_kill(main, signal.SIGTERM)  # so that a failure fails, never hangs

    served_event = threading.Event()
    try:
        signals = Signals()
        signals.started()
        sender = threading.Thread(target=elsewhere)
        started = time.monotonic()
        sender.start()
        signals.serve(NoReloader())
        served.append(time.monotonic() - started)
        served_event.set()
        sender.join(10)
        assert served[0] < 2.5  # the moment above, and at most WAKE_SECONDS more
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
