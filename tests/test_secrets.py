"""Secrets: passwords, secret keys and tokens never reach the logs,
even at debug level with the access log on; a key file others can read stops
the node at start; HTTPS takes TLS 1.2 or later only."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import ssl
from pathlib import Path

import pytest

from idnode.demo import DEMO_ADMIN, DEMO_USER_PASSWORD, demo_enterprises, example_handle
from loadtest.demo_node import DemoNode
from tests.factories import json_call, self_signed
from tests.test_cli import ANY_PORTS, run_idnode

pytestmark = pytest.mark.slow


def test_no_secret_reaches_the_logs(tmp_path: Path) -> None:
    env = {"IDNODE_LOG_LEVEL": "debug", "IDNODE_ACCESS_LOG": "true", "IDNODE_LOGIN_ATTEMPTS": "0"}
    wrong = "Wr0ng-but-secret-guess"
    handle = example_handle(demo_enterprises(1)[0], 1)
    with DemoNode(tmp_path, "--enterprises", "32", "--identifiers", "64", env=env) as node:
        token_url = f"{node.base}/identity/token"
        login = {"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}
        token = json_call(token_url, login)[1]["data"]["token"]
        json_call(token_url, {"username": DEMO_ADMIN[0], "password": wrong})
        json_call(token_url, {"username": "ent1", "password": DEMO_USER_PASSWORD})
        json_call(f"{node.base}/identityv2/data/detail?handle={handle}", headers={
            "Authorization": f"Bearer {token}"
        })  # fmt: skip
        for secret in (DEMO_ADMIN[1], wrong):
            basic = base64.b64encode(f"300:0.NA/88.100:{secret}".encode()).decode()
            json_call(
                f"{node.base}/api/handles/{handle}", headers={"Authorization": f"Basic {basic}"}
            )
        json_call(f"{node.base}/api/handles/{handle}?token={token}")  # a token in a URL, even
    log = (tmp_path / "node.log").read_text()
    assert '"idnode.access"' in log  # the access log was on: the requests are there
    for secret in (DEMO_ADMIN[1], wrong, DEMO_USER_PASSWORD, token):
        assert secret not in log, f"{secret[:6]}... is in the log"


def test_a_key_file_others_can_read_stops_the_node(tmp_path: Path) -> None:
    env = {"IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'node.db'}"}
    assert run_idnode("migrate", cwd=tmp_path, env=env).returncode == 0
    (tmp_path / "idnode.key").write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    os.chmod(tmp_path / "idnode.key", 0o644)
    started = run_idnode("serve", *ANY_PORTS, cwd=tmp_path, env=env, timeout=60)
    assert started.returncode == 1
    assert "readable by others" in started.stderr and "chmod 600" in started.stderr


def test_https_takes_only_modern_tls(tmp_path: Path) -> None:
    cert, key, _serial = self_signed(tmp_path)
    env = {"IDNODE_TLS_CERT": str(cert), "IDNODE_TLS_KEY": str(key)}
    with DemoNode(tmp_path, "--enterprises", "32", "--identifiers", "64", env=env) as node:
        host, port = node.endpoints["http"].rsplit(":", 1)

        def handshake(version: ssl.TLSVersion) -> str | None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = version
            # The server (or this client's own OpenSSL) refusing is what is wanted.
            with (
                contextlib.suppress(ssl.SSLError, ConnectionResetError),
                socket.create_connection((host, int(port)), timeout=10) as raw,
                context.wrap_socket(raw) as tls,
            ):
                return tls.version()
            return None

        assert handshake(ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
        assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        assert handshake(ssl.TLSVersion.TLSv1_1) is None
        assert handshake(ssl.TLSVersion.TLSv1) is None
