"""The benchmark suite's smoke run (``python -m loadtest.bench --quick``): a small demo
on SQLite, every protocol measured at its peak and at one offered rate, and the
Markdown, JSON and chart written. Also the pure parts: demo names, offered rates, the
h2load log."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from loadtest.bench_drivers import read_h2load_log
from loadtest.bench_settings import PROTOCOLS, demo_names, parse_rates
from loadtest.bench_suite import offered_rates
from tests.factories import needs, run_module

pytestmark = pytest.mark.slow

TOOLS = ("wrk", "h2load", "dnsperf")


def test_demo_names_are_the_seeded_products() -> None:
    names = demo_names(32, 640)
    # 20 records per enterprise; the 7 traceability ones keep one for a batch record.
    assert len(names) == len(set(names)) == 7 * 19 + 25 * 20
    assert names[0] == "88.100.1/SN-2026-000001"
    assert "88.100.1/SN-2026-000019" in names
    assert "88.100.1/SN-2026-000020" not in names
    assert "88.100.2/QC-2026-000020" in names
    assert {name.split("/")[0] for name in names[:32]} == {f"88.100.{n}" for n in range(1, 33)}


def test_offered_rates_skip_what_the_peak_cannot_take() -> None:
    assert offered_rates([1000, 2500, 5000], 4000) == ([1000, 2500], [5000])
    # Nothing fits: one run at about half the peak instead.
    assert offered_rates([2000, 10_000], 1500) == ([750], [2000, 10_000])
    assert parse_rates(["handle=500,100"])["handle-tcp"] == (100, 500)
    assert parse_rates(["300"])["http"] == (300,)


def test_h2load_log(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("1700000000000000\t200\t1500\n1700000000000100\t404\t900\n")
    histogram, other = read_h2load_log(log)
    assert (histogram.count, other, histogram.percentile(0.5)) == (1, 1, 1.5)


@needs(all(shutil.which(tool) for tool in TOOLS), " and ".join(TOOLS))
def test_quick_bench_measures_every_protocol(tmp_path: Path) -> None:
    done = run_module("loadtest.bench", "--quick", "--out", str(tmp_path), timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    markdown = (tmp_path / "bench.md").read_text()
    assert report["machine"]["cores"] >= 1 and report["machine"]["python"]
    assert "| protocol |" in markdown and report["machine"]["cpu"] in markdown
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = report["runs"]
    for protocol in (mode for modes in PROTOCOLS.values() for mode in modes):
        mine = [r for r in runs if r["protocol"] == protocol]
        peak = next(r for r in mine if r["kind"] == "peak")
        assert peak["achieved_rps"] > 0, peak
        fixed = [r for r in mine if r["kind"] == "rate"]
        assert fixed, f"{protocol}: no fixed-rate run"
        for run in fixed:
            assert run["errors"] == 0, run
            assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"], run
        assert all(r["errors"] == 0 for r in mine), mine
