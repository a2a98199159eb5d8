"""The monitoring bundle's single source: alert and recording rules, and Grafana dashboards, as code.

Prometheus rules, Grafana-managed alerts, the prometheus-operator PrometheusRule and the dashboard JSON
are all rendered from here (`python -m monitoring`), so they cannot drift apart; a test fails when a
committed file differs from what this package renders (`python -m monitoring --check`).
"""
