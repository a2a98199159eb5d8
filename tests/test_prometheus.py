"""The monitoring bundle, proven against a real Prometheus scraping the exporter and its simulator.

Needs Debian's `prometheus` package (prometheus and promtool on PATH); `.ci/run` installs it. Without
it these tests skip, unless SFOX_REQUIRE_PROMETHEUS=1 (as in CI) turns the skip into a failure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sfox_exporter.app import Exporter
from sfox_exporter.config import AccountKind, Threshold, ValuationConfig
from sfox_exporter.simulator import Ledger, Simulator
from sfox_exporter.simulator.enterprise import END_USERS_FEED, EnterpriseLedger

from .conftest import make_config, wait_until

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "rules" / "sfox-alerts.yml"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
GRAFANA_ALERTS = ROOT / "grafana" / "provisioning" / "alerting" / "sfox-alerts.yml"
KEYS = {"main": "prom-key-main-0123456789", "rejected": "prom-key-rejected-0123456789",
        "quiet": "prom-key-quiet-0123456789"}
# What Grafana would put in place of each variable, with "All" selected.
SUBSTITUTIONS = {"job": ".*", "instance": ".*", "account": ".*",
                  "currency": ".*", "__rate_interval": "15s", "__interval": "5s",
                 "__range": "1m", "datasource": "prometheus"}
KEY_PLATFORM = "prom-key-platform-0123456789"
SFOX_DOC_TIMESTAMP = 1649899310281716289  # April 2022, from sFOX's own example

pytestmark = pytest.mark.prometheus


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("SFOX_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(f"{binary} is not installed, and SFOX_REQUIRE_PROMETHEUS=1")
        pytest.skip(f"{binary} is not installed (apt-get install prometheus)")
    return path


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([require("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run([require("promtool"), "test", "rules", "prometheus/tests/sfox-alerts.test.yml"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_accepts_the_deploy_config() -> None:
    result = subprocess.run([require("promtool"), "check", "config", "deploy/prometheus.yml"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "17 rules found" in result.stdout  # the rules are found through the relative path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.get("/api/v1/query", query=expr)["result"]  # type: ignore[no-any-return]

    def firing(self, alertname: str) -> list[dict[str, str]]:
        return [alert["labels"] for alert in self.get("/api/v1/alerts")["alerts"]
                if alert["labels"]["alertname"] == alertname and alert["state"] == "firing"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Simulator, Exporter]]:
    """Simulator, exporter and Prometheus, with one account healthy, one whose key sFOX rejects and
    one that got a single balance message, long ago."""
    binary = require("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    enterprise = {KEY_PLATFORM: EnterpriseLedger("platform", users=50)}
    with Simulator({key: Ledger.demo(name) for name, key in KEYS.items()}, enterprise=enterprise,
                   push_interval=None) as simulator:
        # Like --demo: user accounts, an enterprise account (sFOX Connect) and valuation.
        config = make_config(simulator, {**KEYS, "platform": KEY_PLATFORM}, thresholds=(
            Threshold("main", "usd", "available", 1000), Threshold("main", "btc", "balance", 0.01),
            Threshold("main", "usd", "held", above=1.0),  # held funds above a ceiling
            Threshold("quiet", "eth", "held", 100)), valuation=ValuationConfig())  # already low
        config = dataclasses.replace(config, accounts=tuple(
            dataclasses.replace(account, kind=AccountKind.ENTERPRISE) if account.name == "platform" else account
            for account in config.accounts))
        exporter = Exporter(config)
        exporter.start()
        wait_until(lambda: simulator.subscriber_count(KEYS["main"]) and simulator.subscriber_count(KEYS["quiet"])
                   and simulator.subscriber_count(KEY_PLATFORM))
        simulator.push_all(KEYS["main"])
        simulator.push(KEYS["quiet"], simulator.ledger(KEYS["quiet"]).feed_entries(["eth"]),
                       timestamp=SFOX_DOC_TIMESTAMP)
        for payload in simulator.enterprise[KEY_PLATFORM].payloads():
            simulator.push(KEY_PLATFORM, payload, recipient=END_USERS_FEED)
        # A price is pushed once, to the subscribers of its pair: wait until every pair has one.
        prices = (("btcusd", 50000.0), ("ethbtc", 0.05), ("solusd", 150.0), ("usdtusd", 1.0), ("usdtusdc", 1.0))
        wait_until(lambda: {f"ticker.sfox.{pair}" for pair, _ in prices} <= set(simulator.market.subscribed_feeds()))
        for pair, last in prices:
            simulator.market.set_price(pair, last)

        # Every `for:` shortened, so alerts fire within seconds; the expressions are the shipped ones.
        rules = re.sub(r"(?m)^(\s+for:)\s*\S+", r"\1 0s", RULES.read_text())
        (workdir / "rules.yml").write_text(rules)
        exporter_target = exporter.url.removeprefix("http://")
        (workdir / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [{"job_name": "sfox-exporter", "static_configs": [
                {"targets": [exporter_target, f"127.0.0.1:{free_port()}"]}]}],  # the second is dead
        }))
        port = free_port()
        process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        prometheus = Prometheus(f"http://127.0.0.1:{port}")
        try:
            def ready() -> bool:
                try:
                    return len(prometheus.query('count_over_time(sfox_feed_up{account="main"}[1m]) >= 3')) == 1
                except OSError:
                    return False

            wait_until(ready, timeout=30, message="Prometheus scraped the exporter three times")
            # The key is rejected only now, so that Prometheus sees the auth errors grow.
            simulator.reject_auth(KEYS["rejected"])
            simulator.drop_connections(KEYS["rejected"])
            wait_until(lambda: prometheus.query('increase(sfox_feed_errors_total{reason="auth"}[1m]) > 0'),
                       timeout=30, message="Prometheus saw the rejected key's auth errors")
            yield prometheus, simulator, exporter
        finally:
            process.terminate()
            process.wait(10)
            exporter.stop()


def substitute(expr: str) -> str:
    for name, value in SUBSTITUTIONS.items():
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    assert "$" not in re.sub(r"\{\{.*?\}\}", "", expr), f"unsubstituted variable in {expr}"
    return expr


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)  # rows hold their panels when collapsed


def dashboard_queries() -> list[tuple[str, str, str]]:
    queries = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    queries.append((path.name, panel.get("title", "?"), target["expr"]))
    return queries


def test_the_scrape_up_panel_shows_a_target_that_is_down(tmp_path: Path) -> None:
    """A failed scrape marks build_info stale at once: `up and build_info` hid the very 0 the panel is for."""
    expr = next(substitute(e) for name, title, e in dashboard_queries() if title == "Scrape up")
    target = 'job="sfox",instance="a:9841"'
    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": f"up{{{target}}}", "values": "1 1 0 0"},
                         {"series": f'sfox_exporter_build_info{{{target},version="1"}}', "values": "1 1 stale"}],
        "promql_expr_test": [{"expr": expr, "eval_time": "3m",
                              "exp_samples": [{"labels": f"up{{{target}}}", "value": 0}]}]}]}
    path = tmp_path / "scrape-up.test.yml"
    path.write_text(yaml.safe_dump(test))
    result = subprocess.run([require("promtool"), "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_bundle_has_dashboards_and_queries() -> None:
    assert {path.name for path in DASHBOARDS} >= {"sfox-balances.json"}
    assert len(dashboard_queries()) >= 10


def exported_families(exporter: Exporter) -> set[str]:
    with urllib.request.urlopen(exporter.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def metrics_of(expr: str) -> set[str]:
    """The sfox_* metric names an expression reads (recording-rule names have colons and are left out)."""
    return set(re.findall(r"\b(sfox_[a-z_]+)\b", expr))


def test_every_dashboard_panel_query_returns_data(stack: tuple[Prometheus, Simulator, Exporter]) -> None:
    """Panels whose metrics this build exports must show data; the others (features landing in
    parallel: valuation, Connect, high thresholds) are printed, and must still be valid PromQL."""
    prometheus, _, exporter = stack
    exported = exported_families(exporter)
    empty, skipped = [], []
    for name, title, expr in dashboard_queries():
        result = prometheus.query(substitute(expr))  # fails on invalid PromQL
        if not metrics_of(expr) <= exported:
            skipped.append((name, title, sorted(metrics_of(expr) - exported)))
        elif not result:
            empty.append((name, title, expr))
    for item in skipped:
        print("skipped, metrics not exported by this build:", *item)
    assert not empty, "panel queries without data:\n" + "\n".join(map(str, empty))
    assert len(skipped) < len(dashboard_queries())


def test_every_dashboard_variable_query_returns_values(stack: tuple[Prometheus, Simulator, Exporter]) -> None:
    prometheus, _, _ = stack
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text()).get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            definition = variable.get("query")
            definition = definition.get("query") if isinstance(definition, dict) else definition
            match = re.fullmatch(r"\s*label_values\((?:(.*),\s*)?(\w+)\)\s*", definition or "")
            assert match, f"{path.name}: variable {variable['name']} uses an unsupported query {definition!r}"
            selector, label = match.groups()
            params = {"match[]": substitute(selector)} if selector else {}
            values = prometheus.get(f"/api/v1/label/{label}/values", **params)
            assert values, f"{path.name}: variable {variable['name']} has no values"


def grafana_alert_queries() -> list[tuple[str, str]]:
    document = yaml.safe_load(GRAFANA_ALERTS.read_text())
    return [(rule["title"], query["model"]["expr"])
            for group in document["groups"] for rule in group["rules"] for query in rule["data"]
            if query.get("datasourceUid") != "__expr__" and query.get("model", {}).get("expr")]


def test_every_grafana_alert_query_runs(stack: tuple[Prometheus, Simulator, Exporter]) -> None:
    prometheus, _, _ = stack
    queries = grafana_alert_queries()
    assert len({title for title, _ in queries}) >= 12
    for _, expr in queries:
        prometheus.query(substitute(expr))  # a query Prometheus rejects fails here


def test_every_recording_rule_has_data_when_its_metrics_are_exported(
        stack: tuple[Prometheus, Simulator, Exporter]) -> None:
    prometheus, _, exporter = stack
    exported = exported_families(exporter)
    groups = yaml.safe_load(RULES.read_text())["groups"]
    records = [rule for group in groups for rule in group["rules"] if "record" in rule]
    assert records
    for rule in records:
        result = prometheus.query(rule["expr"])
        if metrics_of(rule["expr"]) <= exported:
            assert result, f"{rule['record']}: no data"
        else:
            print("skipped, metrics not exported by this build:", rule["record"])


def test_every_prometheus_alert_fires_in_its_scenario(stack: tuple[Prometheus, Simulator, Exporter]) -> None:
    prometheus, _, _ = stack
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    for rule in rules:
        prometheus.query(rule["expr"])  # valid against real series
    expected: dict[str, Callable[[dict[str, str]], bool]] = {
        "SfoxBalanceLow": lambda labels: (labels["account"], labels["field"]) == ("quiet", "held"),
        "SfoxApiKeyRejected": lambda labels: labels["account"] == "rejected",
        "SfoxExporterDown": lambda labels: labels["job"] == "sfox-exporter" and "instance" not in labels,
    }
    for alertname, matches in expected.items():
        wait_until(lambda a=alertname, m=matches: any(m(labels) for labels in prometheus.firing(a)),  # type: ignore[misc]
                   timeout=15, message=f"{alertname} firing")
    # One fault, one page: the rejected key's feed is down, but SfoxFeedDown stays quiet for it.
    assert not [labels for labels in prometheus.firing("SfoxFeedDown") if labels["account"] == "rejected"]
    assert len(prometheus.firing("SfoxExporterDown")) == 1


def test_a_low_balance_in_the_simulator_fires_the_alert(stack: tuple[Prometheus, Simulator, Exporter]) -> None:
    prometheus, simulator, _ = stack
    assert float(simulator.ledger(KEYS["main"]).holdings["usd"].available) > 1000
    assert not [a for a in prometheus.firing("SfoxBalanceLow") if a["account"] == "main"]
    simulator.set_balance(KEYS["main"], "usd", available="400")
    firing = wait_until(lambda: [a for a in prometheus.firing("SfoxBalanceLow") if a["account"] == "main"],
                        timeout=15, message="SfoxBalanceLow firing")
    assert firing[0]["currency"] == "usd" and firing[0]["field"] == "available"
    assert firing[0]["severity"] == "warning"
    simulator.set_balance(KEYS["main"], "usd", available="5000")
    wait_until(lambda: not [a for a in prometheus.firing("SfoxBalanceLow") if a["account"] == "main"],
               timeout=15, message="SfoxBalanceLow resolved")
