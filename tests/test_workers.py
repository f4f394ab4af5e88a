"""Worker processes: how many by default (the affinity mask capped by the
cgroup's CPU quota), and a worker that dies is started again with backoff,
counted in idnode_workers_live / idnode_workers_configured."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.config import Config
from idnode.workers import Backoff, cpu_quota, usable_cores, worker_count
from loadtest.demo_node import DemoNode, children
from tests.test_cli import Server

SMALL_DEMO = ("--enterprises", "32", "--identifiers", "64")


# --- how many -----------------------------------------------------------------------


def test_the_default_is_one_process_per_usable_core() -> None:
    assert worker_count(Config(workers=3)) == 3
    assert worker_count(Config()) == usable_cores()
    assert 1 <= usable_cores() <= len(os.sched_getaffinity(0))


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_the_tightest_on_the_way_up(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "self-cgroup"
    write(proc, "0::/kubepods/pod1/ctr\n")
    write(root / "kubepods" / "cpu.max", "max 100000\n")
    write(root / "kubepods" / "pod1" / "cpu.max", "150000 100000\n")
    write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", "max 100000\n")
    assert cpu_quota(root, proc) == 1.5
    write(root / "kubepods" / "cpu.max", "50000 100000\n")
    assert cpu_quota(root, proc) == 0.5


def test_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "self-cgroup"
    write(proc, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    group = root / "cpu,cpuacct" / "docker" / "abc"
    write(group / "cpu.cfs_quota_us", "300000\n")
    write(group / "cpu.cfs_period_us", "100000\n")
    assert cpu_quota(root, proc) == 3.0
    write(group / "cpu.cfs_quota_us", "-1\n")  # unlimited
    assert cpu_quota(root, proc) is None
    write(group / "cpu.cfs_quota_us", "garbage\n")
    assert cpu_quota(root, proc) is None
    assert cpu_quota(root, tmp_path / "missing") is None


def cpu_cgroup() -> Path | None:
    """A cgroup v1 cpu hierarchy this test may make groups in (root on Linux)."""
    for name in ("cpu,cpuacct", "cpu"):
        mount = Path("/sys/fs/cgroup") / name
        if (mount / "cpu.cfs_quota_us").exists() and os.access(mount, os.W_OK):
            return mount
    return None


@pytest.fixture
def one_cpu_group() -> Iterator[Path]:
    mount = cpu_cgroup()
    if mount is None:
        pytest.skip("no writable cgroup v1 cpu hierarchy here")
    group = mount / f"idnode-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        period = int((group / "cpu.cfs_period_us").read_text())
        (group / "cpu.cfs_quota_us").write_text(str(period))  # one CPU's worth
        yield group
    finally:
        for _ in range(50):  # the process inside must be gone first
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_a_process_in_a_one_cpu_cgroup_starts_one_process(one_cpu_group: Path) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores to tell the quota from the affinity mask")
    ask = "from idnode.config import Config; from idnode.workers import worker_count; " + (
        "print(worker_count(Config()))"
    )
    outside = subprocess.run(
        [sys.executable, "-c", ask], capture_output=True, text=True, timeout=60, check=True
    )
    procs = one_cpu_group / "cgroup.procs"
    inside = subprocess.run(
        [sys.executable, "-c", ask],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        preexec_fn=lambda: procs.write_text(str(os.getpid())),
    )
    assert int(outside.stdout) == len(os.sched_getaffinity(0))
    assert int(inside.stdout) == 1


# --- backoff ---------------------------------------------------------------------------


def test_backoff_doubles_while_workers_keep_dying_and_resets_after_a_steady_run() -> None:
    backoff = Backoff(first=1.0, longest=60.0, steady=60.0)
    pauses = [backoff.after_exit(ran_for=2.0) for _ in range(8)]
    assert pauses == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.after_exit(ran_for=3600.0) == 1  # it had settled: start over
    assert backoff.after_exit(ran_for=0.5) == 2


# --- a worker dies ---------------------------------------------------------------------


def gauges(node: DemoNode) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{node.endpoints['metrics']}/metrics", timeout=10) as got:
        text = got.read().decode()
    found = {}
    for name in ("idnode_workers_live", "idnode_workers_configured", "idnode_worker_restarts"):
        match = re.search(rf"^{name}(?:_total)?(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
        if match:
            found[name] = float(match.group(1))
    return found


def wait_for(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_killed_worker_is_started_again(tmp_path: Path) -> None:
    args = (*SMALL_DEMO, "--workers", "3", "--metrics", "127.0.0.1:0")
    with DemoNode(tmp_path, *args) as node:
        first = sorted(children(node.pid))
        assert len(first) == 2
        assert gauges(node)["idnode_workers_configured"] == 3
        assert gauges(node)["idnode_workers_live"] == 3

        victim = first[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: gauges(node).get("idnode_workers_live") == 2, "the gauge to drop")
        wait_for(lambda: gauges(node).get("idnode_workers_live") == 3, "a new worker")
        now = sorted(children(node.pid))
        assert len(now) == 2 and victim not in now and first[1] in now
        assert gauges(node)["idnode_worker_restarts"] == 1
        assert "starting another in 1 s" in node.log_tail()

        # The new worker answers on the shared port: enough requests reach every process.
        for _ in range(30):
            with urllib.request.urlopen(f"{node.base}/healthz", timeout=10) as got:
                assert got.status == 200

        # A second death soon after waits twice as long.
        os.kill(sorted(set(now) - set(first))[0], signal.SIGKILL)
        wait_for(lambda: "starting another in 2 s" in node.log_tail(), "the longer pause")
        wait_for(lambda: gauges(node).get("idnode_workers_live") == 3, "another new worker")
        assert gauges(node)["idnode_worker_restarts"] == 2


@pytest.mark.slow
def test_every_serving_process_freezes_its_start_up_heap(tmp_path: Path) -> None:
    """The cycle collector's full passes over the start-up heap stalled DNS
    answers for tens of milliseconds: the node and each worker freeze it once
    they serve (gc.freeze), and say how many objects they froze."""
    with DemoNode(tmp_path, *SMALL_DEMO, "--workers", "2") as node:
        serving = {node.pid, *children(node.pid)}
        assert len(serving) == 2
    frozen: dict[int, int] = {}
    for line in (tmp_path / "node.log").read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            said = re.fullmatch(r"heap settled: (\d+) start-up objects frozen", entry["msg"])
            if said is not None:
                frozen[entry["pid"]] = int(said[1])
    assert frozen.keys() == serving
    assert all(count > 10_000 for count in frozen.values()), frozen


@pytest.mark.slow
def test_a_sighup_while_the_node_starts_its_workers_ends_nothing(tmp_path: Path) -> None:
    """Between its first listener and its last worker the node could not reload
    yet; a SIGHUP then (log rotation) used to end it, the signal's default."""
    server = Server("serve", "--migrate", "--workers", "2", "--http", "127.0.0.1:0",
                    "--handle", "127.0.0.1:0", "--dns", "127.0.0.1:0", cwd=tmp_path)  # fmt: skip
    try:
        server.wait_for_http(120)  # the workers start after this line
        server.proc.send_signal(signal.SIGHUP)
        lines = server.read_more("listening dns 127.0.0.1:", timeout=60)
        assert any(line.startswith("listening dns ") for line in lines), lines
        assert server.proc.poll() is None
        assert len(children(server.proc.pid)) == 1  # its worker
    finally:
        assert server.stop() == 0


# --- database connections ----------------------------------------------------------------


async def test_pool_sizes_reach_the_engines_and_an_oversized_budget_is_named(
    pg_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from idnode.node import connections_per_process, open_node

    config = Config(
        database_url=pg_database,
        key_file=str(tmp_path / "idnode.key"),
        workers=2,
        database_pool_size=3,
        database_pool_overflow=2,
        database_read_pool_size=4,
    ).validate()
    assert connections_per_process(config) == 3 + 2 + 4
    with caplog.at_level("WARNING", logger="idnode"):
        async with open_node(config) as node:
            pool = node.db.pool
            assert pool.size() == 3 and pool._max_overflow == 2  # type: ignore[attr-defined]
            reads = node.resolver.db
            assert isinstance(reads, AsyncEngine) and reads.pool.size() == 4
    assert not [r for r in caplog.records if "max_connections" in r.getMessage()]

    greedy = dataclasses.replace(config, database_pool_size=400, workers=4)
    caplog.clear()
    with caplog.at_level("WARNING", logger="idnode"):
        async with open_node(greedy):
            pass
    warned = [r.getMessage() for r in caplog.records if "max_connections" in r.getMessage()]
    assert len(warned) == 1 and "4 processes may open up to 1624" in warned[0], warned
