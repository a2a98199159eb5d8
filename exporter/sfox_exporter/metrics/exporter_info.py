"""The exporter's own state as metrics: demo mode and the outcome of the last config (re)load.

Process-wide single values rather than per-account rows, so they are a prometheus_client Collector
rendered on every scrape after the cached sfox_* families, instead of rows of the account table in
table.py. They are kept off the embedder's registry, which holds no sfox_* family.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from sfox_exporter.clock import Clock

DEMO_MODE = "sfox_exporter_demo_mode"
RELOAD_SUCCESSFUL = "sfox_exporter_config_last_reload_successful"
RELOAD_TIMESTAMP = "sfox_exporter_config_last_reload_success_timestamp_seconds"


class ExporterInfo(Collector):
    """Thread-safe: reloads write, scrapes read."""

    def __init__(self, demo: bool, clock: Clock) -> None:
        self.demo = demo
        self._clock = clock
        self._lock = threading.Lock()
        self._successful = True  # the config in use loaded, or the exporter would not be running
        self._success_time = clock.time()

    def reloaded(self, successful: bool) -> None:
        with self._lock:
            self._successful = successful
            if successful:
                self._success_time = self._clock.time()

    @property
    def last_reload_successful(self) -> bool:
        with self._lock:
            return self._successful

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            successful, success_time = self._successful, self._success_time
        yield GaugeMetricFamily(DEMO_MODE, "1 when serving the built-in sFOX simulator (--demo), else 0.",
                                value=1.0 if self.demo else 0.0)
        yield GaugeMetricFamily(RELOAD_SUCCESSFUL, "1 when the last config (re)load succeeded, else 0.",
                                value=1.0 if successful else 0.0)
        yield GaugeMetricFamily(RELOAD_TIMESTAMP, "Time of the last successful config (re)load.",
                                value=success_time)


class _Delegate(Collector):
    """Another registry's collectors, as one collector."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


def with_registry(info: ExporterInfo, registry: CollectorRegistry) -> CollectorRegistry:
    """A registry rendering `info`, then whatever `registry` holds now or later."""
    combined = CollectorRegistry()
    combined.register(info)
    combined.register(_Delegate(registry))
    return combined
