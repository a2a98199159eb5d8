"""Small builders for Grafana dashboard JSON: plain dicts, so a panel reads as what it shows.

Every panel, target and variable takes its data source from the `datasource` variable, which starts
at the default Prometheus data source and can be switched at the top of the dashboard. There are no
`__inputs`: on import Grafana would write the data source picked into every panel, and the variable
would then switch nothing.
"""

from __future__ import annotations

from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# schemaVersion 39 is what Grafana 10.4 writes and needs; state-timeline and table transformations used
# here are older than that.
SCHEMA_VERSION = 39
GRAFANA_VERSION = "10.4.0"
TARGET = 'job=~"$job", instance=~"$instance"'
ACCOUNT = TARGET + ', account=~"$account"'
CURRENCY = ACCOUNT + ', currency=~"$currency"'
PANEL_NAMES = {"stat": "Stat", "table": "Table", "timeseries": "Time series", "bargauge": "Bar gauge",
               "state-timeline": "State timeline", "text": "Text"}


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False, table: bool = False) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "editorMode": "code", "expr": expr, "legendFormat": legend or "__auto",
            "range": not instant, "instant": instant, "format": "table" if table else "time_series", "refId": ref}


def panel(kind: str, title: str, *queries: tuple[str, str], w: int = 8, h: int = 8, unit: str = "short",
          description: str = "", instant: bool = False, table: bool = False,
          mappings: list[dict[str, Any]] | None = None, steps: list[tuple[str, float | None]] | None = None,
          transformations: list[dict[str, Any]] | None = None, **options: Any) -> dict[str, Any]:
    refs = "ABCDEFGH"
    steps = steps or [("green", None)]
    return {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
        "fieldConfig": {"defaults": {
            "unit": unit, "mappings": mappings or [],
            "color": {"mode": "thresholds" if kind == "stat" else "palette-classic"},
            "thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}},
            "overrides": []},
        "options": options,
        "targets": [target(expr, legend, refs[i], instant, table) for i, (expr, legend) in enumerate(queries)],
        "transformations": transformations or [],
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
            "panels": []}


def text(title: str, content: str, w: int = 8, h: int = 8) -> dict[str, Any]:
    return {"type": "text", "title": title, "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
            "options": {"mode": "markdown", "content": content}}


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flow the panels left to right, top to bottom, in a 24-column grid, and number them."""
    x = y = line = 0
    for number, item in enumerate(panels, start=1):
        grid = item["gridPos"]
        if item["type"] == "row" or x + grid["w"] > 24:
            x, y, line = 0, y + line, 0
        grid["x"], grid["y"] = x, y
        item["id"] = number
        x += grid["w"]
        line = max(line, grid["h"])
        if item["type"] == "row":
            x, y, line = 0, y + grid["h"], 0
    return panels


def variable(name: str, label: str, query: str, include_all: bool = True) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "current": {}, "hide": 0, "includeAll": include_all, "allValue": ".*", "multi": True,
            "options": [], "refresh": 2, "regex": "", "sort": 1}


VARIABLES = [
    {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
     "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1, "regex": ""},
    variable("job", "Job", "label_values(sfox_exporter_build_info, job)"),
    variable("instance", "Instance", 'label_values(sfox_exporter_build_info{job=~"$job"}, instance)'),
    variable("account", "Account", "label_values(sfox_feed_up{" + TARGET + "}, account)"),
]


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]],
              variables: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = sorted({item["type"] for item in panels if item["type"] != "row"})
    return {
        "__elements": {},
        "__requires": [{"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
                       {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
                       *({"type": "panel", "id": kind, "name": PANEL_NAMES[kind], "version": ""} for kind in kinds)],
        "annotations": {"list": []}, "description": description, "editable": True, "graphTooltip": 1, "id": None,
        "links": [{"asDropdown": False, "icon": "external link", "includeVars": True, "keepTime": True,
                   "tags": ["sfox"], "title": "sFOX dashboards", "type": "dashboards"}],
        "panels": layout(panels), "refresh": "30s", "schemaVersion": SCHEMA_VERSION, "tags": ["sfox"],
        "templating": {"list": variables}, "time": {"from": "now-6h", "to": "now"}, "timepicker": {},
        "timezone": "browser", "title": title, "uid": uid, "version": 1,
    }
