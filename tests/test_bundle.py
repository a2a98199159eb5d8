"""The monitoring and deployment bundle, checked without a running Prometheus: generated files are
current, every alert has a runbook section, dashboards are importable and provisionable, and the
Kubernetes manifests and systemd unit are valid."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from monitoring import __main__ as generator
from monitoring.grafana import GRAFANA_VERSION, SCHEMA_VERSION
from monitoring.rules import ALERTS

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
CRDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))


def test_committed_generated_files_are_current() -> None:
    assert generator.stale() == [], "run: python -m monitoring"


def test_a_changed_rule_makes_the_check_fail(tmp_path: Path) -> None:
    rules = ROOT / "prometheus" / "rules" / "sfox-alerts.yml"
    target = next(path for path in generator.outputs() if path == rules)
    assert generator.outputs()[target]() == rules.read_text()
    assert generator.outputs()[target]() != rules.read_text().replace("SfoxFeedDown", "SfoxFeedGone")


def test_every_alert_links_to_its_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    sections = {heading.lower() for heading in re.findall(r"(?m)^## (\w+)$", runbook)}
    rules = yaml.safe_load((ROOT / "prometheus" / "rules" / "sfox-alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert len(alerts) == len(ALERTS) >= 12
    for rule in alerts:
        url = rule["annotations"]["runbook_url"]
        assert url.split("#")[0].endswith("docs/runbook.md"), url
        assert url.split("#")[1] in sections, f"{rule['alert']}: no section {url}"
        assert rule["labels"]["severity"] in {"warning", "critical"}


def test_the_three_rule_formats_agree() -> None:
    rules = yaml.safe_load((ROOT / "prometheus" / "rules" / "sfox-alerts.yml").read_text())
    manifest = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml").read_text())
    assert manifest["spec"]["groups"] == rules["groups"]
    grafana = yaml.safe_load((ROOT / "grafana" / "provisioning" / "alerting" / "sfox-alerts.yml").read_text())
    exprs = {rule["title"]: rule["data"][0]["model"]["expr"] for group in grafana["groups"] for rule in group["rules"]}
    prometheus = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]
                  if "alert" in rule}
    assert exprs == prometheus


def test_no_alert_expression_matches_a_job_name_only() -> None:
    for alert in ALERTS:
        assert 'job="' not in alert.expr, alert.name  # fires whatever the scrape job is called


def _walk(value: Any) -> list[Any]:
    found = [value]
    if isinstance(value, dict):
        for item in value.values():
            found += _walk(item)
    elif isinstance(value, list):
        for item in value:
            found += _walk(item)
    return found


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboards_use_the_datasource_variable_and_have_job_and_instance(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    # Import inputs would write the data source picked into every panel and leave the variable dead.
    assert "__inputs" not in dashboard
    grafana = next(item for item in dashboard["__requires"] if item["id"] == "grafana")
    assert grafana["version"] == GRAFANA_VERSION and dashboard["schemaVersion"] == SCHEMA_VERSION
    variables = {item["name"]: item for item in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance", "account"} <= set(variables)
    assert variables["datasource"]["type"] == "datasource"
    sources = [node["datasource"] for node in _walk(dashboard) if isinstance(node, dict) and "datasource" in node]
    assert sources and all(source == {"type": "prometheus", "uid": "${datasource}"} for source in sources)
    for node in _walk(dashboard):
        if isinstance(node, dict) and node.get("type") not in (None, "row", "text") and "gridPos" in node:
            assert node.get("datasource"), f"{node['title']} has no data source"
            for target in node["targets"]:
                assert '$job' in target["expr"] and '$instance' in target["expr"], (node["title"], target["expr"])
    used = {item["id"] for item in dashboard["__requires"] if item["type"] == "panel"}
    assert used == {node["type"] for node in _walk(dashboard["panels"]) if isinstance(node, dict)
                    and "gridPos" in node and node["type"] != "row"}


def test_the_balances_dashboard_shows_demo_valuation_and_connect() -> None:
    dashboard = json.loads((ROOT / "grafana" / "dashboards" / "sfox-balances.json").read_text())
    exprs = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []))
    for metric in ("sfox_exporter_demo_mode", "sfox_account_value", "sfox_price", "sfox_price_updated_timestamp",
                   "sfox_account_unpriced_currencies", "sfox_end_users_balance", "sfox_end_users_holding",
                   "sfox_end_users{", "sfox_balance_high_threshold"):
        assert metric in exprs, metric


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


@pytest.mark.parametrize("path", KUBERNETES, ids=lambda path: path.name)
def test_kubernetes_manifests_are_valid(path: Path) -> None:
    documents = _documents(path)
    assert documents
    for document in documents:
        if document["kind"] in CRDS:
            assert document["apiVersion"] == "monitoring.coreos.com/v1"
            assert document["metadata"]["name"]
            spec = document["spec"]
            if document["kind"] == "PrometheusRule":
                assert all(group["name"] and group["rules"] for group in spec["groups"])
            else:
                endpoints = spec["podMetricsEndpoints" if document["kind"] == "PodMonitor" else "endpoints"]
                assert spec["selector"]["matchLabels"] and all(endpoint["port"] == "metrics" for endpoint in endpoints)
        else:
            kubernetes_validate.validate(document, "1.30", strict=True)


def test_sidecar_readiness_is_healthz_and_standalone_is_readyz() -> None:
    def exporter_container(path: str) -> dict[str, Any]:
        deployment = next(d for d in _documents(ROOT / "deploy" / "kubernetes" / path) if d["kind"] == "Deployment")
        return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "sfox-exporter")

    for path, readiness in (("sidecar.yaml", "/healthz"), ("standalone.yaml", "/readyz")):
        container = exporter_container(path)
        assert container["readinessProbe"]["httpGet"]["path"] == readiness
        assert container["resources"]["limits"]["memory"] == "128Mi"
        assert container["resources"]["requests"]["memory"] == "48Mi"


def test_the_monitors_select_the_pods_and_service_of_the_manifests() -> None:
    pod_monitor = _documents(ROOT / "deploy" / "kubernetes" / "podmonitor.yaml")[0]
    sidecar = next(d for d in _documents(ROOT / "deploy" / "kubernetes" / "sidecar.yaml") if d["kind"] == "Deployment")
    pod_labels = sidecar["spec"]["template"]["metadata"]["labels"]
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service_monitor = _documents(ROOT / "deploy" / "kubernetes" / "servicemonitor.yaml")[0]
    service = next(d for d in _documents(ROOT / "deploy" / "kubernetes" / "standalone.yaml") if d["kind"] == "Service")
    assert service_monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["name"] == "metrics"


def test_the_systemd_unit_is_hardened() -> None:
    unit = (ROOT / "deploy" / "systemd" / "sfox-exporter.service").read_text()
    for setting in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "LoadCredential=sfox-api-key:",
                    "CapabilityBoundingSet=\n", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert setting in unit, setting
    # ProcSubset=pid hides /proc/stat, without which prometheus_client exports no process_* metric.
    assert "\nProcSubset=" not in unit
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run([analyze, "verify", "--man=no", str(ROOT / "deploy" / "systemd" / "sfox-exporter.service")],
                            capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if "sfox-exporter.service" in line
              and "is not executable" not in line and "Command " not in line]
    assert not errors, result.stderr
