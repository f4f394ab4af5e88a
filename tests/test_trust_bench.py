"""The trusted-resolution benchmark's quick run: it measures every algorithm and
writes its results file (the node part is exercised by running it for real)."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest import bench_trust


def test_bench_trust_measures_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "bench-trust.json"
    assert bench_trust.main(["--no-node", "--seconds", "0.05", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    measured = {(f["alg"], f["links"], f["caches"]) for f in results["verify"]}
    assert ("RS256", 3, "cold") in measured and ("SM2256", 3, "warm") in measured
    assert all(f["verifications"] >= 1 and f["per_second"] > 0 for f in results["verify"])
