"""The lean runtime metrics say what prometheus_client's ProcessCollector and PlatformCollector say."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from sfox_exporter.metrics.runtime import RuntimeMetrics


def reference() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def families(text: str) -> dict[str, tuple[str, str, dict[str, float]]]:
    return {f.name: (f.type, f.documentation, {s.name + str(sorted(s.labels.items())): s.value for s in f.samples})
            for f in text_string_to_metric_families(text)}


def test_same_names_help_types_labels_and_values() -> None:
    ours = families(RuntimeMetrics().render(False).decode())
    theirs = families(generate_latest(reference()).decode())
    assert ours.keys() == theirs.keys()
    for name, (kind, documentation, samples) in theirs.items():
        assert ours[name][0] == kind and ours[name][1] == documentation, name
        assert ours[name][2].keys() == samples.keys(), name
        for sample, value in samples.items():
            mine = ours[name][2][sample]
            if "cpu" in sample or "resident" in sample or "virtual" in sample or "open_fds" in sample:
                assert abs(mine - value) <= max(0.05 * value, 1.0), sample  # read a moment apart
            else:
                assert mine == value, sample


def test_openmetrics_form_parses() -> None:
    text = RuntimeMetrics().render(True).decode() + "# EOF\n"
    names = {f.name: f.type for f in parse_openmetrics(text)}
    assert names["process_cpu_seconds"] == "counter"
    assert names["python_info"] == "info" or names["python_info"] == "gauge"


def test_without_proc_only_python_info(tmp_path: Path) -> None:
    text = RuntimeMetrics(proc=tmp_path).render(False).decode()
    assert "process_" not in text and "python_info{" in text
