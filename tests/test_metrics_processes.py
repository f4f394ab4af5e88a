"""Metrics of real node processes: a node with two DNS processes counts every
request exactly once in its one ``/metrics``, keeps the day's count in the
database across a restart, and ``idnode report`` shows it; the sync worker
alone has its metrics on a port of its own."""

from __future__ import annotations

import asyncio
import glob
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from prometheus_client import multiprocess

from idnode.config import Endpoint
from resolver.handle import client
from tests.factories import Samples, scrape, summed
from tests.test_cli import Server, run_idnode
from tests.test_federation import listening
from tests.test_sync_faults import migrated_env, register, wait_until

pytestmark = pytest.mark.slow

PORTS = ("--http", "127.0.0.1:0", "--handle", "127.0.0.1:0", "--dns", "127.0.0.1:0")


def total(samples: Samples, **want: str) -> float:
    return summed(samples, "idnode_resolutions_total", **want)


def gauge(url: str, name: str) -> float:
    return scrape(url).get((name, ()), -1.0)


def dns_per_process(node_pid: int) -> dict[int, float]:
    """DNS resolutions each process of the node counted, from its metrics files."""
    # The node made its directory after it started (metrics.multiprocess): find
    # it by the node's own file in it.
    (own,) = glob.glob(
        os.path.join(tempfile.gettempdir(), f"idnode-metrics-*/counter_{node_pid}.db")
    )
    directory = os.path.dirname(own)
    counted: dict[int, float] = {}
    for path in glob.glob(os.path.join(directory, "counter_*.db")):
        pid = int(re.findall(r"counter_(\d+)\.db", path)[0])
        merged = multiprocess.MultiProcessCollector.merge([path], accumulate=False)  # type: ignore[no-untyped-call]
        counted[pid] = sum(
            s.value
            for family in merged
            for s in family.samples
            if s.name == "idnode_resolutions_total" and s.labels.get("protocol") == "dns"
        )
    return counted


def send_load(http: str, dns_at: Endpoint, handle: Endpoint) -> int:
    """Resolutions over REST, DNS (each from a new source port) and native UDP/TCP;
    returns how many were answered."""
    answered = 0
    for i in range(40):
        name = "88.100/m-00000" if i % 4 else "88.100/absent"
        try:
            urllib.request.urlopen(f"{http}/api/handles/{name}", timeout=10).close()
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        answered += 1
    for i in range(300):
        qname = "hdl.idnode.test." if i % 3 else f"n{i}.nothing.hdl.idnode.test."
        reply = dns.query.udp(dns.message.make_query(qname, "SOA"), dns_at.host, 5, dns_at.port)
        assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
        answered += 1

    async def native() -> int:
        for i in range(30):
            message = client.resolution("88.100/m-00000")
            call = client.tcp_call if i % 2 else client.udp_call
            answer = await call(handle.host, handle.port, message)
            assert answer.header.response_code == 1
        return 30

    return answered + asyncio.run(native())


def test_two_dns_processes_count_once_and_the_day_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    env = migrated_env(tmp_path, IDNODE_ACCOUNTING_INTERVAL="1")
    node = Server(
        "serve", *PORTS, "--workers", "2", "--metrics", "127.0.0.1:0", cwd=tmp_path, env=env
    )
    try:
        http = node.wait_for_http(60)
        handle, dns_at = listening(node, "handle"), listening(node, "dns")
        metrics_port = listening(node, "metrics")
        register(http, 1, "m")
        sent = send_load(http, dns_at, handle)
        assert wait_until(lambda: total(scrape(f"{http}/metrics")) == sent, 15)
        samples = scrape(f"{http}/metrics")
        assert total(samples, protocol="dns") == 300
        assert total(samples, protocol="handle_udp") + total(samples, protocol="handle_tcp") == 30
        assert total(samples, protocol="http", outcome="not_found") == 10
        # Both DNS processes answered some, and their counts add up to what was sent.
        per_process = dns_per_process(node.proc.pid)
        assert len([n for n in per_process.values() if n > 0]) == 2, per_process
        assert sum(per_process.values()) == 300
        # The same page on the metrics port; the day's count read back from the database.
        assert total(scrape(f"http://{metrics_port}/metrics")) == sent
        assert wait_until(lambda: gauge(f"{http}/metrics", "idnode_resolutions_today") == sent, 15)
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(f"http://{metrics_port}{path}", timeout=10) as response:
                assert response.status == 200
        if shutil.which("promtool") or os.environ.get("CI"):
            with urllib.request.urlopen(f"{http}/metrics", timeout=10) as response:
                page = response.read()
            checked = subprocess.run(
                ["promtool", "check", "metrics"], input=page, capture_output=True, check=False
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        assert node.stop() == 0
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT sum(resolutions) FROM daily_resolutions").fetchone()[0]
    assert stored == sent  # every answered request persisted, the last ones at the stop

    again = Server("serve", *PORTS, cwd=tmp_path, env=env)
    try:
        http = again.wait_for_http(60)
        assert total(scrape(f"{http}/metrics")) == 0  # counters start anew...
        assert wait_until(lambda: gauge(f"{http}/metrics", "idnode_resolutions_today") == sent, 15)
    finally:
        assert again.stop() == 0  # ...the day's count does not
    out = tmp_path / "report.html"
    shown = run_idnode("report", "--days", "3", "--html", str(out), cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"{sent:>12,}" in shown.stdout
    assert "(target 30: not met)" in shown.stdout
    page = out.read_text()
    assert f'data-resolutions="{sent}"' in page and 'id="target"' in page


def test_the_sync_worker_alone_serves_its_metrics(tmp_path: Path) -> None:
    env = {"IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'node.db'}"}
    assert run_idnode("migrate", cwd=tmp_path, env=env).returncode == 0
    worker = Server(
        "sync",
        "--toplevel",
        "http://127.0.0.1:1",
        "--metrics",
        "127.0.0.1:0",
        cwd=tmp_path,
        env=env,
    )
    try:
        lines = worker.read_more("listening metrics ", timeout=30)
        at = next(line.split()[-1] for line in lines if line.startswith("listening metrics "))
        # Nobody listens at the top-level node's address: the worker retries, and says so.
        url = f"http://{at}/metrics"
        assert wait_until(lambda: scrape(url).get(("idnode_sync_retries_total", ()), 0) >= 1, 20)
        samples = scrape(url)
        assert ("idnode_sync_backlog_events", ()) in samples, sorted(samples)
        assert samples[("idnode_sync_backlog_events", ())] >= 1  # the node's registration
        assert samples[("idnode_sync_last_success_timestamp_seconds", ())] == 0  # never
        with urllib.request.urlopen(f"http://{at}/readyz", timeout=10) as response:
            assert response.status == 200
    finally:
        assert worker.stop() == 0
