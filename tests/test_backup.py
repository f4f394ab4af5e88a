"""``idnode backup`` / ``idnode restore``: a backup taken while the
node serves and registers restores into another database, verifies, serves the
same answers, and backs up again to the same content; what is cut off, foreign
or about to overwrite a registry is refused with the database unchanged."""

from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import sqlite3
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from idnode.demo import DEMO_ADMIN, demo_enterprises, example_handle, registration
from loadtest.demo_node import DemoNode
from tests.test_cli import ANY_PORTS, Server, post_json, run_idnode

pytestmark = pytest.mark.slow

SMALL_DEMO = ("--enterprises", "32", "--identifiers", "320")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as got:
        return json.loads(got.read())


def _content(path: Path) -> list[bytes]:
    """Everything but the header line (it carries the time of the backup)."""
    with gzip.open(path, "rb") as packed:
        return packed.read().splitlines()[1:]


def _identifiers(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return int(db.execute("SELECT count(*) FROM identifiers").fetchone()[0])


def test_backup_while_serving_restores_into_postgresql_and_serves(
    tmp_path: Path, pg_database: str
) -> None:
    handle = example_handle(demo_enterprises(1)[0], 1)
    backup, again = tmp_path / "registry.backup", tmp_path / "again.backup"
    sqlite_env = {"IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'idnode-demo.db'}"}
    pg_env = {"IDNODE_DATABASE_URL": pg_database}
    with DemoNode(tmp_path, *SMALL_DEMO) as node:
        before = _get(f"{node.base}/api/handles/{handle}")
        token = post_json(
            f"{node.base}/identity/token",
            {"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]},
            timeout=60,
        )["data"]["token"]
        ent = demo_enterprises(2)[1]
        stop = threading.Event()
        filed: list[int] = []

        def register() -> None:  # writes all through the backup
            batch = 0
            while not stop.is_set() and batch < 200:
                body = [registration(ent, f"BK-{batch}-{i}") for i in range(50)]
                answer = post_json(
                    f"{node.base}/identityv2/data/batchCreate", body, token, timeout=60
                )
                filed.append(sum(item["msg"] == "success" for item in answer["data"]))
                batch += 1

        writer = threading.Thread(target=register)
        writer.start()
        try:
            made = run_idnode("backup", str(backup), cwd=tmp_path, env=sqlite_env)
        finally:
            stop.set()
            writer.join(timeout=120)
        assert made.returncode == 0, made.stderr
        assert filed, "registrations ran beside the backup"
        assert not list(tmp_path.glob("*.partial"))

    restored = run_idnode("restore", str(backup), cwd=tmp_path, env=pg_env)
    assert restored.returncode == 0, restored.stderr
    # Whatever the backup caught of the writes, it caught whole transactions:
    # the hash chain over the audit log verifies.
    verified = run_idnode("audit", "verify", cwd=tmp_path, env=pg_env)
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout
    with gzip.open(backup, "rb") as packed:
        trailer = json.loads(packed.read().splitlines()[-1])
    assert trailer["rows"]["identifiers"] >= 320
    assert f"{trailer['rows']['identifiers']:,} identifiers" in restored.stdout

    assert run_idnode("backup", str(again), cwd=tmp_path, env=pg_env).returncode == 0
    assert _content(again) == _content(backup)  # the same registry, row for row

    # The restored registry serves, with the same node key files, the same answers.
    server = Server("serve", *ANY_PORTS, cwd=tmp_path, env=pg_env)
    try:
        base = server.wait_for_http(60)
        after = _get(f"{base}/api/handles/{handle}")
        assert after["values"] == before["values"]
        assert after["responseCode"] == 1
        # New identifiers get fresh ids after the restored ones (sequences moved on).
        token = post_json(
            f"{base}/identity/token",
            {"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]},
            timeout=60,
        )["data"]["token"]
        answer = post_json(
            f"{base}/identityv2/data/batchCreate",
            [registration(demo_enterprises(1)[0], "AFTER-RESTORE")],
            token,
            timeout=60,
        )
        assert answer["data"][0]["msg"] == "success"
    finally:
        assert server.stop() == 0

    # A registry is never overwritten: its history (the audit log) stays.
    refused = run_idnode("restore", str(backup), cwd=tmp_path, env=pg_env)
    assert refused.returncode == 1 and "already holds a registry" in refused.stderr
    assert run_idnode("audit", "verify", cwd=tmp_path, env=pg_env).returncode == 0


def test_a_cut_off_or_foreign_file_leaves_the_database_unchanged(
    tmp_path: Path, sqlite_template: Path
) -> None:
    source = tmp_path / "source.db"
    shutil.copy(sqlite_template, source)
    env = {"IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{source}"}
    blank = run_idnode("backup", str(tmp_path / "empty.backup"), cwd=tmp_path, env=env)
    assert blank.returncode == 0, blank.stderr  # an empty registry backs up too
    with DemoNode(tmp_path, *SMALL_DEMO):
        pass  # seeds idnode-demo.db
    demo_db = tmp_path / "idnode-demo.db"
    full = tmp_path / "full.backup"
    demo_env = {"IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{demo_db}"}
    assert run_idnode("backup", str(full), cwd=tmp_path, env=demo_env).returncode == 0

    cut = tmp_path / "cut.backup"
    with gzip.open(full, "rb") as packed:
        lines = packed.read().splitlines(keepends=True)
    with gzip.open(cut, "wb") as packed:
        packed.writelines(lines[: len(lines) // 2])  # a clean gzip, but no trailer
    truncated = tmp_path / "truncated.backup"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # a broken gzip
    foreign = tmp_path / "foreign.backup"
    with gzip.open(foreign, "wb") as packed:
        packed.write(b'{"hello": "world"}\n')

    target = tmp_path / "target.db"
    shutil.copy(sqlite_template, target)
    target_env = {"IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{target}"}
    for bad, reason in (
        (cut, "cut off"),
        (truncated, "cannot read"),
        (foreign, "not an idnode backup"),
        (tmp_path / "missing.backup", "cannot read"),
    ):
        failed = run_idnode("restore", str(bad), cwd=tmp_path, env=target_env)
        assert failed.returncode == 1, bad
        assert reason in failed.stderr and "unchanged" in failed.stderr, failed.stderr
        assert _identifiers(target) == 0

    assert run_idnode("restore", str(full), cwd=tmp_path, env=target_env).returncode == 0
    assert _identifiers(target) == _identifiers(demo_db) >= 320
    # Not even an empty registry is restored over one.
    empty = run_idnode("restore", str(tmp_path / "empty.backup"), cwd=tmp_path, env=target_env)
    assert empty.returncode == 1 and "already holds a registry" in empty.stderr
    assert _identifiers(target) == _identifiers(demo_db)
