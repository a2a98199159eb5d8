"""The landing page's balances, rendered by a real browser: Debian's headless chromium takes a
screenshot and dumps the DOM, which must hold the table with prices and values.

Without chromium these tests skip, unless SFOX_REQUIRE_CHROMIUM=1 (as in CI) makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sfox_exporter.app import Exporter
from sfox_exporter.config import Threshold, ValuationConfig
from sfox_exporter.simulator import Simulator
from tests.conftest import KEY_MAIN, http_get, make_config, scrape_until, wait_until

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("SFOX_REQUIRE_CHROMIUM") == "1":
        pytest.fail("chromium is not installed, and SFOX_REQUIRE_CHROMIUM=1")
    pytest.skip("chromium is not installed")


def run_chromium(binary: str, profile: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
                          capture_output=True, text=True, timeout=90, check=False)


def valued_exporter(simulator: Simulator, start: Callable[..., Exporter]) -> Exporter:
    thresholds = (Threshold("main", "usd", "available", below=10_000_000.0),)  # breached: highlighted
    config = make_config(simulator, thresholds=thresholds, valuation=ValuationConfig())
    exporter = start(config)
    scrape_until(exporter.url, lambda s: s.get("sfox_market_feed_up") == 1.0
                 and s.get("sfox_feed_up", account="main") == 1.0)
    simulator.push_all(KEY_MAIN)
    prices = (("btcusd", 50000.0), ("ethbtc", 0.05), ("solusd", 150.0), ("usdtusd", 1.0), ("usdtusdc", 1.0))
    # A price is pushed once, to the subscribers of its pair: wait until every pair has one.
    wait_until(lambda: {f"ticker.sfox.{pair}" for pair, _ in prices} <= set(simulator.market.subscribed_feeds()),
               message="the market-data connection subscribed to every pair")
    for pair, last in prices:
        simulator.market.set_price(pair, last)
    scrape_until(exporter.url, lambda s: s.get("sfox_account_unpriced_currencies", account="main", quote="usd") == 0)
    return exporter


def test_landing_page_is_safe_and_shows_values(simulator: Simulator, start_exporter: Callable[..., Exporter]) -> None:
    exporter = valued_exporter(simulator, start_exporter)
    status, headers, body = http_get(exporter.url + "/")
    page = body.decode()
    assert status == 200
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "http://" not in page.replace(exporter.url, "") and "https://" not in page  # no external asset
    assert 'id="total-value"' in page and 'class="breach"' in page
    assert "<td>btc</td><td>" in page and "50,000</td>" in page


def test_landing_page_escapes_labels(simulator: Simulator, start_exporter: Callable[..., Exporter]) -> None:
    exporter = start_exporter(make_config(simulator, accounts={"<b>x</b>": KEY_MAIN}, valuation=ValuationConfig()))
    simulator.push_all(KEY_MAIN)
    _, _, body = http_get(exporter.url + "/")
    assert "<b>x</b>" not in body.decode() and "&lt;b&gt;x&lt;/b&gt;" in body.decode()


def test_headless_chromium_renders_the_balances(simulator: Simulator, start_exporter: Callable[..., Exporter],
                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = chromium()
    exporter = valued_exporter(simulator, start_exporter)
    screenshot = tmp_path / "landing.png"
    shot = run_chromium(binary, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1280,1400",
                        exporter.url + "/")
    assert screenshot.exists(), shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one
    with capsys.disabled():
        print(f"\nlanding page screenshot: {screenshot}")
    dom = run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", exporter.url + "/").stdout
    assert '<section id="balances">' in dom
    assert re.search(r'<table class="bal" data-account="main">', dom)
    assert re.search(r"<td>btc</td><td>[\d,.]+</td>", dom)
    assert re.search(r'id="total-value">[1-9][\d,]*\.\d\d<', dom)
    assert 'class="breach"' in dom
