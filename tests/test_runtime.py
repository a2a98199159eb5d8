"""Process and Python metrics: prometheus_client's own collectors, on the registry the Exporter renders.

/metrics is the cached sfox_* part followed by the registry's output in the negotiated format; these
tests check that the two join into one valid body, text and OpenMetrics, plain and gzip.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from sfox_exporter.app import Exporter
from sfox_exporter.metrics.exposition import Exposition
from sfox_exporter.sfox.decode import AccountBalance, BalanceUpdate

from .conftest import Samples, make_config
from .test_collector import populated_state

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def fixed_registry() -> CollectorRegistry:
    """A registry whose output never changes, so that bodies can be compared byte for byte."""
    registry = CollectorRegistry()
    Gauge("embedder_queue_depth", "An embedder's own gauge.", ["queue"], registry=registry).labels("a").set(3)
    return registry


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    exporter = Exporter(make_config())  # never started: only its rendering is used
    yield exporter
    exporter.stop()


def test_text_body_is_the_sfox_part_then_the_registry() -> None:
    state = populated_state()
    registry = fixed_registry()
    body = Exposition(state, "1.2.3", registry).render(None, None).body
    alone = Exposition(state, "1.2.3", CollectorRegistry()).render(None, None).body
    assert body == alone + generate_latest(registry)
    samples = Samples(body.decode())
    assert samples.get("embedder_queue_depth", queue="a") == 3
    assert samples.get("sfox_balance", account="main", currency="btc") == 0.17572419


def test_openmetrics_body_has_one_eof_at_the_end() -> None:
    registry = fixed_registry()
    exposition = Exposition(populated_state(), "1.2.3", registry)
    for encoding in (None, "gzip"):
        rendered = exposition.render(OPENMETRICS, encoding)
        text = (gzip.decompress(rendered.body) if encoding else rendered.body).decode()
        assert text.count("# EOF") == 1 and text.endswith("\n# EOF\n"), encoding
        assert text.endswith(generate_openmetrics(registry).decode())
        families = {family.name: family for family in parse_openmetrics(text)}  # strict: rejects a stray EOF
        assert families["embedder_queue_depth"].samples[0].value == 3
        assert families["sfox_feed_messages"].type == "counter"


def test_openmetrics_without_other_collectors_still_ends_in_eof() -> None:
    text = Exposition(populated_state(), "1.2.3").render(OPENMETRICS, None).body.decode()
    assert text.count("# EOF") == 1 and text.endswith("# EOF\n")
    assert {family.name for family in parse_openmetrics(text)} >= {"sfox_balance", "sfox_exporter_build_info"}


def test_registry_is_read_on_every_scrape_while_the_sfox_part_is_cached() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("embedder_value", "Changes between scrapes.", registry=registry)
    exposition = Exposition(populated_state(), "1.2.3", registry)
    for encoding in (None, "gzip"):
        for value in (1.0, 2.0):
            gauge.set(value)
            rendered = exposition.render(None, encoding)
            text = (gzip.decompress(rendered.body) if encoding else rendered.body).decode()
            assert Samples(text).get("embedder_value") == value, (encoding, value)


def test_the_exporter_renders_its_own_registry(exporter: Exporter) -> None:
    Gauge("embedder_extra", "Registered after construction.", registry=exporter.registry).set(7)
    samples = Samples(exporter.render_metrics(None, None).body.decode())
    assert samples.get("embedder_extra") == 7
    assert samples.number("process_resident_memory_bytes") > 0
    assert samples.number("process_cpu_seconds_total") > 0
    assert samples.number("process_open_fds") > 0
    assert {"python_info", "python_gc_objects_collected_total"} <= samples.names()
    assert samples.get("sfox_feed_up", account="main") == 0


def test_an_injected_registry_gets_the_process_collectors() -> None:
    registry = CollectorRegistry()
    exporter = Exporter(make_config(), registry=registry)
    try:
        assert exporter.registry is registry
        assert b"process_start_time_seconds" in generate_latest(registry)
        assert b"sfox_" not in generate_latest(registry)  # rendered by Exposition, never twice
    finally:
        exporter.stop()


def test_two_exporters_in_one_process_do_not_collide(exporter: Exporter) -> None:
    other = Exporter(make_config())  # a shared registry would raise "Duplicated timeseries"
    try:
        assert other.registry is not exporter.registry
    finally:
        other.stop()


def test_process_metrics_match_a_plain_process_collector(exporter: Exporter) -> None:
    reference = CollectorRegistry()
    ProcessCollector(registry=reference)
    ours = Samples(exporter.render_metrics(None, None).body.decode())
    theirs = Samples(generate_latest(reference).decode())
    assert ours.number("process_start_time_seconds") == theirs.number("process_start_time_seconds")
    assert ours.number("process_max_fds") == theirs.number("process_max_fds")
    assert ours.types["process_cpu_seconds"] == theirs.types["process_cpu_seconds"] == "counter"


def test_gzip_text_decompresses_to_the_plain_body_modulo_live_values() -> None:
    state = populated_state()
    exposition = Exposition(state, "1.2.3", fixed_registry())
    plain = exposition.render(None, None).body
    assert gzip.decompress(exposition.render(None, "gzip").body) == plain
    state.ingest("main", BalanceUpdate(11, 1.7e9, (AccountBalance("btc", 9.0, 9.0, 0.0, ()),), (), 0))
    changed = gzip.decompress(exposition.render(None, "gzip").body)
    assert changed == exposition.render(None, None).body != plain
