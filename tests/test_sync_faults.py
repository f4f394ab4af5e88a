"""Sync under faults, with real processes only: `idnode serve --toplevel` or
`idnode sync` against `idnode toplevel`, which is stopped, killed, or told to
fail, lose acknowledgements and answer slowly. Each test asserts the final
state on both sides: every outbox event stored exactly once at the top-level
node, in a complete sequence, and delivered (none pending) at the node."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.refdns import free_port
from tests.test_cli import ANY_PORTS, Server, run_idnode

pytestmark = pytest.mark.slow

ADMIN = "AKOPS:ops-secret"
AUTH = "Basic " + base64.b64encode(b"300%3A0.NA/88.100:ops-secret").decode()


def migrated_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a node on SQLite in ``tmp_path`` (migrated), with the ops
    administrator and plain-HTTP authentication; ``settings``: more ``IDNODE_*``."""
    env = {
        "IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'node.db'}",
        "IDNODE_BOOTSTRAP_ADMIN": ADMIN,
        "IDNODE_ALLOW_PLAIN_HTTP_AUTH": "true",
        **settings,
    }
    migrated = run_idnode("migrate", cwd=tmp_path, env=env)
    assert migrated.returncode == 0, migrated.stderr
    return env


@pytest.fixture
def node_env(tmp_path: Path) -> dict[str, str]:
    return migrated_env(tmp_path, IDNODE_SYNC_TIMEOUT="2")


def register(base: str, count: int, tag: str) -> None:
    """``count`` identifiers through the REST API, as a client would."""
    for i in range(count):
        body = json.dumps([{"index": 1, "type": "URL", "data": f"https://x/{tag}/{i}"}])
        request = urllib.request.Request(
            f"{base}/api/handles/88.100/{tag}-{i:05d}", data=body.encode(), method="PUT"
        )
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", AUTH)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201


def seed_offline(tmp_path: Path, env: dict[str, str], count: int) -> None:
    """Identifiers registered while no worker runs (a node without --toplevel)."""
    server = Server("serve", *ANY_PORTS, cwd=tmp_path, env=env)
    try:
        register(server.wait_for_http(60), count, "s")
    finally:
        assert server.stop() == 0


def outbox(db: Path) -> tuple[list[int], int]:
    """The node's outbox seqs, and how many are still pending."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        seqs = [row[0] for row in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
        pending = conn.execute(
            "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND NOT parked"
        ).fetchone()[0]
    return seqs, pending


def at_top(db: Path) -> tuple[list[int], int]:
    """The seqs the top-level node stored for 88.100, and its high-water mark."""
    if not db.exists():
        return [], 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            seqs = [
                r[0]
                for r in conn.execute(
                    "SELECT seq FROM tl_events WHERE node = '88.100' ORDER BY seq"
                )
            ]
            row = conn.execute("SELECT high_water FROM tl_nodes WHERE node = '88.100'").fetchone()
        except sqlite3.OperationalError:  # not created yet
            return [], 0
    return seqs, row[0] if row else 0


def wait_until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def toplevel(tmp_path: Path, port: int, faults: str = "") -> Server:
    args = [
        "toplevel",
        "--http",
        f"127.0.0.1:{port}",
        "--handle",
        "127.0.0.1:0",
        "--db",
        f"sqlite+aiosqlite:///{tmp_path / 'top.db'}",
    ]
    if faults:
        args += ["--faults", faults]
    top = Server(*args, cwd=tmp_path)
    top.wait_for_http(60)
    return top


def assert_exactly_once(tmp_path: Path) -> None:
    seqs, pending = outbox(tmp_path / "node.db")
    stored, high_water = at_top(tmp_path / "top.db")
    assert pending == 0
    assert stored == seqs  # every event once, none twice (the key is (node, seq))
    assert high_water == seqs[-1]  # and the sequence is complete


def sync_process(tmp_path: Path, env: dict[str, str], url: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    environ.update(env, IDNODE_TOPLEVEL=url)
    return subprocess.Popen(
        [sys.executable, "-m", "idnode", "sync"],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def sync_until_drained(tmp_path: Path, env: dict[str, str], url: str, seconds: float) -> None:
    """Run `idnode sync` until the node's outbox is delivered, then stop it cleanly."""
    worker = sync_process(tmp_path, env, url)
    try:
        assert wait_until(lambda: outbox(tmp_path / "node.db")[1] == 0, seconds)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0


def test_top_level_node_down_during_1000_registrations(
    tmp_path: Path, node_env: dict[str, str]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = Server("serve", *ANY_PORTS, "--toplevel", url, cwd=tmp_path, env=node_env)
    top: Server | None = None
    try:
        register(node.wait_for_http(60), 1000, "d")  # nobody listens at the top-level yet
        _, pending = outbox(tmp_path / "node.db")
        assert pending >= 1000
        top = toplevel(tmp_path, port)
        assert wait_until(lambda: outbox(tmp_path / "node.db")[1] == 0, 90)
    finally:
        assert node.stop() == 0
        if top is not None:
            assert top.stop() == 0
    assert_exactly_once(tmp_path)
    status = run_idnode("sync", "status", cwd=tmp_path, env=node_env)
    assert "backlog 0 events" in status.stdout and "parked 0 events" in status.stdout


@contextlib.contextmanager
def faulty_toplevel(tmp_path: Path, faults: str) -> Iterator[str]:
    """A mock top-level node on a free port making this trouble (``--faults``): its
    URL. Stopped at the end, when it must hold every event exactly once."""
    port = free_port()
    top = toplevel(tmp_path, port, faults=faults)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        assert top.stop() == 0
    assert_exactly_once(tmp_path)


def test_worker_killed_mid_batch_then_restarted(tmp_path: Path, node_env: dict[str, str]) -> None:
    seed_offline(tmp_path, node_env, 600)
    env = dict(node_env, IDNODE_SYNC_BATCH="25")
    with faulty_toplevel(tmp_path, "slow=0.5,delay=0.3,seed=1") as top_url:
        first = sync_process(tmp_path, env, top_url)
        total = len(outbox(tmp_path / "node.db")[0])
        assert wait_until(lambda: len(at_top(tmp_path / "top.db")[0]) >= 100, 60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        stored = len(at_top(tmp_path / "top.db")[0])
        assert 100 <= stored < total  # killed with work left
        sync_until_drained(tmp_path, env, top_url, 90)
        check = dict(env, IDNODE_TOPLEVEL=top_url)
        verified = run_idnode("sync", "verify", cwd=tmp_path, env=check)
        assert verified.returncode == 0, verified.stderr
        assert "verified: 0 prefixes differed" in verified.stdout  # both sides hold the same


def test_failing_lossy_and_slow_top_level_node(tmp_path: Path, node_env: dict[str, str]) -> None:
    seed_offline(tmp_path, node_env, 300)
    env = dict(node_env, IDNODE_SYNC_BATCH="20")
    # 500s, acknowledgements lost after storing (so batches come twice), and
    # answers slower than the worker's 2 s timeout.
    with faulty_toplevel(tmp_path, "error=0.2,lost=0.25,slow=0.1,delay=3,seed=7") as top_url:
        sync_until_drained(tmp_path, env, top_url, 150)
