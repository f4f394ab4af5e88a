"""The cryptography benchmark's smoke run: bounded, every figure present and positive,
the targets judged, the results file written."""

from __future__ import annotations

import json
from pathlib import Path

from tests.factories import run_module


def test_the_crypto_benchmark_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench-crypto.json"
    done = run_module("loadtest.bench_crypto", "--seconds", "0.05", "--out", str(out), timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    figures = {f["name"]: f for f in report["figures"]}
    assert set(figures) == {
        "sm2_verify", "sm2_sign", "sm2_login_proof", "sm2_first_proof", "rsa2048_verify",
        "rsa2048_sign", "p256_verify", "p256_sign", "sm3_1k", "sm4_cbc_1k",
    }  # fmt: skip
    for figure in figures.values():
        assert figure["operations"] > 0 and figure["per_second"] > 0, figure
    assert figures["sm2_verify"]["target"] == 2000 and figures["sm2_login_proof"]["target"] == 1000
    assert isinstance(figures["sm2_verify"]["meets_target"], bool)
    assert figures["rsa2048_sign"]["meets_target"] is None
    assert report["openssl"].startswith("0x3")
    assert "SM2 verifications" in done.stdout and "written to" in done.stdout
