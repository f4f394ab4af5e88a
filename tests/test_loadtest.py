"""The load tests themselves, run small: the Locust users against ``idnode demo``
(every protocol answered as expected, nothing failed), and the daily-requirement
scenario at a reduced count — its three counts must equal what was sent."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from loadtest.demo_node import DemoNode
from tests.factories import ROOT, run_module

pytestmark = pytest.mark.slow

SMALL_DEMO = ("--enterprises", "32", "--identifiers", "640")


def test_locust_users_load_every_protocol_without_failures(tmp_path: Path) -> None:
    with DemoNode(tmp_path, *SMALL_DEMO) as node:
        env = {
            **os.environ,
            "IDNODE_DNS": node.endpoints["dns"],
            "IDNODE_HANDLE": node.endpoints["handle"],
            "IDNODE_DEMO_IDENTIFIERS": "640",
        }
        done = run_module(
            "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
            "--users", "12", "--spawn-rate", "12", "--run-time", "6s", "--host", node.base,
            "--csv", str(tmp_path / "run"), "--only-summary",
            env=env,
            timeout=90,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with (tmp_path / "run_stats.csv").open(newline="") as stats:
        rows = list(csv.DictReader(stats))
    kinds = {(row["Type"], row["Name"].split(" [")[0]) for row in rows if row["Type"]}
    assert {
        ("GET", "/api/handles"),
        ("GET", "/<handle>"),
        ("DNS", "TXT"),
        ("HDL-UDP", "resolve"),
        ("HDL-TCP", "resolve"),
        ("POST", "/identity/token"),
        ("POST", "/identityv2/data"),
    } <= kinds
    total = next(row for row in rows if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 200 and int(total["Failure Count"]) == 0
    # The mix reached every application mode and the misses.
    modes = {row["Name"].split(" [")[-1].rstrip("]") for row in rows if "[" in row["Name"]}
    assert {"trace", "quality", "equipment", "logistics", "energy", "unknown"} <= modes


def test_daily_requirement_scenario_counts_exactly_what_was_sent(tmp_path: Path) -> None:
    out = tmp_path / "hundred-k.json"
    done = run_module(
        "loadtest.hundred_k", "--count", "2000", "--rate", "400", "--users", "16", *SMALL_DEMO,
        "--workdir", str(tmp_path), "--out", str(out),
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["sent"] == 2000 and result["failures"] == 0
    assert result["node_daily_counter"] == 2000
    assert result["persisted_daily_statistics"] == 2000
    assert result["prometheus"] == 2000


def test_registration_benchmark_files_everything_with_audit_and_outbox(tmp_path: Path) -> None:
    out = tmp_path / "register.json"
    done = run_module(
        "loadtest.bench_register", "--calls", "1", "--native", "100", "--out", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    runs = {run["path"]: run for run in json.loads(out.read_text())["runs"]}
    assert runs["batchCreate"]["identifiers"] == 2000 and runs["native"]["identifiers"] == 100
    for run in runs.values():
        assert run["failures"] == 0 and run["identifiers_per_second"] > 0
        assert run["audit_rows_added"] == run["identifiers"] == run["outbox_rows_added"]


def test_scale_benchmark_reports_cold_latency_and_memory(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = run_module(
        "loadtest.bench_scale", "--sizes", "1000,5000", "--requests", "200", "--out", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [run["identifiers"] for run in runs] == [1000, 5000]
    for run in runs:
        assert run["errors"] == 0 and run["requests"] == 200
        assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"]
        assert run["rss_after_start_mb"] > 0


def test_soak_holds_memory_steady_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = run_module(
        "loadtest.soak", "--minutes", "0.4", "--rate", "200", "--identifiers", "640",
        "--users", "10", "--warmup", "10", "--tolerance", "0.1", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["sent"] == 4800 and result["failures"] == 0
    assert len(result["memory"]) >= 4 and result["growth_after_warmup"] <= 0.1
