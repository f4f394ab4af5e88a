"""Scale-out on PostgreSQL: several node processes on their own ports
(as if on several hosts) serve one registry; a write through any of them is
answered by all within a second; reads go to a real streaming replica
(``database_read_url``) and fall back to the primary while it is down.

The primary and its replica are real PostgreSQL servers made here with the
distribution's tools (initdb, pg_basebackup) on loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from idnode.demo import DEMO_ADMIN, demo_enterprises, registration
from loadtest.refdns import free_port
from tests.test_cli import ANY_PORTS, Server, post_json, run_idnode

pytestmark = pytest.mark.slow

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


@dataclass
class Cluster:
    directory: Path
    port: int

    def url(self, database: str = "idnode") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"


def _as_postgres(*command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """PostgreSQL's tools refuse to run as root: run them as its own user."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, *command], capture_output=True, text=True, timeout=timeout, check=True
    )


def _pg_ctl(cluster: Cluster, action: str) -> None:
    assert PG_BIN is not None
    log = cluster.directory.parent / f"{cluster.directory.name}.log"
    _as_postgres(
        str(PG_BIN / "pg_ctl"), "-D", str(cluster.directory), "-l", str(log), "-w", "-m", "fast",
        action,
    )  # fmt: skip


def _psql(cluster: Cluster, sql: str, database: str = "postgres") -> str:
    assert PG_BIN is not None
    done = _as_postgres(
        str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
        "-d", database, "-Atc", sql,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture(scope="module")
def primary_and_replica() -> Iterator[tuple[Cluster, Cluster]]:
    if PG_BIN is None or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL's server tools are not installed")
    base = Path(tempfile.mkdtemp(prefix="idnode-replication-"))
    postgres = pwd.getpwnam("postgres")
    os.chown(base, postgres.pw_uid, postgres.pw_gid)
    primary = Cluster(base / "primary", free_port())
    replica = Cluster(base / "replica", free_port())
    try:
        _as_postgres(
            str(PG_BIN / "initdb"), "-D", str(primary.directory), "-U", "postgres",
            "--auth=trust", "--no-sync",
        )  # fmt: skip
        settings = (
            f"port = {primary.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{base}'\nwal_level = replica\n"
            "max_wal_senders = 5\nhot_standby = on\nfsync = off\n"
        )
        with (primary.directory / "postgresql.conf").open("a") as conf:
            conf.write(settings)
        _pg_ctl(primary, "start")
        _as_postgres(
            str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
            "-U", "postgres", "-D", str(replica.directory), "-R", "-X", "stream",
        )  # fmt: skip
        with (replica.directory / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {replica.port}\n")
        _pg_ctl(replica, "start")
        _psql(primary, "CREATE DATABASE idnode")
        deadline = time.monotonic() + 30
        while _psql(replica, "SELECT count(*) FROM pg_database WHERE datname = 'idnode'") != "1":
            assert time.monotonic() < deadline, "the replica did not follow"
            time.sleep(0.1)
        assert _psql(replica, "SELECT pg_is_in_recovery()") == "t"
        yield primary, replica
    finally:
        for cluster in (replica, primary):
            with contextlib.suppress(subprocess.CalledProcessError, AssertionError):
                _pg_ctl(cluster, "stop")
        shutil.rmtree(base, ignore_errors=True)


def _code(base: str, handle: str) -> int:
    """The REST responseCode for ``handle`` at the node at ``base`` (1: found)."""
    try:
        with urllib.request.urlopen(f"{base}/api/handles/{handle}", timeout=10) as got:
            return int(json.loads(got.read())["responseCode"])
    except urllib.error.HTTPError as error:
        return int(json.loads(error.read())["responseCode"])


def _register(base: str, token: str, suffix: str) -> str:
    ent = demo_enterprises(1)[0]
    answer = post_json(f"{base}/identityv2/data/batchCreate", [registration(ent, suffix)], token)
    assert answer["data"][0]["msg"] == "success", answer
    return f"{ent.prefix}/{suffix}"


def _seen_by_all(bases: list[str], handle: str, limit: float) -> float:
    """Seconds until every node answers ``handle`` as found (fails past ``limit``)."""
    started = time.monotonic()
    waiting = set(bases)
    while waiting:
        waiting = {base for base in waiting if _code(base, handle) != 1}
        elapsed = time.monotonic() - started
        assert elapsed <= limit or not waiting, f"{sorted(waiting)} did not see {handle}"
        if waiting:
            time.sleep(0.02)
    return time.monotonic() - started


def _replica_readers(replica: Cluster) -> int:
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = 'idnode' AND backend_type = 'client backend'"
    )
    return int(_psql(replica, query))


def test_nodes_on_one_registry_with_a_streaming_replica(
    primary_and_replica: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    primary, replica = primary_and_replica
    common = {"IDNODE_DATABASE_URL": primary.url(), "IDNODE_DEMO_IDENTIFIERS": "64"}
    with_replica = {**common, "IDNODE_DATABASE_READ_URL": replica.url()}
    # One node seeds the registry (demo data, admin demo-admin); all share its key files.
    first = Server("serve", "--demo", *ANY_PORTS, cwd=tmp_path, env=with_replica)
    nodes = [first]
    try:
        bases = [first.wait_for_http(300)]
        for env in (with_replica, common):  # a second replica reader, and a primary-only node
            node = Server("serve", *ANY_PORTS, cwd=tmp_path, env=env)
            nodes.append(node)
            bases.append(node.wait_for_http(60))
        login = {"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}
        token = post_json(f"{bases[0]}/identity/token", login)["data"]["token"]

        # A write through any node is answered by all within a second, including
        # nodes that had just answered "not found" for that name (and cached it).
        for writer, suffix in ((0, "SCALE-A"), (1, "SCALE-B"), (2, "SCALE-C")):
            handle = f"{demo_enterprises(1)[0].prefix}/{suffix}"
            assert all(_code(base, handle) == 100 for base in bases)
            _register(bases[writer], token, suffix)
            assert _seen_by_all(bases, handle, limit=1.0) <= 1.0
        assert _replica_readers(replica) > 0  # the replica readers did read there

        # The replica goes down: the nodes reading from it answer from the primary,
        # names never asked before included, and still see new writes.
        later = [_register(bases[2], token, f"LATER-{i}") for i in range(5)]
        _pg_ctl(replica, "stop")
        for handle in later:
            assert [_code(base, handle) for base in bases] == [1, 1, 1]
        handle = _register(bases[0], token, "WHILE-DOWN")
        assert _seen_by_all(bases, handle, limit=1.0) <= 1.0

        # It comes back: after the retry interval the readers use it again.
        _pg_ctl(replica, "start")
        fresh = [_register(bases[0], token, f"BACK-{i}") for i in range(3)]
        time.sleep(6)  # REPLICA_RETRY_SECONDS, and a little
        for handle in fresh:
            assert _code(bases[1], handle) == 1
        assert _replica_readers(replica) > 0
    finally:
        for node in reversed(nodes):
            assert node.stop() == 0
    verified = run_idnode("audit", "verify", cwd=tmp_path, env=common)
    assert verified.returncode == 0, verified.stderr
