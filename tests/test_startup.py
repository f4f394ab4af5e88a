"""A node that cannot have a port it needs fails in one line, and what it had
opened before the failure — listeners, the change feed, the accounting — is
closed again: its other ports are free for the next start."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode.config import Config, Endpoint
from idnode.listen import StartupError
from idnode.node import open_node, serve
from idnode.servers import start_servers


def _ipv6_loopback() -> bool:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("::1", 0))
        except OSError:
            return False
    return True


HOSTS = ("127.0.0.1", "::1") if _ipv6_loopback() else ("127.0.0.1",)
"""Where a node on 127.0.0.1 listens: the address and its IPv6 twin, where there is IPv6."""


def vacant(port: int) -> bool:
    """Whether nothing holds ``port``: TCP and UDP, at every address of ``HOSTS``."""
    for host in HOSTS:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(family, kind) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    return False
    return True


def vacant_ports(count: int) -> list[int]:
    found: list[int] = []
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in found and vacant(port):
            found.append(port)
            if len(found) == count:
                return found
    raise AssertionError("no vacant ports on loopback")


@contextlib.contextmanager
def taken(port: int) -> Iterator[None]:
    """Someone else listening on TCP ``port`` at 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
        yield


def node_config(database_url: str, tmp_path: Path, http: int, handle: int, dns: int) -> Config:
    return Config(
        database_url=database_url,
        key_file=str(tmp_path / "idnode.key"),
        server_key_file=str(tmp_path / "idnode-server.pem"),
        http=Endpoint("127.0.0.1", http),
        handle=Endpoint("127.0.0.1", handle),
        dns=Endpoint("127.0.0.1", dns),
        workers=1,
    )


def others_running() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_a_taken_dns_port_leaves_the_http_and_handle_ports_free(
    database_url: str, tmp_path: Path
) -> None:
    http, handle, dns = vacant_ports(3)
    config = node_config(database_url, tmp_path, http, handle, dns)
    async with open_node(config) as node:
        with taken(dns), pytest.raises(StartupError) as failed:
            await start_servers(node, reuse_port=False, node_gauges=False)
        assert str(failed.value) == f"cannot listen on 127.0.0.1:{dns}: Address already in use"
        # Checked while the failed start's frames are still alive (the traceback
        # holds them): the ports are free because they were closed, not collected.
        assert vacant(http) and vacant(handle)
        assert node.endpoints == {} and not others_running()

        # With the DNS port free again, the same node starts on the same ports.
        servers = await start_servers(node, reuse_port=False, node_gauges=False)
        try:
            assert (servers.http.port, servers.handle.port, servers.dns.port) == (http, handle, dns)
        finally:
            await servers.close()
        assert vacant(http) and vacant(handle) and vacant(dns)
        assert not others_running()


async def test_a_taken_metrics_port_stops_the_started_servers(
    database_url: str, tmp_path: Path
) -> None:
    http, handle, dns, metrics = vacant_ports(4)
    config = dataclasses.replace(
        node_config(database_url, tmp_path, http, handle, dns), metrics=f"127.0.0.1:{metrics}"
    )
    with taken(metrics), pytest.raises(StartupError) as failed:
        await serve(config)
    assert str(failed.value) == f"cannot listen on 127.0.0.1:{metrics}: Address already in use"
    # The servers had started (listeners, change feed, accounting): all stopped.
    assert vacant(http) and vacant(handle) and vacant(dns)
    assert not others_running()
