"""Shared test helpers: a fake clock, condition waits with deadlines, and scraping /metrics."""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from prometheus_client.parser import text_string_to_metric_families

from sfox_exporter.app import Exporter
from sfox_exporter.config import (
    AccountConfig,
    Config,
    FeedConfig,
    KeySource,
    LogConfig,
    SfoxEndpoints,
    Threshold,
    ValuationConfig,
    WebConfig,
)
from sfox_exporter.simulator import Ledger, Simulator

# Hypothesis's per-example deadline (200 ms) times the machine, not the code: beside CPU hogs an
# example of 0.2 ms took 255 ms and failed the suite. Speed lives in benchmarks/, and the tests of
# time linear in size (test_hostile.py) bound it with margins of their own.
settings.register_profile("sfox", deadline=None)
settings.load_profile("sfox")

T = TypeVar("T")

KEY_MAIN = "test-key-main-0123456789abcdef"
KEY_OTHER = "test-key-other-0123456789abcdef"


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, wall: float = 1_750_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall
        self._monotonic = monotonic

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._monotonic += seconds


def wait_until(condition: Callable[[], T], timeout: float = 10.0, message: str = "") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or condition}")
        time.sleep(0.02)


class Samples:
    """The samples of one scrape, looked up by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples.append((sample.name, dict(sample.labels), sample.value))

    def get(self, name: str, **labels: str) -> float | None:
        matches = self.all(name, **labels)
        if len(matches) > 1:
            raise AssertionError(f"{name}{labels} matches {len(matches)} series")
        return matches[0][1] if matches else None

    def number(self, name: str, **labels: str) -> float:
        """The value, or NaN when absent, so that any comparison with a missing series is False."""
        value = self.get(name, **labels)
        return math.nan if value is None else value

    def all(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (sample_labels, value)
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        ]

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}


def scrape(base_url: str, path: str = "/metrics", headers: dict[str, str] | None = None) -> Samples:
    request = urllib.request.Request(base_url + path, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return Samples(response.read().decode())


def scrape_until(base_url: str, condition: Callable[[Samples], object], timeout: float = 10.0) -> Samples:
    """Scrape until `condition` holds for a scrape, and return that scrape."""
    found: list[Samples] = []

    def attempt() -> bool:
        samples = scrape(base_url)
        if condition(samples):
            found.append(samples)
            return True
        return False

    wait_until(attempt, timeout, f"scrape condition {condition}")
    return found[0]


def http_get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def make_config(
    simulator: Simulator | None = None,
    accounts: dict[str, str] | None = None,
    thresholds: tuple[Threshold, ...] = (),
    valuation: ValuationConfig | None = None,
    max_requests_per_minute: int = 40,
    **feed: Any,
) -> Config:
    """A config for tests: fast pings and backoff, listening on a free loopback port. Valuation is
    off unless asked for, so that tests of the account feeds see only account connections. The
    request budget is sFOX's whole 40 a minute, so that tests reconnecting often do not wait on it;
    the budget tests set the default share of 20 themselves."""
    accounts = accounts if accounts is not None else {"main": KEY_MAIN}
    environ = {f"KEY_{name.upper()}": key for name, key in accounts.items()}
    defaults: dict[str, Any] = {
        "ping_interval_seconds": 1.0,
        "ping_timeout_seconds": 1.0,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.5,
        "rest_timeout_seconds": 2.0,
    }
    return Config(
        web=WebConfig("127.0.0.1", 0),
        sfox=SfoxEndpoints(
            simulator.ws_url if simulator else "ws://127.0.0.1:9/ws",
            simulator.rest_url if simulator else "http://127.0.0.1:9",
            max_requests_per_minute=max_requests_per_minute,
        ),
        accounts=tuple(
            AccountConfig(name, KeySource(env=f"KEY_{name.upper()}", environ=environ)) for name in accounts
        ),
        feed=FeedConfig(**{**defaults, **feed}),
        thresholds=thresholds,
        log=LogConfig(),
        valuation=valuation if valuation is not None else ValuationConfig(enabled=False),
    )


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A simulator with two accounts that pushes only when a test asks."""
    with Simulator(
        {KEY_MAIN: Ledger.demo("main"), KEY_OTHER: Ledger.demo("other")}, push_interval=None
    ) as sim:
        yield sim


@pytest.fixture
def start_exporter() -> Iterator[Callable[..., Exporter]]:
    """Start exporters for a test and stop them all afterwards."""
    started: list[Exporter] = []

    def start(config: Config, **options: Any) -> Exporter:
        exporter = Exporter(config, **options)
        exporter.start()
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


def feed_up(exporter: Exporter, account: str = "main") -> Callable[[], bool]:
    return lambda: exporter.state.statuses()[account] == "up"


__all__ = ["FakeClock", "Samples", "http_get", "make_config", "replace", "scrape", "scrape_until", "wait_until"]
