"""Serving in production: IPv6 beside every IPv4 listener, SIGHUP
reloads (configuration and TLS certificate) in the node and its workers,
request ids in the JSON logs, a SIGTERM that lets requests in flight finish.
Real processes, real clients: dig and dnspython, urllib, ``idnode resolve``."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography import x509

from idnode.config import Config, ConfigError, ipv6_twin
from idnode.demo import DEMO_ADMIN, demo_enterprises, example_handle, registration
from idnode.workers import worker_count
from loadtest.demo_node import DemoNode, children
from tests.factories import needs, self_signed
from tests.test_cli import Server, run_idnode

SMALL_DEMO = ("--enterprises", "32", "--identifiers", "64")
ZONE = "hdl.idnode.test."


def split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def log_lines(node: DemoNode) -> list[dict[str, Any]]:
    entries = []
    for line in (node.workdir / "node.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"not within {timeout:g} s: {what}")


# --- settings -------------------------------------------------------------------------


def test_one_worker_per_core_unless_told() -> None:
    assert worker_count(Config()) == len(os.sched_getaffinity(0))
    assert worker_count(Config(workers=3)) == 3


def test_the_ipv6_twin_of_each_address() -> None:
    assert ipv6_twin("auto", "127.0.0.1") == "::1"
    assert ipv6_twin("auto", "0.0.0.0") == "::"
    assert ipv6_twin("auto", "localhost") == "::1"
    assert ipv6_twin("auto", "192.0.2.10") is None  # a public address: name its twin
    assert ipv6_twin("2001:db8::5", "192.0.2.10") == "2001:db8::5"
    assert ipv6_twin("auto", "::1") is None  # already IPv6
    assert ipv6_twin("off", "127.0.0.1") is None
    with pytest.raises(ConfigError, match="listen_ipv6"):
        ipv6_twin("sometimes", "127.0.0.1")


# --- IPv6 -------------------------------------------------------------------------------


@pytest.mark.slow
@needs(shutil.which("dig") is not None, "dig")
def test_every_listener_also_answers_on_ipv6(tmp_path: Path) -> None:
    handle = example_handle(demo_enterprises(1)[0], 1)
    with DemoNode(tmp_path, *SMALL_DEMO, "--workers", "2", "--metrics", "127.0.0.1:0") as node:
        for service in ("http", "handle", "dns"):
            v6_host, v6_port = split(node.endpoints[service + "6"])
            assert v6_host == "::1"
            assert v6_port == split(node.endpoints[service])[1]  # the same port

        http6 = node.endpoints["http6"]
        with urllib.request.urlopen(f"http://{http6}/api/handles/{handle}", timeout=10) as got:
            assert json.loads(got.read())["responseCode"] == 1

        for transport in ("--udp", "--tcp"):
            resolved = subprocess.run(
                [sys.executable, "-m", "idnode", "resolve", handle, "--server",
                 node.endpoints["handle6"], transport],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert resolved.returncode == 0, resolved.stderr
            assert "URL" in resolved.stdout

        _, dns_port = split(node.endpoints["dns6"])
        query = dns.message.make_query(ZONE, dns.rdatatype.SOA)
        for answer in (
            dns.query.udp(query, "::1", port=dns_port, timeout=5),
            dns.query.tcp(query, "::1", port=dns_port, timeout=5),
        ):
            assert answer.answer and answer.answer[0].rdtype == dns.rdatatype.SOA
        dug = subprocess.run(
            ["dig", "@::1", "-p", str(dns_port), "+short", "+tcp", ZONE, "NS"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert dug.stdout.strip() == f"ns1.{ZONE}"

        metrics6 = node.endpoints["metrics6"]
        with urllib.request.urlopen(f"http://{metrics6}/healthz", timeout=10) as got:
            assert json.loads(got.read())["status"] == "ok"

        # Both processes hold every IPv6 port (SO_REUSEPORT), not only the node.
        worker = children(node.pid)
        assert len(worker) == 1
        inodes = _socket_inodes(worker[0])
        for service in ("http6", "handle6", "dns6"):
            assert _listens(inodes, split(node.endpoints[service])[1]), service


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _listens(inodes: set[str], port: int) -> bool:
    """Whether one of these sockets is a TCP listener on ::1 at ``port``."""
    for line in Path("/proc/net/tcp6").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port and inode in inodes:
            return address == "00000000000000000000000001000000"  # ::1
    return False


# --- SIGHUP -----------------------------------------------------------------------------


def _write_config(path: Path, **settings: Any) -> None:
    lines = [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")


def _served_serials(endpoint: str, count: int) -> set[int]:
    """The serial numbers of the certificates ``count`` new TLS connections got."""
    host, port = split(endpoint)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    serials = set()
    for _ in range(count):
        with (
            socket.create_connection((host, port), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            serials.add(x509.load_der_x509_certificate(der).serial_number)
    return serials


def _get(endpoint: str, path: str, request_id: str) -> tuple[int, str]:
    host, port = split(endpoint)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(host, port, timeout=10, context=context)
    try:
        connection.request("GET", path, headers={"X-Request-Id": request_id})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-Request-Id") or ""
    finally:
        connection.close()


@pytest.mark.slow
def test_sighup_reloads_the_certificate_and_settings_in_every_worker(tmp_path: Path) -> None:
    cert, key, first = self_signed(tmp_path)
    config = tmp_path / "idnode.toml"
    _write_config(config, tls_cert=str(cert), tls_key=str(key), access_log=False)
    with DemoNode(tmp_path, *SMALL_DEMO, "--workers", "2", "--config", str(config)) as node:
        http_at = node.endpoints["http"]
        assert _served_serials(http_at, 10) == {first}
        status, echoed = _get(http_at, "/healthz", "before-reload-1")
        assert (status, echoed) == (200, "before-reload-1")
        assert not [e for e in log_lines(node) if e.get("logger") == "idnode.access"]

        # A renewed certificate under the same file names, the access log switched
        # on, and a setting only a restart can change.
        _cert, _key, second = self_signed(tmp_path)
        _write_config(
            config, tls_cert=str(cert), tls_key=str(key), access_log=True, dns_zone="other.test."
        )
        os.kill(node.pid, signal.SIGHUP)
        wait_for(lambda: _served_serials(http_at, 10) == {second}, 15, "the new certificate")
        ids = [f"after-reload-{i}" for i in range(30)]
        for request_id in ids:
            assert _get(http_at, "/healthz", request_id) == (200, request_id)
        wait_for(
            lambda: {e.get("request_id") for e in log_lines(node)} >= set(ids), 10, "access log"
        )
        access = [e for e in log_lines(node) if e.get("request_id") in ids]
        assert {e["logger"] for e in access} == {"idnode.access"}
        assert all(e["status"] == 200 and e["path"] == "/healthz" for e in access)
        assert len({e["pid"] for e in access}) == 2  # the node and its worker both reloaded
        assert any("wait for a restart: dns_zone" in e["msg"] for e in log_lines(node)), (
            "the restart-only change is named"
        )

        # A broken configuration is refused whole: the running certificate stays.
        _write_config(config, tls_cert=str(cert), tls_key=str(tmp_path / "missing.pem"))
        os.kill(node.pid, signal.SIGHUP)
        wait_for(lambda: any("reload refused" in e["msg"] for e in log_lines(node)), 10, "refusal")
        assert _served_serials(http_at, 10) == {second}

        # SIGHUP straight to a worker (a signal to the whole group) does not end it.
        worker = children(node.pid)[0]
        os.kill(worker, signal.SIGHUP)
        time.sleep(0.5)
        assert worker in children(node.pid)
        assert node.proc is not None and node.proc.poll() is None


# --- SIGTERM ----------------------------------------------------------------------------


def _token(base: str) -> str:
    login = json.dumps({"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}).encode()
    request = urllib.request.Request(
        f"{base}/identity/token", data=login, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as got:
        return str(json.loads(got.read())["data"]["token"])


@pytest.mark.slow
def test_sigterm_lets_requests_in_flight_finish(tmp_path: Path) -> None:
    """Three batch registrations of 2,000 (seconds of work, one after another
    behind the registry's write lock) are in flight when SIGTERM arrives: each
    is answered in full, the node exits 0, and every identifier is stored."""
    ent = demo_enterprises(1)[0]
    with DemoNode(tmp_path, *SMALL_DEMO) as node:
        base = node.base
        token = _token(base)
        answers: list[tuple[float, list[Any]]] = []

        bodies = [
            json.dumps([registration(ent, f"TERM-{batch}-{i}") for i in range(2000)]).encode()
            for batch in range(3)
        ]

        def register(batch: int) -> None:
            request = urllib.request.Request(
                f"{base}/identityv2/data/batchCreate",
                data=bodies[batch],
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=120) as got:
                answers.append((time.monotonic(), json.loads(got.read())["data"]))

        threads = [threading.Thread(target=register, args=(b,)) for b in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # all three sent; the first still being written
        assert node.proc is not None
        signalled = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=120) == 0
        for thread in threads:
            thread.join(timeout=60)
        assert len(answers) == 3
        assert max(at for at, _ in answers) > signalled  # some were still in flight
        for _, items in answers:
            assert len(items) == 2000 and all(item["msg"] == "success" for item in items)
    with contextlib.closing(sqlite3.connect(node.database)) as db:
        query = "SELECT count(*) FROM identifiers WHERE name LIKE '%/TERM-%'"
        assert db.execute(query).fetchone() == (6000,)


@pytest.mark.slow
def test_sighup_ends_no_idnode_process(tmp_path: Path) -> None:
    """A SIGHUP sent to every idnode process (log rotation) reloads what each can and
    ends none: the sync worker alone and the mock top-level node keep serving."""
    env = {"IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'node.db'}"}
    assert run_idnode("migrate", cwd=tmp_path, env=env).returncode == 0
    top = Server("toplevel", "--http", "127.0.0.1:0", "--handle", "127.0.0.1:0",
                 "--db", f"sqlite+aiosqlite:///{tmp_path / 'top.db'}", cwd=tmp_path)  # fmt: skip
    try:
        top_url = top.wait_for_http(60)
        sync = Server("sync", "--toplevel", top_url, "--metrics", "127.0.0.1:0",
                      cwd=tmp_path, env=env)  # fmt: skip
        try:
            lines = sync.read_more("listening metrics ", timeout=60)
            metrics = next(
                line.split()[-1] for line in lines if line.startswith("listening metrics ")
            )
            for process in (top.proc, sync.proc):
                process.send_signal(signal.SIGHUP)
            time.sleep(1.0)
            assert top.proc.poll() is None and sync.proc.poll() is None
            with urllib.request.urlopen(f"http://{metrics}/healthz", timeout=10) as got:
                assert got.status == 200
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{top_url}/sync/v1/routes", timeout=10)
            assert refused.value.code == 401  # it answers (an unsigned request: refused)
        finally:
            assert sync.stop() == 0
    finally:
        assert top.stop() == 0
