"""The ``idnode`` command fails in one line: a database that is down, a file
that cannot be read or written, an answer that is not the Handle REST API's.
Real processes, real servers on loopback; never a traceback."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from idnode.cli import package_version
from loadtest.refdns import free_port
from registry.services import Actor, Registry
from tests.conftest import ApiClient
from tests.factories import hosted_enterprise, record_json
from tests.test_cli import _env, run_idnode

pytestmark = pytest.mark.slow

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def one_line_failure(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The single stderr line of a command that failed as it should."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    return lines[0]


@pytest.fixture
def down_pg() -> Iterator[str]:
    """A PostgreSQL URL whose port nothing listens on."""
    port = free_port()
    yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x"


@pytest.fixture
def migrated(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "idnode.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def test_backup_into_a_missing_folder_or_from_a_database_that_is_down(
    tmp_path: Path, migrated: str, down_pg: str
) -> None:
    missing_folder = tmp_path / "nowhere" / "registry.backup"
    line = one_line_failure(
        run_idnode("backup", str(missing_folder), "--db", migrated, cwd=tmp_path)
    )
    assert (
        line == f"idnode: backup failed: cannot write {missing_folder}: No such file or directory"
    )

    target = tmp_path / "registry.backup"
    line = one_line_failure(run_idnode("backup", str(target), "--db", down_pg, cwd=tmp_path))
    assert line.startswith("idnode: backup failed: database unavailable: "), line
    assert "Connection refused" in line

    no_db = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'idnode.db'}"
    line = one_line_failure(run_idnode("backup", str(target), "--db", no_db, cwd=tmp_path))
    assert line == f"idnode: backup failed: no database at {tmp_path / 'missing' / 'idnode.db'}"
    assert not (tmp_path / "missing").exists()  # nothing created on the way

    line = one_line_failure(run_idnode("backup", str(tmp_path), "--db", migrated, cwd=tmp_path))
    assert line == f"idnode: backup failed: {tmp_path} is a folder; name a file"
    assert not target.exists()
    assert not list(tmp_path.rglob("*.partial"))


def test_restore_from_an_unreadable_file_or_into_a_database_that_is_down(
    tmp_path: Path, migrated: str, down_pg: str, sqlite_template: Path
) -> None:
    made = tmp_path / "registry.backup"
    assert run_idnode("backup", str(made), "--db", migrated, cwd=tmp_path).returncode == 0

    line = one_line_failure(run_idnode("restore", str(made), "--db", down_pg, cwd=tmp_path))
    assert line.startswith(
        "idnode: restore failed, the database is unchanged: database unavailable: "
    ), line

    target = tmp_path / "target.db"
    shutil.copy(sqlite_template, target)
    into = f"sqlite+aiosqlite:///{target}"
    for unreadable in (tmp_path / "missing.backup", tmp_path):  # absent; a folder
        line = one_line_failure(run_idnode("restore", str(unreadable), "--db", into, cwd=tmp_path))
        assert line.startswith(
            f"idnode: restore failed, the database is unchanged: cannot read {unreadable}: "
        ), line

    no_db = tmp_path / "missing" / "idnode.db"
    line = one_line_failure(
        run_idnode("restore", str(made), "--db", f"sqlite+aiosqlite:///{no_db}", cwd=tmp_path)
    )
    assert line.startswith(f"idnode: restore failed: no database at {no_db}"), line


def test_every_database_command_is_one_line_when_the_database_is_down(
    tmp_path: Path, down_pg: str
) -> None:
    for command in (("migrate",), ("audit", "verify"), ("report",), ("sync", "status")):
        line = one_line_failure(run_idnode(*command, "--db", down_pg, cwd=tmp_path))
        assert line.startswith("idnode: cannot start: "), (command, line)
        assert "Connection refused" in line, (command, line)


def test_sync_verify_with_the_top_level_node_unreachable_says_why_in_words(
    tmp_path: Path, migrated: str
) -> None:
    port = free_port()
    result = run_idnode(
        "sync", "verify", "--toplevel", f"http://127.0.0.1:{port}", "--db", migrated, cwd=tmp_path
    )
    line = one_line_failure(result)
    assert line.startswith(
        f"idnode: top-level node unreachable: Cannot connect to host 127.0.0.1:{port}"
    )
    assert "Error(" not in line  # words, not an exception's repr


def test_bad_arguments_and_unwritable_files_are_one_line(tmp_path: Path, migrated: str) -> None:
    for days in ("0", "-3", "100000000", "many"):
        result = run_idnode("report", "--days", days, "--db", migrated, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "argument --days" in result.stderr.splitlines()[-1], result.stderr
    page = tmp_path / "nowhere" / "report.html"
    result = run_idnode("report", "--html", str(page), "--db", migrated, cwd=tmp_path)
    line = one_line_failure(result)
    assert line == f"idnode: cannot write {page}: No such file or directory"
    assert "resolutions" in result.stdout  # the table was printed before
    line = one_line_failure(run_idnode("dns-name", "--zone", "a..b", "88.100/x", cwd=tmp_path), 2)
    assert line == "idnode: A DNS label is empty."


FAULTY_MIGRATE = """
import sys
import idnode.cli as cli

async def broken(config):
    raise RuntimeError("the disk caught fire\\nwhile migrating")

cli._migrate = broken
sys.exit(cli.main(sys.argv[1:]))
"""


def test_an_unexpected_error_is_one_line_and_its_traceback_is_there_at_debug(
    tmp_path: Path, migrated: str
) -> None:
    """A fault no handler foresees (injected: ``migrate`` raising a RuntimeError)."""

    def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", FAULTY_MIGRATE, "migrate", "--db", migrated],
            cwd=tmp_path,
            env={**_env(None), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    line = one_line_failure(run({}))
    assert line == (
        "idnode: unexpected error: RuntimeError: the disk caught fire "
        "(IDNODE_LOG_LEVEL=debug shows where)"
    )
    debug = run({"IDNODE_LOG_LEVEL": "debug"})
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):"), debug.stderr
    assert ", in broken\n" in debug.stderr  # where it was raised
    assert debug.stderr.splitlines()[-1] == line


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    result = run_idnode("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"idnode {package_version()}\n")
    from importlib import metadata

    assert package_version() == metadata.version("idnode")


def test_version_without_metadata_is_the_package_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    import idnode

    def absent(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", absent)
    assert package_version() == idnode.__version__


async def _resolve(server: str, name: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "idnode",
        "resolve",
        "--http",
        "--server",
        server,
        "--json",
        name,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


NAMES_THAT_NEED_QUOTING = (
    "SN 2026 0001",  # spaces
    "lot#7",
    "what?x=1&y=2",
    "100%25sure",  # "%25" is three characters of the name, not an escaped "%"
    "批次-甲",
    "line/3/station 4",  # slashes inside the suffix
    "a+b",
)


@sqlite_only
async def test_resolve_over_http_quotes_the_name(
    api: ApiClient, registry: Registry, admin: Actor
) -> None:
    prefix = await hosted_enterprise(registry, admin)
    server = api.base.removeprefix("http://")
    for suffix in NAMES_THAT_NEED_QUOTING:
        handle = f"{prefix}/{suffix}"
        url = f"https://example.com/{len(suffix)}"
        status, body = await api.call("POST", "/identityv2/data", json=record_json(handle, url=url))
        assert status == 200 and body["status"] == 1, (handle, body)
        code, out, err = await _resolve(server, handle)
        assert code == 0, (handle, err)
        answer = json.loads(out)
        assert answer["responseCode"] == 1
        urls = [v["data"]["value"] for v in answer["values"] if v["type"] == "URL"]
        assert urls == [url], (handle, answer)
    # A name that differs only in what quoting would lose is not found.
    code, out, _ = await _resolve(server, f"{prefix}/lot")
    assert (code, json.loads(out)["responseCode"]) == (1, 100)


@pytest.fixture
async def not_a_handle_server() -> AsyncIterator[str]:
    """A server that answers like a proxy with no node behind it, or like a web server."""

    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(
            status=502, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
            content_type="text/html",
        )  # fmt: skip

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="hello", content_type="text/plain")

    async def other_json(request: web.Request) -> web.Response:
        return web.json_response({"error": "no such route"}, status=404)

    app = web.Application()
    app.router.add_get("/api/handles/88.100/bad-gateway", bad_gateway)
    app.router.add_get("/api/handles/88.100/plain", plain)
    app.router.add_get("/api/handles/88.100/other-json", other_json)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_resolve_over_http_refuses_what_is_not_a_handle_answer(
    not_a_handle_server: str,
) -> None:
    for name, expected in (
        ("88.100/bad-gateway", "not a Handle REST answer: HTTP 502 text/html ('<html><body>"),
        ("88.100/plain", "not a Handle REST answer: HTTP 200 text/plain ('hello')"),
        ("88.100/other-json", "not a Handle REST answer: HTTP 404 application/json: no respon"),
    ):
        code, out, err = await _resolve(not_a_handle_server, name)
        assert code == 2 and out == "" and "Traceback" not in err, err
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"idnode resolve: {not_a_handle_server}: {expected}"), lines
