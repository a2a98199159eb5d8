"""The sfox_* metrics as a prometheus_client Collector, for anyone who renders with prometheus_client.

/metrics itself is rendered by exposition.py, which is faster; this Collector is the reference it is
tested against (tests/test_collector.py), and the way to put the sfox_* families on a registry of
one's own. Both walk the same table (table.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sfox_exporter.build import build_labels
from sfox_exporter.metrics.state import Snapshot, State
from sfox_exporter.metrics.table import BUILD_INFO, METRICS, MetricDef, samples_of


class SfoxCollector(Collector):
    """Renders one consistent snapshot of the state per collect()."""

    def __init__(self, state: State, version: str) -> None:
        self._state = state
        self._version = version

    def describe(self) -> Iterator[Metric]:
        # Names only, so that registering does not take a snapshot.
        for metric in (*METRICS, BUILD_INFO):
            yield _family(metric)

    def collect(self) -> Iterator[Metric]:
        yield from families(self._state.snapshot(), self._version)


def families(snapshot: Snapshot, version: str) -> Iterator[Metric]:
    for metric in METRICS:
        family = _family(metric)
        for labels, value in samples_of(metric, snapshot):
            family.add_metric(labels, value)
        yield family
    build_info = _family(BUILD_INFO)
    build_info.add_metric(build_labels(version), 1.0)
    yield build_info


def _family(metric: MetricDef) -> GaugeMetricFamily | CounterMetricFamily:
    if metric.type == "counter":
        return CounterMetricFamily(metric.family_name, metric.help, labels=metric.labels)
    return GaugeMetricFamily(metric.name, metric.help, labels=metric.labels)
