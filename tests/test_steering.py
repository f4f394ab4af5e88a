"""Steering the native port by client address (idnode.steering): real reuseport
groups on loopback, datagrams and connections from several loopback addresses.
One client's TCP connections and its session or administrative datagrams reach
the same member of the UDP and the TCP group; anonymous resolutions from one
address still spread over the members."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from idnode.steering import steer_by_client
from loadtest.demo_node import DemoNode
from registry.secrets import load_or_create_server_key
from registry.services import Actor, Registry
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from tests.factories import application
from tests.native_node import Native, native_server, node_secret, seed
from tests.test_sessions import captured, homena_admin, homena_setup, renewed, tcp_once
from tests.test_workers import SMALL_DEMO

MEMBERS = 3
CLIENTS = [f"127.0.0.{n}" for n in range(1, 9)]


def group(kind: int, port: int = 0) -> list[socket.socket]:
    """MEMBERS sockets sharing one loopback port, as the node's processes do."""
    members = []
    for _ in range(MEMBERS):
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
        sock.setblocking(False)
        members.append(sock)
    steer_by_client(members[0], MEMBERS)
    return members


@pytest.fixture
def groups() -> Iterator[tuple[list[socket.socket], list[socket.socket]]]:
    tcp = group(socket.SOCK_STREAM)
    udp = group(socket.SOCK_DGRAM, tcp[0].getsockname()[1])
    yield tcp, udp
    for sock in tcp + udp:
        sock.close()


def receiver(members: list[socket.socket]) -> int:
    ready, _, _ = select.select(members, [], [], 2.0)
    assert ready, "nothing arrived"
    sock = ready[0]
    if sock.type == socket.SOCK_STREAM:
        sock.accept()[0].close()
    else:
        sock.recvfrom(2048)
    return members.index(sock)


def in_session(session_id: int, op: int) -> bytes:
    """A request with ``op`` (session id 0: outside any session)."""
    body = c.HandleOnly(b"0.NA/88.100.1").to_bytes()
    return cl.request(op, body, session_id=session_id).to_bytes()


def send_udp(source: str, port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.sendto(data, ("127.0.0.1", port))


def connect_tcp(source: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def test_one_client_reaches_one_member_over_udp_and_tcp(
    groups: tuple[list[socket.socket], list[socket.socket]],
) -> None:
    tcp, udp = groups
    port = tcp[0].getsockname()[1]
    chosen: dict[str, set[tuple[str, int]]] = {}
    for source in CLIENTS:
        for _ in range(3):
            connection = connect_tcp(source, port)
            chosen.setdefault(source, set()).add(("tcp", receiver(tcp)))
            connection.close()
            send_udp(source, port, in_session(0, c.OC_SESSION_SETUP))
            chosen[source].add(("udp", receiver(udp)))
            send_udp(source, port, in_session(7, c.OC_RESOLUTION))  # inside a session
            chosen[source].add(("udp", receiver(udp)))
            send_udp(source, port, in_session(0, c.OC_HOME_NA))
            chosen[source].add(("udp", receiver(udp)))
    members = {}
    for source, seen in chosen.items():
        indexes = {index for _, index in seen}
        assert len(indexes) == 1, (source, seen)  # every message, both transports
        members[source] = indexes.pop()
    assert len(set(members.values())) == MEMBERS  # and the clients use every member


def test_anonymous_resolutions_spread_from_one_address(
    groups: tuple[list[socket.socket], list[socket.socket]],
) -> None:
    _, udp = groups
    port = udp[0].getsockname()[1]
    resolutions, site_info = set(), set()
    for _ in range(60):
        send_udp("127.0.0.1", port, cl.resolution("88.100.1/x").to_bytes())
        resolutions.add(receiver(udp))
        send_udp("127.0.0.1", port, in_session(0, c.OC_GET_SITE_INFO))
        site_info.add(receiver(udp))
    # The kernel's hash over source ports, not the address, chose.
    assert len(resolutions) > 1 and len(site_info) > 1


def test_a_lone_process_attaches_nothing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        steer_by_client(sock, 1)  # no reuseport group: would raise if it attached


# --- HANDLE.NET HomeNA against two processes ----------------------------------------


async def test_homena_meets_the_same_process_of_two(
    registry: Registry, admin: Actor, tmp_path: Path
) -> None:
    """HomeNA sets its session up over UDP, then sends each request and each
    challenge answer on a TCP connection of its own: with two processes sharing the
    port, every one of those must meet the process that holds the session. Eight
    rounds from one address: unsteered, each would be a coin toss per message."""
    server_key = load_or_create_server_key(tmp_path / "server.pem")
    async with native_server(registry, server_key, processes=2) as native:
        await seed(registry, admin)
        _, spare = await registry.enterprises.apply(admin, application(3))
        prefix = f"0.NA/{spare.prefix}"
        for _ in range(8):
            session_id, key, _answer = await homena_setup(native)
            home = homena_admin(session_id, key, c.OC_HOME_NA, prefix, 1)
            challenge = c.Message.from_bytes(await tcp_once(native, home))
            assert challenge.header.response_code == 402, cl.error_text(challenge)
            digest = c.request_digest(c.Message.from_bytes(home), (2, 5))
            nonce = cred.Challenge.from_bytes(challenge.body[len(digest) :]).nonce
            proof = node_secret().answer(nonce, digest[1:], (2, 5))
            answer = renewed(replace(captured(6), body=proof.to_bytes()), session_id=session_id)
            homed = c.Message.from_bytes(await tcp_once(native, answer.to_bytes()))
            assert homed.header.response_code == 1, cl.error_text(homed)
            unhome = homena_admin(session_id, key, c.OC_UNHOME_NA, prefix, 2)
            unhomed = c.Message.from_bytes(await tcp_once(native, unhome))
            assert unhomed.header.response_code == 1, cl.error_text(unhomed)


@pytest.mark.slow
def test_a_node_with_two_processes_steers_its_native_port(tmp_path: Path) -> None:
    """The node itself attaches the steering: against ``--workers 2``, a session set
    up over UDP is found by its MACed request over TCP every time (RC 402, the
    challenge; in the other process it would be RC 500, no such session)."""
    with DemoNode(tmp_path, *SMALL_DEMO, "--workers", "2") as node:
        host, port = node.endpoints["handle"].rsplit(":", 1)
        where = cast(Native, SimpleNamespace(host=host, port=int(port)))

        async def rounds() -> list[int]:
            codes = []
            for _ in range(8):
                session_id, key, _answer = await homena_setup(where)
                home = homena_admin(session_id, key, c.OC_HOME_NA, "0.NA/88.100.99", 1)
                codes.append(c.response_code_of(await tcp_once(where, home)))
            return codes

        assert asyncio.run(rounds()) == [402] * 8
