"""The ``idnode`` command as an operator runs it: real processes, real ports."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.refdns import free_port
from registry.db import head_revision
from tests.factories import run_module

pytestmark = pytest.mark.slow

LISTENING = re.compile(r"^listening http (\S+)$")
ANY_PORTS = ("--http", "127.0.0.1:0", "--handle", "127.0.0.1:0", "--dns", "127.0.0.1:0")


def run_idnode(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_module("idnode", *args, cwd=cwd, env=_env(env), timeout=timeout)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env["IDNODE_WORKERS"] = "1"  # not one per core: the tests that want more say so
    env.update(extra or {})
    return env


class Server:
    """An ``idnode`` process started in the background, read line by line."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "idnode", *args],
            cwd=cwd,
            env=_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []

    def wait_for_http(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"idnode exited early: {self.lines} {stderr}")
            self.lines.append(line.rstrip("\n"))
            match = LISTENING.match(line.strip())
            if match:
                return f"http://{match.group(1)}"
        pytest.fail(f"no listening line within {timeout}s: {self.lines}")

    def read_more(self, until: str, timeout: float = 10) -> list[str]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(until in line for line in self.lines):
            self.lines.append(self.proc.stdout.readline().rstrip("\n"))
        return self.lines

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        finally:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream:
                    stream.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def http_json(
    url: str, body: Any = None, token: str | None = None, *, timeout: float = 10
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


def post_json(url: str, body: Any, token: str | None = None, *, timeout: float = 30) -> Any:
    """The JSON answer to a POST (an HTTP error raises)."""
    return http_json(url, body, token, timeout=timeout)[1]


def test_help_explains_every_subcommand(workdir: Path) -> None:
    result = run_idnode("--help", cwd=workdir)
    assert result.returncode == 0
    for command in ("serve", "demo", "migrate", "audit", "dns-name"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.M), result.stdout
    serve_help = run_idnode("serve", "--help", cwd=workdir).stdout
    for flag in ("--config", "--db", "--http", "--dns", "--workers", "--demo"):
        assert flag in serve_help


def test_serve_refuses_an_unmigrated_database(workdir: Path) -> None:
    result = run_idnode("serve", *ANY_PORTS, cwd=workdir)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "idnode: cannot start: no database at idnode.db; create it with `idnode migrate`"
    ]
    assert not list(workdir.iterdir())  # no empty database, no keys left behind
    for command in (("audit", "verify"), ("sync", "status"), ("report",)):
        refused = run_idnode(*command, cwd=workdir)
        assert refused.returncode == 1 and "no database at idnode.db" in refused.stderr
        assert not list(workdir.iterdir())
    (workdir / "idnode.db").touch()  # a file, but no schema in it
    result = run_idnode("serve", *ANY_PORTS, cwd=workdir)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "idnode: cannot start: database has no idnode schema; run `idnode migrate`"
    )


def test_unreachable_database_is_one_line(workdir: Path) -> None:
    port = free_port()
    result = run_idnode(
        "serve",
        "--db",
        f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x",
        "--http",
        "127.0.0.1:0",
        cwd=workdir,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("idnode: cannot start: database unreachable"), result.stderr


def test_bad_configuration_exits_2(workdir: Path) -> None:
    result = run_idnode("serve", "--http", "localhost", cwd=workdir)
    assert result.returncode == 2
    assert "configuration error" in result.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def node_database(workdir: Path, request: pytest.FixtureRequest) -> str:
    """A database of each kind for a node: SQLite's file not made yet, PostgreSQL's
    a fresh one at the current schema."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / 'node.db'}"
    return str(request.getfixturevalue("pg_database"))


def test_migrate_then_serve_with_bootstrap_admin(workdir: Path, node_database: str) -> None:
    env = {"IDNODE_DATABASE_URL": node_database, "IDNODE_BOOTSTRAP_ADMIN": "AKOPS:ops-secret"}
    migrated = run_idnode("migrate", cwd=workdir, env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert re.search(rf"^migrated .* to schema {head_revision()}$", migrated.stdout, re.M)
    assert "ops-secret" not in migrated.stdout + migrated.stderr

    server = Server("serve", *ANY_PORTS, cwd=workdir, env=env)
    try:
        base = server.wait_for_http(60)
        assert http_json(base + "/healthz") == (200, {"status": "ok", "database": "ok"})
        handle_line = next(
            line
            for line in server.read_more("listening handle ")
            if line.startswith("listening handle ")
        )
        native = handle_line.split()[-1]
        for transport in ("--udp", "--tcp"):
            found = run_idnode("resolve", "0.NA/88.100", "--server", native, transport, cwd=workdir)
            assert found.returncode == 0, found.stderr
            assert "response code 1 (found)" in found.stdout and "HS_ADMIN" in found.stdout
            assert "HS_SECKEY" not in found.stdout
        missing = run_idnode("resolve", "88.100/none", "--server", native, cwd=workdir)
        assert (missing.returncode, missing.stdout.splitlines()[0]) == (
            1,
            "response code 100 (handle not found)",
        )
        over_http = run_idnode(
            "resolve",
            "88.100",
            "--http",
            "--json",
            "--server",
            base.removeprefix("http://"),
            cwd=workdir,
        )
        assert json.loads(over_http.stdout)["responseCode"] == 1
        _, body = http_json(
            base + "/identity/token", {"username": "AKOPS", "password": "ops-secret"}
        )
        assert body["status"] == 1
        _, page = http_json(base + "/snms/api/prefix/page", token=body["data"]["token"])
        assert page["status"] == 1 and page["data"]["totalElements"] == 0

        # A second node on the same port cannot start, and says why in one line.
        port = base.rsplit(":", 1)[1]
        taken = run_idnode("serve", "--http", f"127.0.0.1:{port}", cwd=workdir, env=env)
        assert taken.returncode == 1
        assert (
            taken.stderr.strip()
            .splitlines()[-1]
            .startswith(f"idnode: cannot start: cannot listen on 127.0.0.1:{port}")
        )
    finally:
        assert server.stop() == 0
    audit = run_idnode("audit", "verify", cwd=workdir, env=env)
    assert (audit.returncode, audit.stdout.strip()) == (0, "audit: hash chain intact")


def test_demo_seeds_serves_and_its_examples_work(workdir: Path) -> None:
    server = Server("demo", *ANY_PORTS, cwd=workdir)
    try:
        base = server.wait_for_http(300)
        lines = server.read_more("try these")
        lines = server.read_more("?type=HS_SIGNATURE")
        summary = next(line for line in lines if " enterprises in " in line)
        numbers = [int(n) for n in re.findall(r"\d+", summary)]
        assert numbers[0] >= 30 and numbers[1] >= 5 and numbers[2] >= 10000, summary
        assert any("trusted resolution SM2256, self-rooted" in line for line in lines), lines
        printed = [line.strip() for line in lines if line.startswith("  ")]
        verify = [cmd for cmd in printed if cmd.startswith("idnode verify ")]
        examples = [cmd for cmd in printed if cmd not in verify]
        assert len(examples) >= 5 and base in "\n".join(examples) and len(verify) == 1
        # The verifier it prints, with the idnode installed beside this Python.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        verified = subprocess.run(
            ["bash", "-c", verify[0]],
            env=_env({"PATH": path}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verified.returncode == 0 and ": trusted" in verified.stdout, verified
        # Run them as a user would, in one shell (the token example sets $TOKEN).
        script = "\n".join(cmd if cmd.startswith("TOKEN=") else f"{cmd}; echo" for cmd in examples)
        result = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        answers = [line for line in result.stdout.splitlines() if line.strip()]
        assert len(answers) == len(examples) - 1, result
        for answer in answers:
            if answer.startswith("302 "):  # the redirect proxy
                assert answer.split()[1].startswith("https://"), answer
                continue
            if answer.startswith("1 1 "):  # dig: the URI record of the handle
                assert answer.split()[2].startswith('"https://'), answer
                continue
            body = json.loads(answer)
            assert body.get("status") == 1 or body.get("responseCode") == 1, body
        assert any("lookup page http://" in line for line in lines)
        assert any(example.startswith("dig @127.0.0.1 -p ") for example in examples)
    finally:
        assert server.stop() == 0
    db = sqlite3.connect(workdir / "idnode-demo.db")
    try:
        enterprises = db.execute("SELECT count(*) FROM enterprises").fetchone()[0]
        identifiers = db.execute("SELECT count(*) FROM identifiers").fetchone()[0]
        modes = db.execute("SELECT count(DISTINCT version) FROM templates").fetchone()[0]
        linked = db.execute(
            "SELECT count(*) FROM identifier_values WHERE type = 'parentBatch'"
        ).fetchone()[0]
    finally:
        db.close()
    assert enterprises >= 30 and identifiers >= 10000 and modes >= 5 and linked > 0
    # A restart keeps the data set instead of seeding it again.
    again = Server("demo", *ANY_PORTS, cwd=workdir)
    try:
        again.wait_for_http(60)
        assert any("kept" in line for line in again.lines)
    finally:
        assert again.stop() == 0


def test_a_second_process_sees_a_write_within_a_second(workdir: Path, node_database: str) -> None:
    import base64

    env = {
        "IDNODE_DATABASE_URL": node_database,
        "IDNODE_BOOTSTRAP_ADMIN": "AKOPS:ops-secret",
        "IDNODE_ALLOW_PLAIN_HTTP_AUTH": "true",
    }
    assert run_idnode("migrate", cwd=workdir, env=env).returncode == 0
    first = Server("serve", *ANY_PORTS, cwd=workdir, env=env)
    second = Server("serve", *ANY_PORTS, cwd=workdir, env=env)
    try:
        a, b = first.wait_for_http(60), second.wait_for_http(60)
        auth = "Basic " + base64.b64encode(b"300%3A0.NA/88.100:ops-secret").decode()

        def put(base: str, url_value: str) -> int:
            body = json.dumps([{"index": 1, "type": "URL", "data": url_value}]).encode()
            req = urllib.request.Request(
                f"{base}/api/handles/88.100/shared", data=body, method="PUT"
            )
            req.add_header("Content-Type", "application/json")
            req.add_header("Authorization", auth)
            with urllib.request.urlopen(req, timeout=10) as response:
                return int(response.status)

        def url_at(base: str) -> str:
            _, body = http_json(f"{base}/api/handles/88.100/shared")
            return str(body["values"][0]["data"]["value"])

        assert put(a, "https://example.org/v1") == 201
        assert url_at(b) == "https://example.org/v1"  # now cached in the second process
        assert url_at(b) == "https://example.org/v1"
        assert put(a, "https://example.org/v2") == 200
        deadline = time.monotonic() + 1.0
        seen = url_at(b)
        while seen != "https://example.org/v2" and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = url_at(b)
        assert seen == "https://example.org/v2"
    finally:
        assert first.stop() == 0
        assert second.stop() == 0


def _port_holders(port: int, kind: str = "udp") -> set[int]:
    """Processes with a ``kind`` (udp, tcp) socket bound to ``port`` (from /proc, like ss -lpn)."""
    inodes = set()
    for table in (f"/proc/net/{kind}", f"/proc/net/{kind}6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                listening = kind == "udp" or fields[3] == "0A"  # TCP_LISTEN
                if int(fields[1].rsplit(":", 1)[1], 16) == port and listening:
                    inodes.add(fields[9])
    holders = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        holders.add(int(pid))
    return holders


def test_workers_share_every_port_and_follow_writes(workdir: Path) -> None:
    import base64

    import dns.message
    import dns.query
    import dns.rcode

    env = {
        "IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'node.db'}",
        "IDNODE_BOOTSTRAP_ADMIN": "AKOPS:ops-secret",
        "IDNODE_ALLOW_PLAIN_HTTP_AUTH": "true",
    }
    assert run_idnode("migrate", cwd=workdir, env=env).returncode == 0
    server = Server("serve", *ANY_PORTS, "--workers", "2", cwd=workdir, env=env)
    try:
        base = server.wait_for_http(60)
        lines = server.read_more("listening dns ")
        line = next(x for x in lines if x.startswith("listening dns "))
        host, port = line.split()[-1].rsplit(":", 1)
        holders = _port_holders(int(port))
        assert server.proc.pid in holders and len(holders) == 2, holders
        (worker,) = holders - {server.proc.pid}
        # The worker also answers on the HTTP port and on the Handle port (UDP and TCP).
        handle = next(x for x in lines if x.startswith("listening handle ")).split()[-1]
        handle_port = int(handle.rsplit(":", 1)[1])
        assert _port_holders(handle_port) == holders == _port_holders(handle_port, "tcp")
        assert _port_holders(int(base.rsplit(":", 1)[1]), "tcp") == holders

        qname = run_idnode("dns-name", "88.100/fresh", cwd=workdir).stdout.strip()

        def answers() -> list[int]:
            """From 40 source ports: the kernel spreads them over both processes."""
            codes = []
            for _ in range(40):
                query = dns.message.make_query(qname, "URI")
                codes.append(dns.query.udp(query, host, port=int(port), timeout=3).rcode())
            return codes

        assert set(answers()) == {dns.rcode.NXDOMAIN}  # and now cached as such
        body = json.dumps([{"index": 1, "type": "URL", "data": "https://example.org/f"}])
        req = urllib.request.Request(
            f"{base}/api/handles/88.100/fresh", data=body.encode(), method="PUT"
        )
        req.add_header("Content-Type", "application/json")
        auth = base64.b64encode(b"300%3A0.NA/88.100:ops-secret").decode()
        req.add_header("Authorization", "Basic " + auth)
        with urllib.request.urlopen(req, timeout=10) as response:
            assert response.status == 201
        deadline = time.monotonic() + 2.0
        codes = answers()
        while set(codes) != {dns.rcode.NOERROR} and time.monotonic() < deadline:
            time.sleep(0.1)
            codes = answers()
        assert set(codes) == {dns.rcode.NOERROR}
    finally:
        assert server.stop() == 0
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{worker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{worker}")  # the worker stopped with the node


def test_toplevel_command_serves_the_protocol(workdir: Path) -> None:
    db = f"sqlite+aiosqlite:///{workdir / 'toplevel.db'}"
    server = Server(
        "toplevel", "--http", "127.0.0.1:0", "--handle", "127.0.0.1:0", "--db", db, cwd=workdir
    )
    try:
        base = server.wait_for_http(60)
        assert http_json(base + "/sync/v1/") == (
            200,
            {"protocol": "idnode-sync", "versions": [1], "server": "idnode mock top-level node"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            http_json(base + "/sync/v1/routes")
        assert refused.value.code == 401
        assert json.loads(refused.value.read())["error"] == "unsigned"
    finally:
        assert server.stop() == 0
    assert (workdir / "toplevel.db").exists()
