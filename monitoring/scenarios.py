"""promtool unit tests of every alert, firing and not firing, written as data.

The scenarios (input series, expected alerts and their labels) are written here by hand; only the
expected annotations are filled in from each alert's templates, so that wording changes in
`rules.py` do not need to be copied into the test by hand.
"""

from __future__ import annotations

import re
from typing import Any

from monitoring.rules import ALERTS

K8S = 'job="kubernetes-pods",namespace="trading",instance="10.0.0.7:9841",pod="trading-app-7d9f-abcde"'
R1 = 'job="sfox-exporter",instance="sfox-a:9841"'
R2 = 'job="sfox-exporter",instance="sfox-b:9841"'
HA = (R1, R2)
Series = dict[str, str]
Expected = list[tuple[str, str, list[dict[str, Any]]]]  # (eval time, alert, alerts: labels + "value")


def s(metric: str, target: str, values: str, **labels: str) -> Series:
    extra = "".join(f',{key}="{value}"' for key, value in labels.items())
    return {"series": f"{metric}{{{target}{extra}}}", "values": values}


def both(metric: str, values: str, **labels: str) -> list[Series]:
    """The same series from two HA replicas."""
    return [s(metric, target, values, **labels) for target in HA]


SCENARIOS: list[tuple[str, list[Series], Expected]] = [
    ("kubernetes-pods job: a known exporter target goes down; an unrelated pod that is down is ignored",
     [s("up", K8S, "1 1 1 0x20"), s("sfox_exporter_build_info", K8S, "1 1 1 _x20", version="0.2.0"),
      s("up", 'job="kubernetes-pods",namespace="trading",instance="10.0.0.9:8080",pod="other"', "0x23")],
     [("3m", "SfoxExporterDown", []),
      ("10m", "SfoxExporterDown", [{"job": "kubernetes-pods", "namespace": "trading", "value": 1}]),
      ("10m", "SfoxExporterVanished", [])]),
    ("a target of a job named after the exporter that never came up",
     [s("up", 'job="sfox-exporter",instance="sfox:9841"', "0x10")],
     [("8m", "SfoxExporterDown", [{"job": "sfox-exporter", "value": 1}])]),
    ("kubernetes-pods job: the exporter's pod is gone, and no other took its place",
     [s("up", K8S, "1x5 _x30"), s("sfox_exporter_build_info", K8S, "1x5 _x30", version="0.2.0")],
     [("4m", "SfoxExporterVanished", []), ("30m", "SfoxExporterDown", []),
      ("30m", "SfoxExporterVanished", [{"job": "kubernetes-pods", "namespace": "trading"}])]),
    ("kubernetes-pods job: a rollout replaces the pod, nothing vanishes",
     [s("up", K8S, "1x5 _x30"), s("sfox_exporter_build_info", K8S, "1x5 _x30", version="0.2.0"),
      s("up", K8S.replace("abcde", "fghij").replace(".7:", ".8:"), "_x5 1x30"),
      s("sfox_exporter_build_info", K8S.replace("abcde", "fghij").replace(".7:", ".8:"), "_x5 1x30", version="0.2.0")],
     [("30m", "SfoxExporterVanished", []), ("30m", "SfoxExporterDown", [])]),
    ("two replicas: both feeds down gives one alert; one replica up means no alert",
     [*both("sfox_feed_up", "0x20", account="main"), s("sfox_feed_up", R1, "0x20", account="ok"),
      s("sfox_feed_up", R2, "1x20", account="ok")],
     [("3m", "SfoxFeedDown", []),
      ("10m", "SfoxFeedDown", [{"job": "sfox-exporter", "account": "main", "value": 0}])]),
    ("two replicas, a rejected key: one SfoxApiKeyRejected, no SfoxFeedDown",
     [*both("sfox_feed_up", "1 1 0x20", account="main"),
      *both("sfox_feed_errors_total", "0 0 1+1x20", account="main", reason="auth")],
     [("1m", "SfoxApiKeyRejected", []),
      ("12m", "SfoxApiKeyRejected", [{"job": "sfox-exporter", "account": "main", "reason": "auth", "value": 10}]),
      ("12m", "SfoxFeedDown", [])]),
    ("a key rejected once, then accepted: no alert",
     [s("sfox_feed_up", R1, "0 0 1x20", account="main"),
      s("sfox_feed_errors_total", R1, "0 1 1x20", account="main", reason="auth")],
     [("5m", "SfoxApiKeyRejected", []), ("5m", "SfoxFeedDown", [])]),
    ("feed up without balances; a quiet account with balances and an enterprise account are fine",
     [*both("sfox_feed_up", "1x30", account="main"), s("sfox_feed_up", R1, "1x30", account="quiet"),
      s("sfox_balance", R1, "5x30", account="quiet", currency="usd"), s("sfox_feed_up", R1, "1x30", account="connect"),
      s("sfox_end_users", R1, "10x30", account="connect")],
     [("10m", "SfoxBalancesMissing", []),
      ("20m", "SfoxBalancesMissing", [{"job": "sfox-exporter", "account": "main", "value": 1}])]),
    ("two replicas: available usd below its low threshold; btc above its own",
     [*both("sfox_balance_available", "750x20", account="main", currency="usd"),
      *both("sfox_balance_low_threshold", "1000x20", account="main", currency="usd", field="available"),
      *both("sfox_balance", "2x20", account="main", currency="btc"),
      *both("sfox_balance_low_threshold", "0.5x20", account="main", currency="btc", field="balance")],
     [("3m", "SfoxBalanceLow", []),
      ("10m", "SfoxBalanceLow", [{"job": "sfox-exporter", "account": "main", "currency": "usd",
                                  "field": "available", "value": 750}])]),
    ("each field against its own threshold: balance and held below theirs alert, a low available under a "
     "balance threshold does not; amounts print in full, not as 2.74340309e+06",
     [*both("sfox_balance", "2743403.09x20", account="main", currency="usd"),
      *both("sfox_balance_available", "10x20", account="main", currency="usd"),
      *both("sfox_balance_low_threshold", "3000000x20", account="main", currency="usd", field="balance"),
      *both("sfox_balance_held", "0.25x20", account="main", currency="btc"),
      *both("sfox_balance_available", "100x20", account="main", currency="btc"),
      *both("sfox_balance", "100.25x20", account="main", currency="btc"),
      *both("sfox_balance_low_threshold", "0.5x20", account="main", currency="btc", field="held")],
     [("10m", "SfoxBalanceLow", [
         {"job": "sfox-exporter", "account": "main", "currency": "usd", "field": "balance", "value": 2743403.09},
         {"job": "sfox-exporter", "account": "main", "currency": "btc", "field": "held", "value": 0.25}])]),
    ("a currency gone after a REST snapshot from an account that has others is 0, below its threshold; not "
     "for a threshold of 0, nor for an account with no balances at all (SfoxFeedDown and SfoxBalancesMissing "
     "cover it), nor without a snapshot (the feed only upserts: absence means nothing)",
     [*both("sfox_balance", "5x20", account="main", currency="btc"),
      *both("sfox_balances_snapshot_timestamp_seconds", "1700000000x20", account="main"),
      *both("sfox_balance", "5x20", account="pushed", currency="btc"),
      *both("sfox_balance_low_threshold", "1000x20", account="pushed", currency="usd", field="available"),
      *both("sfox_balance_low_threshold", "1000x20", account="main", currency="usd", field="available"),
      *both("sfox_balance_low_threshold", "0x20", account="main", currency="eth", field="balance"),
      *both("sfox_balance_low_threshold", "1000x20", account="empty", currency="usd", field="available")],
     [("10m", "SfoxBalanceLow", [{"job": "sfox-exporter", "account": "main", "currency": "usd",
                                  "field": "available", "value": 0}])]),
    ("held btc grows above its high threshold; held usd stays under its own",
     [*both("sfox_balance_held", "1+1x20", account="main", currency="btc"),
      *both("sfox_balance_high_threshold", "5x20", account="main", currency="btc", field="held"),
      *both("sfox_balance_held", "10x20", account="main", currency="usd"),
      *both("sfox_balance_high_threshold", "100x20", account="main", currency="usd", field="held")],
     [("3m", "SfoxBalanceHigh", []),
      ("15m", "SfoxBalanceHigh", [{"job": "sfox-exporter", "account": "main", "currency": "btc",
                                   "field": "held", "value": 16}])]),
    ("value drops 15 % (alert), 5 % (no alert), 20 % with a currency unpriced (no alert)",
     [*both("sfox_account_value", "100000x30 85000x30", account="main", quote="usd"),
      *both("sfox_account_value", "100000x30 95000x30", account="other", quote="usd"),
      *both("sfox_account_value", "100000x30 80000x30", account="partial", quote="usd"),
      *both("sfox_account_unpriced_currencies", "0x60", account="main", quote="usd"),
      *both("sfox_account_unpriced_currencies", "0x60", account="other", quote="usd"),
      *both("sfox_account_unpriced_currencies", "0x30 1x30", account="partial", quote="usd")],
     [("25m", "SfoxAccountValueDrop", []),
      ("40m", "SfoxAccountValueDrop", [{"job": "sfox-exporter", "account": "main", "quote": "usd", "value": 85000}])]),
    ("two currencies become unpriced; another account stays priced",
     [*both("sfox_account_unpriced_currencies", "0x5 2x30", account="main", quote="usd"),
      *both("sfox_account_unpriced_currencies", "0x35", account="other", quote="usd")],
     [("15m", "SfoxCurrenciesUnpriced", []),
      ("25m", "SfoxCurrenciesUnpriced", [{"job": "sfox-exporter", "account": "main", "quote": "usd", "value": 2}])]),
    ("market feed down on both replicas of one job; one replica up in another",
     [*both("sfox_market_feed_up", "0x20"), s("sfox_market_feed_up", 'job="ha",instance="a:9841"', "0x20"),
      s("sfox_market_feed_up", 'job="ha",instance="b:9841"', "1x20")],
     [("5m", "SfoxMarketFeedDown", []), ("15m", "SfoxMarketFeedDown", [{"job": "sfox-exporter", "value": 0}])]),
    ("market feed down where it needs feeds; another exporter with nothing to price opens no connection",
     [*both("sfox_market_feed_up", "0x20"), *both("sfox_market_feeds", "3x20"),
      s("sfox_market_feed_up", 'job="usd-only",instance="u:9841"', "0x20"),
      s("sfox_market_feeds", 'job="usd-only",instance="u:9841"', "0x20")],
     [("15m", "SfoxMarketFeedDown", [{"job": "sfox-exporter", "value": 0}])]),
    ("an exporter in demo mode for over 10 minutes; a real one beside it",
     [*both("sfox_exporter_demo_mode", "1x30"), s("sfox_exporter_demo_mode", 'job="prod",instance="p:9841"', "0x30")],
     [("5m", "SfoxExporterDemoMode", []),
      ("15m", "SfoxExporterDemoMode", [{"job": "sfox-exporter", "instance": "sfox-a:9841", "value": 1},
                                       {"job": "sfox-exporter", "instance": "sfox-b:9841", "value": 1}])]),
    ("one of two replicas fails to reload its config; another job reloads fine",
     [s("sfox_exporter_config_last_reload_successful", R1, "1 1 0x15"),
      s("sfox_exporter_config_last_reload_successful", R2, "1x17"),
      s("sfox_exporter_config_last_reload_successful", 'job="prod",instance="p:9841"', "1x17")],
     [("4m", "SfoxExporterConfigReloadFailed", []),
      ("10m", "SfoxExporterConfigReloadFailed", [{"job": "sfox-exporter", "instance": "sfox-a:9841", "value": 0}])]),
    ("Connect, two replicas: btc and eth owed beyond the platform's own balance, usd covered; the enterprise "
     "account's own btc does not count",
     [*both("sfox_end_users", "1000x30", account="connect"),
      *both("sfox_end_users_balance", "12x30", account="connect", currency="btc"),
      *both("sfox_end_users_balance", "3x30", account="connect", currency="eth"),
      *both("sfox_end_users_balance", "1000x30", account="connect", currency="usd"),
      *both("sfox_balance", "100x30", account="connect", currency="btc"),
      *both("sfox_balance", "10x30", account="treasury", currency="btc"),
      *both("sfox_balance", "5000x30", account="treasury", currency="usd")],
     [("10m", "SfoxEndUsersOwedExceedBalance", []),
      ("20m", "SfoxEndUsersOwedExceedBalance", [{"currency": "btc", "value": 12}, {"currency": "eth", "value": 3}])]),
    ("Connect, two platforms in two namespaces: one's treasury does not cover the other's end users; the "
     "platform's own account may be scraped under another job",
     [s("sfox_end_users_balance", 'job="connect",namespace="a",instance="c:9841"', "12x30", account="p",
        currency="btc"),
      s("sfox_end_users", 'job="connect",namespace="a",instance="c:9841"', "10x30", account="p"),
      s("sfox_balance", 'job="treasury",namespace="a",instance="t:9841"', "1x30", account="own", currency="btc"),
      s("sfox_end_users_balance", 'job="connect",namespace="b",instance="d:9841"', "5x30", account="q",
        currency="btc"),
      s("sfox_end_users", 'job="connect",namespace="b",instance="d:9841"', "10x30", account="q"),
      s("sfox_balance", 'job="treasury",namespace="b",instance="u:9841"', "100x30", account="own", currency="btc")],
     [("20m", "SfoxEndUsersOwedExceedBalance", [{"namespace": "a", "currency": "btc", "value": 12}])]),
]

RECORDING: list[tuple[list[Series], str, list[tuple[str, float]]]] = [
    ([*both("sfox_balance", "2x5", account="main", currency="btc"), *both("sfox_price", "50000x5", currency="btc",
                                                                          quote="usd")],
     "account_currency_quote:sfox_balance_value:max",
     [('account_currency_quote:sfox_balance_value:max{account="main",currency="btc",job="sfox-exporter",quote="usd"}',
       100000)]),
    ([*both("sfox_end_users_balance", "4x5", account="connect", currency="btc", shard="0/2"),
      *both("sfox_end_users_balance", "6x5", account="connect", currency="btc", shard="1/2")],
     "currency:sfox_end_users_balance:sum", [('currency:sfox_end_users_balance:sum{currency="btc"}', 10)]),
]


def _render(template: str, labels: dict[str, str], value: float) -> str:
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda match: labels[match.group(1)], template)
    return text.replace("{{ $value }}", f"{value:g}").replace('{{ printf "%.15g" $value }}', f"{value:.15g}")


def _alert(name: str, expected: dict[str, Any]) -> dict[str, Any]:
    alert = next(alert for alert in ALERTS if alert.name == name)
    labels = {key: str(value) for key, value in expected.items() if key != "value"}
    labels = {**labels, "severity": alert.severity, **alert.labels}
    value = float(expected.get("value", 1))
    return {"exp_labels": labels, "exp_annotations": {
        "summary": _render(alert.summary, labels, value), "description": _render(alert.description, labels, value),
        "runbook_url": alert.runbook_url}}


def promtool_tests() -> dict[str, Any]:
    tests: list[dict[str, Any]] = []
    for _, series, checks in SCENARIOS:
        tests.append({"interval": "1m", "input_series": series, "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": [_alert(name, alert) for alert in alerts]}
            for at, name, alerts in checks]})
    for series, expr, samples in RECORDING:
        tests.append({"interval": "1m", "input_series": series, "promql_expr_test": [
            {"expr": expr, "eval_time": "4m", "exp_samples": [{"labels": labels, "value": value}
                                                              for labels, value in samples]}]})
    tested = {name for _, _, checks in SCENARIOS for _, name, _ in checks}
    missing = {alert.name for alert in ALERTS} - tested
    assert not missing, f"alerts without a promtool test: {missing}"
    return {"rule_files": ["../rules/sfox-alerts.yml"], "evaluation_interval": "1m", "tests": tests}
