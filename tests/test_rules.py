"""The monitoring that ships with the node, in ``metrics/``: the Prometheus rules
(checked and unit tested by promtool) and the Grafana dashboard, which may only
query what the node exports (``metrics/instruments.py``) or the rules record.

The rule files are YAML, read with PyYAML (a test extra); without it those tests
are skipped, except in CI.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

import metrics.instruments
from tests.factories import needs

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "metrics" / "rules" / "idnode.rules.yml"
RULE_TESTS = ROOT / "metrics" / "rules" / "tests" / "idnode.rules.test.yml"
DASHBOARD = ROOT / "metrics" / "dashboards" / "idnode.json"

PROMTOOL = shutil.which("promtool")
needs_promtool = needs(PROMTOOL is not None, "promtool")
needs_yaml = needs(importlib.util.find_spec("yaml") is not None, "PyYAML")

SEVERITIES = {"warning", "critical"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's variables a panel's expression may use, and what stands in for them
# when promtool checks the expression.
VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1d",
    "instance": ".*",
}
METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])idnode[:_a-zA-Z0-9]*")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def load_yaml(path: Path) -> Any:
    import yaml  # PyYAML, from the test extras

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules_of(kind: str) -> list[dict[str, Any]]:
    """The rules file's alerting (``alert``) or recording (``record``) rules."""
    doc = load_yaml(RULES)
    return [rule for group in doc["groups"] for rule in group["rules"] if kind in rule]


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def panels() -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = dashboard()["panels"]
    return result


def exprs() -> Iterator[tuple[str, str]]:
    """(where, expression) of every query on the dashboard."""
    for panel in panels():
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]


def exported_names() -> set[str]:
    """The sample names the node's instruments are exported under."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for value in vars(metrics.instruments).values():
        if isinstance(value, MetricWrapperBase):
            for metric in value.describe():
                names.update(metric.name + suffix for suffix in suffixes[metric.type])
    return names


# --- the rules ----------------------------------------------------------------------


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    proc = promtool("check", "rules", str(RULES.relative_to(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    proc = promtool("test", "rules", str(RULE_TESTS.relative_to(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_yaml
def test_every_alert_has_severity_summary_and_runbook() -> None:
    alerts = rules_of("alert")
    assert alerts
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names)), names
    for rule in alerts:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert str(annotations.get(key, "")).strip(), f"{name} has no {key}"


@needs_yaml
def test_recording_rules_are_named_by_convention() -> None:
    records = rules_of("record")
    assert records
    for rule in records:
        level, _, operations = rule["record"].partition(":")
        assert level == "idnode" and operations.count(":") == 1, rule["record"]


@needs_yaml
def test_rule_tests_cover_the_rules_file() -> None:
    doc = load_yaml(RULE_TESTS)
    assert [(RULE_TESTS.parent / f).resolve() for f in doc["rule_files"]] == [RULES.resolve()]


@needs_yaml
def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            expected = check.get("exp_alerts") or []
            if expected:
                firing.add(check["alertname"])
                for alert in expected:
                    assert "severity" in alert.get("exp_labels", {}), check
                    assert {"summary", "runbook"} <= set(alert.get("exp_annotations", {})), check
            else:
                silent.add(check["alertname"])
    alerts = {rule["alert"] for rule in rules_of("alert")}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested not firing"
    assert (firing | silent) - alerts == set(), "tests of alerts the rules file lacks"


@needs_yaml
def test_every_recording_rule_is_tested() -> None:
    tested = " ".join(
        check["expr"]
        for case in load_yaml(RULE_TESTS)["tests"]
        for check in case.get("promql_expr_test", [])
    )
    for rule in rules_of("record"):
        assert re.search(rf"(?<![\w:]){re.escape(rule['record'])}(?![\w:])", tested), rule["record"]


# --- the dashboard ------------------------------------------------------------------


def test_dashboard_identity_and_datasource_variable() -> None:
    doc = dashboard()
    assert doc["uid"] == "idnode"
    assert doc["title"] == "idnode — secondary node"
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    if "instance" in variables:
        query = variables["instance"]["query"]
        text = query["query"] if isinstance(query, dict) else query
        assert text == "label_values(idnode_build_info, instance)"
        assert variables["instance"]["datasource"] == DATASOURCE


def test_dashboard_panels_query_prometheus_through_the_variable() -> None:
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), ids
    for panel in panels():
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        targets = panel.get("targets", [])
        assert any(str(t.get("expr", "")).strip() for t in targets), title
        for target in targets:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, title


def test_dashboard_panels_are_laid_out_without_overlap() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in panels():
        grid = panel["gridPos"]
        x, y, w, h = (grid[k] for k in ("x", "y", "w", "h"))
        assert all(isinstance(v, int) for v in (x, y, w, h)), panel["title"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 24, panel["title"]
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            assert cell not in taken, f"{panel['title']!r} overlaps {taken[cell]!r}"
            taken[cell] = panel["title"]


def test_dashboard_uses_only_known_variables() -> None:
    for where, expr in exprs():
        for braced, bare in VARIABLE.findall(expr):
            assert (braced or bare) in VARIABLES, f"{where}: ${braced or bare}"


@needs_yaml
def test_dashboard_queries_only_exported_or_recorded_metrics() -> None:
    known = exported_names() | {rule["record"] for rule in rules_of("record")}
    assert "idnode_resolutions_total" in known
    assert "idnode_resolution_duration_seconds_bucket" in known
    for where, expr in exprs():
        names = set(METRIC_NAME.findall(STRING.sub('""', expr)))
        assert names, f"{where}: no idnode metric in {expr!r}"
        assert names <= known, f"{where}: unknown {sorted(names - known)}"


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each expression, its variables substituted, as a recording rule for promtool
    (a rule file in JSON, which is YAML too)."""

    def substitute(match: re.Match[str]) -> str:
        return VARIABLES[match.group(1) or match.group(2)]

    rules = [
        {"record": f"dashboard:expr_{i}:check", "expr": VARIABLE.sub(substitute, expr)}
        for i, (_, expr) in enumerate(exprs())
    ]
    assert rules
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}, indent=1))
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
