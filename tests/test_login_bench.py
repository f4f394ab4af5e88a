"""The wire-level login benchmark, run small against a real ``idnode demo``: SM2 and
RSA-2048 identities log in over TCP (op 2001, RC 402, op 200) with no failure, the
node's CPU per login is measured, the target is judged and the results file written;
and a login the node refuses is counted as a failure, not as a login."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from loadtest import bench_login
from loadtest.demo_node import DemoNode
from registry.crypto import Sm2PrivateKey
from resolver.handle import client as cl
from tests.factories import run_module

pytestmark = pytest.mark.slow


def test_the_login_benchmark_measures_sm2_and_rsa_logins(tmp_path: Path) -> None:
    out = tmp_path / "bench-login.json"
    done = run_module(
        "loadtest.bench_login", "--seconds", "0.5", "--identities", "2", "--processes", "1",
        "--concurrency", "2", "--out", str(out), timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = {run["algorithm"]: run for run in report["runs"]}
    assert set(runs) == {"SM2", "RSA-2048"} and report["ok"] is True
    for run in runs.values():
        assert run["logins"] > 0 and run["failures"] == 0 and run["failure_samples"] == []
        assert run["logins_per_second"] > 0 and run["logins_per_server_cpu_second"] > 0
        assert run["server_cpu_us_per_login"] > 0 and run["client_cpu_us_per_login"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        assert run["identities"] == 2 and run["concurrency"] == 2
    assert runs["SM2"]["target"] == 1000 and isinstance(runs["SM2"]["meets_target"], bool)
    assert runs["RSA-2048"]["meets_target"] is None
    assert "per node CPU s" in done.stdout and "written to" in done.stdout


def test_a_refused_login_is_a_failure(tmp_path: Path) -> None:
    with DemoNode(tmp_path, "--enterprises", "30", "--identifiers", "0") as node:
        [identity] = bench_login.identities("SM2", 1)
        assert asyncio.run(bench_login.prepare(node, [identity])) == []
        host, port = node.endpoints["handle"].rsplit(":", 1)
        impostor = cl.KeyPair(identity.handle, identity.index, Sm2PrivateKey.generate())
        refused = asyncio.run(bench_login.login_once(host, int(port), impostor))
        assert refused is not None and "RC 403" in refused
        unknown = cl.KeyPair(f"{bench_login.PREFIX}/nobody", 300, Sm2PrivateKey.generate())
        assert asyncio.run(bench_login.login_once(host, int(port), unknown)) is not None
        assert asyncio.run(bench_login.login_once(host, int(port), identity)) is None
