"""`python -m monitoring` writes every generated file; `--check` only reports the stale ones (exit 1)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from monitoring import render
from monitoring.dashboards import DASHBOARDS
from monitoring.scenarios import promtool_tests

ROOT = Path(__file__).resolve().parent.parent


def outputs() -> dict[Path, Callable[[], str]]:
    files: dict[Path, Callable[[], str]] = {
        ROOT / "prometheus/rules/sfox-alerts.yml": render.prometheus_rules,
        ROOT / "grafana/provisioning/alerting/sfox-alerts.yml": render.grafana_alerts,
        ROOT / "deploy/kubernetes/prometheusrule.yaml": render.prometheus_rule_manifest,
        ROOT / "prometheus/tests/sfox-alerts.test.yml": lambda: render.dump(
            promtool_tests(), "# promtool test rules prometheus/tests/sfox-alerts.test.yml\n"
            "# Scenarios: monitoring/scenarios.py; the comments there say what each one proves.\n"),
    }
    for name, build in DASHBOARDS.items():
        files[ROOT / "grafana/dashboards" / name] = lambda build=build: json.dumps(build(), indent=2) + "\n"  # type: ignore[misc]
    return files


def stale() -> list[Path]:
    return [path for path, build in outputs().items() if not path.exists() or path.read_text() != build()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when a committed file is stale")
    if parser.parse_args(argv).check:
        paths = stale()
        for path in paths:
            print(f"stale: {path.relative_to(ROOT)} (run python -m monitoring)", file=sys.stderr)
        return 1 if paths else 0
    for path, build in outputs().items():
        path.write_text(build())
    return 0


if __name__ == "__main__":
    sys.exit(main())
