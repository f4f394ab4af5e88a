"""Quotas and rate limits: per-client request rates and daily limits
on every port, login brute-force lockout — the bookkeeping with a fake clock,
then a real node refusing in each protocol's own words."""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from idnode.demo import DEMO_ADMIN, DEMO_USER_PASSWORD, demo_enterprises, example_handle
from loadtest.demo_node import DemoNode
from metrics.clients import EXEMPT, ClientKeys
from registry import store
from registry.dnsnames import ZoneNames
from registry.errors import PrefixLimit, RegisterCountLimit
from registry.grammar import Grammar
from registry.lockout import LoginLockout
from registry.models import HandleValue, Principal, Role
from registry.permissions import HandleIdentity
from registry.services import Actor, Registry
from registry.services.base import enterprise_key
from resolver import codes as rc
from resolver.handle import client
from resolver.handle import codec as c
from resolver.limits import Guard, Limit, Limits, TokenBuckets
from tests.factories import application, hosted_enterprise, json_call, record, scrape, summed

SMALL_DEMO = ("--enterprises", "32", "--identifiers", "64")
HANDLE = example_handle(demo_enterprises(1)[0], 1)
"""A record of the small demo, asked for by the tests of a running node."""
ZONE = "hdl.idnode.test."


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- the bookkeeping ------------------------------------------------------------------


def test_client_keys_group_ipv6_by_64_and_skip_exempt_networks() -> None:
    keys = ClientKeys(["127.0.0.0/8", "10.9.0.0/16"])
    assert keys.key("127.0.0.1") == EXEMPT and keys.key("10.9.3.4") == EXEMPT
    assert keys.key("192.0.2.7") == "192.0.2.7"
    assert keys.key("2001:db8:1:2::1") == keys.key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert keys.key("2001:db8:1:3::1") != keys.key("2001:db8:1:2::1")
    assert keys.key("not-an-address") == "not-an-address"


def test_token_buckets_refill_at_their_rate_and_say_when() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3.0, clock=clock)
    assert [buckets.take("a")[0] for _ in range(4)] == [True, True, True, False]
    allowed, bucket = buckets.take("a")
    assert not allowed and buckets.wait(bucket) == pytest.approx(0.5)
    assert buckets.take("b")[0]  # another key has its own bucket
    clock.now += 0.5
    assert buckets.take("a")[0] and not buckets.take("a")[0]
    clock.now += 10
    assert [buckets.take("a")[0] for _ in range(4)] == [True, True, True, False]  # capped


def test_guard_counts_a_calendar_day_in_the_node_time_zone() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    evening = datetime(2026, 12, 6, 23, 59, 50, tzinfo=zone).timestamp()
    wall = Clock(evening)
    guard = Guard(Limits(client_daily=3, exempt=()), zone=zone, wall=wall)
    assert [guard.client("192.0.2.1") for _ in range(3)] == [None, None, None]
    refusal = guard.client("192.0.2.1")
    assert refusal is not None and refusal.limit is Limit.DAILY
    assert refusal.retry_after == pytest.approx(10.0)  # until midnight in Shanghai
    assert refusal.retry_after_header == "10"
    assert guard.client("192.0.2.2") is None  # another client's day is its own
    wall.now += timedelta(seconds=11).total_seconds()  # a new day
    assert guard.client("192.0.2.1") is None
    assert guard.refused[Limit.DAILY] == 1


def test_guard_limits_the_rate_except_for_exempt_clients() -> None:
    clock = Clock()
    guard = Guard(Limits(client_rate=1, client_burst=2, exempt=("127.0.0.0/8",)), clock=clock)
    assert guard.client("192.0.2.1") is None and guard.client("192.0.2.1") is None
    refusal = guard.client("192.0.2.1")
    assert refusal is not None and refusal.limit is Limit.RATE
    assert refusal.retry_after_header == "1"
    assert all(guard.client("127.0.0.1") is None for _ in range(100))
    guard.reconfigure(Limits())  # a reload turning the limits off
    assert guard.client("192.0.2.1") is None


def test_lockout_locks_account_and_address_then_lets_go() -> None:
    clock = Clock()
    lockout = LoginLockout(attempts=3, seconds=60, exempt=("127.0.0.0/8",), clock=clock)
    for _ in range(2):
        lockout.failed("Alice", "192.0.2.1")
    assert lockout.locked_for("alice", "192.0.2.1") == 0
    lockout.succeeded("alice")  # a success forgets the account's failures
    for _ in range(2):
        lockout.failed("alice", "192.0.2.9")
    assert lockout.locked_for("alice", "192.0.2.9") == 0
    lockout.failed("alice", "192.0.2.9")
    assert lockout.locked_for("alice", "203.0.113.5") == 60  # the account, from anywhere
    assert lockout.locked_for("bob", "192.0.2.9") == 60  # the address, for anyone
    assert lockout.locked_for("bob", "203.0.113.5") == 0
    for _ in range(5):  # loopback (exempt) is limited through the account only
        lockout.failed("carol", "127.0.0.1")
    assert lockout.locked_for("dave", "127.0.0.1") == 0
    assert lockout.locked_for("carol", "127.0.0.1") == 60
    clock.now += 61
    assert lockout.locked_for("alice", "192.0.2.9") == 0
    assert lockout.locked_for("carol", "127.0.0.1") == 0


def test_failures_spread_beyond_the_window_do_not_lock() -> None:
    clock = Clock()
    lockout = LoginLockout(attempts=3, seconds=60, exempt=(), clock=clock)
    for _ in range(6):
        lockout.failed("alice", "192.0.2.1")
        clock.now += 31
    assert lockout.locked_for("alice", "192.0.2.1") == 0


# --- a real node ----------------------------------------------------------------------


def _native(endpoint: str, handle: str, *, udp: bool) -> int:
    host, port = endpoint.rsplit(":", 1)
    message = client.resolution(handle)
    call = client.udp_call if udp else client.tcp_call
    answer = asyncio.run(call(host, int(port), message))
    return answer.header.response_code


def _dns(endpoint: str, *, tcp: bool) -> int:
    host, port = endpoint.rsplit(":", 1)
    query = dns.message.make_query(ZONE, dns.rdatatype.SOA)
    ask = dns.query.tcp if tcp else dns.query.udp
    return ask(query, host, port=int(port), timeout=5).rcode()


@pytest.mark.slow
def test_a_client_over_its_rate_is_refused_on_every_port(tmp_path: Path) -> None:
    env = {"IDNODE_LIMITS_EXEMPT": "", "IDNODE_CLIENT_RATE": "1", "IDNODE_CLIENT_BURST": "4"}
    with DemoNode(tmp_path, *SMALL_DEMO, env=env) as node:
        url = f"{node.base}/api/handles/{HANDLE}"
        statuses = [json_call(url)[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 200]  # the burst
        status, body, headers = json_call(url)
        assert status == 429 and body["responseCode"] == rc.RC_SERVER_TOO_BUSY
        assert int(headers["Retry-After"]) >= 1
        # One budget per client, whatever the port: it is spent everywhere.
        assert _native(node.endpoints["handle"], HANDLE, udp=True) == rc.RC_SERVER_TOO_BUSY
        assert _native(node.endpoints["handle"], HANDLE, udp=False) == rc.RC_SERVER_TOO_BUSY
        assert _dns(node.endpoints["dns"], tcp=False) == dns.rcode.REFUSED
        assert _dns(node.endpoints["dns"], tcp=True) == dns.rcode.REFUSED
        assert json_call(f"{node.base}/healthz")[0] == 200  # monitoring is never limited
        time.sleep(1.2)  # a token later
        assert _native(node.endpoints["handle"], HANDLE, udp=True) == rc.RC_SUCCESS
        samples = scrape(f"{node.base}/metrics")
        for protocol in ("http", "handle_udp", "handle_tcp", "dns"):
            limited = summed(
                samples, "idnode_rate_limited_total", protocol=protocol, action="refused"
            )
            assert limited >= 1, protocol


@pytest.mark.slow
def test_a_client_over_its_daily_requests_gets_603(tmp_path: Path) -> None:
    env = {"IDNODE_LIMITS_EXEMPT": "", "IDNODE_CLIENT_RATE": "0", "IDNODE_CLIENT_DAILY_LIMIT": "6"}
    with DemoNode(tmp_path, *SMALL_DEMO, env=env) as node:
        url = f"{node.base}/api/handles/{HANDLE}"
        assert [json_call(url)[0] for _ in range(3)] == [200, 200, 200]
        assert _native(node.endpoints["handle"], HANDLE, udp=True) == rc.RC_SUCCESS
        assert _native(node.endpoints["handle"], HANDLE, udp=False) == rc.RC_SUCCESS
        assert _dns(node.endpoints["dns"], tcp=False) == dns.rcode.NOERROR
        # The day's six are spent.
        assert _native(node.endpoints["handle"], HANDLE, udp=True) == rc.RC_REQUEST_LIMIT_DAILY
        assert _native(node.endpoints["handle"], HANDLE, udp=False) == rc.RC_REQUEST_LIMIT_DAILY
        assert _dns(node.endpoints["dns"], tcp=True) == dns.rcode.REFUSED
        status, body, headers = json_call(url)
        assert status == 429 and body["responseCode"] == rc.RC_REQUEST_LIMIT_DAILY
        midnight = datetime.now(ZoneInfo("Asia/Shanghai")).replace(
            hour=0, minute=0, second=0, microsecond=0
        ) + timedelta(days=1)
        left = midnight.timestamp() - time.time()
        assert abs(int(headers["Retry-After"]) - left) <= 5


@pytest.mark.slow
def test_logins_lock_after_repeated_failures(tmp_path: Path) -> None:
    env = {"IDNODE_LIMITS_EXEMPT": "", "IDNODE_LOGIN_ATTEMPTS": "3", "IDNODE_LOGIN_LOCKOUT": "2"}
    with DemoNode(tmp_path, *SMALL_DEMO, env=env) as node:
        token_url = f"{node.base}/identity/token"
        wrong = {"username": DEMO_ADMIN[0], "password": "guess"}
        right = {"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}
        for _ in range(3):
            status, body, _ = json_call(token_url, wrong)
            assert status == 200 and body["status"] != 1  # SNMS: a failed login
        status, body, headers = json_call(token_url, right)  # even the right password
        assert status == 429 and "too many failed logins" in body["message"]
        assert headers["Retry-After"] == "2"
        # The address is locked too: another account, and HTTP Basic on the REST API.
        user = {"username": "ent1", "password": "whatever"}
        assert json_call(token_url, user)[0] == 429
        basic = base64.b64encode(f"{DEMO_ADMIN[0]}:{DEMO_ADMIN[1]}".encode()).decode()
        status, body, headers = json_call(
            f"{node.base}/api/handles/{HANDLE}", headers={"Authorization": f"Basic {basic}"}
        )
        assert status == 429 and headers["Retry-After"]
        time.sleep(2.2)  # the lock lasts login_lockout seconds
        status, body, _ = json_call(token_url, right)
        assert status == 200 and body["status"] == 1 and body["data"]["token"]


# --- quotas -----------------------------------------------------------------------------


async def test_an_enterprise_registers_up_to_its_quota_on_every_path(
    registry: Registry, admin: Actor
) -> None:
    prefix = await hosted_enterprise(registry, admin)
    other = await hosted_enterprise(registry, admin, 2)
    registry.services.identifier_limit = 4
    assert await registry.identifiers.create(admin, record(f"{prefix}/q-1"))
    batch = [record(f"{prefix}/q-{i}") for i in (1, 2, 3, 4, 5)]  # q-1 again: a retry
    results = await registry.identifiers.batch_create(admin, batch)
    assert [r.ok for r in results] == [True, True, True, True, False]
    assert "registration count limit 4" in results[4].message
    with pytest.raises(RegisterCountLimit) as refused:
        await registry.identifiers.create(admin, record(f"{prefix}/q-6"))
    assert rc.rc_of(refused.value) == rc.RC_REGISTER_COUNT_LIMIT == 604
    value = HandleValue(1, "URL", b"https://example.com/native")
    with pytest.raises(RegisterCountLimit):  # the native protocol's create
        await registry.handles.create(admin, f"{prefix}/n-1", [value], overwrite=False)
    # Updates are not registrations; another enterprise has its own quota.
    await registry.identifiers.update(admin, record(f"{prefix}/q-2", url="https://example.com/y"))
    assert await registry.identifiers.create(admin, record(f"{other}/q-1"))
    async with registry.services.read() as conn:
        assert await store.count_enterprise_identifiers(conn, 1) == 4


async def test_the_node_allocates_prefixes_up_to_its_quota(
    registry: Registry, admin: Actor
) -> None:
    await hosted_enterprise(registry, admin, 1)
    registry.services.prefix_limit = 2
    await hosted_enterprise(registry, admin, 2)
    with pytest.raises(PrefixLimit) as refused:
        await registry.enterprises.apply(admin, application(3))
    assert rc.rc_of(refused.value) == rc.RC_PREFIX_LIMIT == 605
    async with registry.services.read() as conn:
        assert await store.count_enterprises(conn) == 2  # nothing half-filed


@pytest.mark.slow
def test_an_enterprise_over_its_rate_is_refused_whatever_its_address(tmp_path: Path) -> None:
    """Its users and keys share one budget, on the SNMS API and the REST API alike;
    other enterprises and node administrators are not held back by it."""
    env = {"IDNODE_ENTERPRISE_RATE": "1", "IDNODE_ENTERPRISE_BURST": "3"}
    ent1, ent2 = demo_enterprises(2)
    with DemoNode(tmp_path, *SMALL_DEMO, env=env) as node:
        token_url = f"{node.base}/identity/token"

        def token(username: str, password: str) -> str:
            status, body, _ = json_call(token_url, {"username": username, "password": password})
            assert status == 200 and body["status"] == 1, body
            return str(body["data"]["token"])

        first, second = token("ent1", DEMO_USER_PASSWORD), token("ent2", DEMO_USER_PASSWORD)
        admin = token(*DEMO_ADMIN)
        detail = f"{node.base}/identityv2/data/detail?handle={example_handle(ent1, 1)}"
        rest = f"{node.base}/api/handles/{example_handle(ent1, 1)}"
        bearer = {"Authorization": f"Bearer {first}"}
        assert [json_call(detail, headers=bearer)[0] for _ in range(2)] == [200, 200]
        assert json_call(rest, headers=bearer)[0] == 200  # the third, on the other API
        status, body, headers = json_call(detail, headers=bearer)
        assert status == 429 and "too many requests" in body["message"]
        assert int(headers["Retry-After"]) >= 1
        status, body, _ = json_call(rest, headers=bearer)
        assert status == 429 and body["responseCode"] == rc.RC_SERVER_TOO_BUSY
        other = f"{node.base}/identityv2/data/detail?handle={example_handle(ent2, 1)}"
        assert json_call(other, headers={"Authorization": f"Bearer {second}"})[0] == 200
        assert all(
            json_call(detail, headers={"Authorization": f"Bearer {admin}"})[0] == 200
            for _ in range(5)
        )
        assert json_call(rest)[0] == 200  # anonymous callers are limited per address only


def test_whose_budget_an_authenticated_caller_spends() -> None:
    def principal(role: Role, enterprise: int | None) -> Principal:
        return Principal(1, "u", role, enterprise)

    assert enterprise_key(Actor(principal(Role.ENTERPRISE, 7)), "88.100") == "enterprise:7"
    assert enterprise_key(Actor(principal(Role.NODE_ADMIN, None)), "88.100") is None
    assert enterprise_key(Actor(None), "88.100") is None
    own = HandleIdentity("0.NA/88.100", 300, "0.NA/88.100")
    assert enterprise_key(Actor(None, identity=own), "88.100") is None  # the node's admin
    theirs = HandleIdentity("0.NA/88.100.5", 300, "0.NA/88.100.5")
    assert enterprise_key(Actor(None, identity=theirs), "88.100") == "identity:0.NA/88.100.5"


# --- amplification ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_udp_answer_is_never_much_larger_than_its_request(tmp_path: Path) -> None:
    """With a factor of 1, a demo record goes over UDP as one small RC 2 (native) or
    a truncated answer (DNS): the clients ask again over TCP and get it whole."""
    env = {"IDNODE_UDP_AMPLIFICATION": "1"}
    with DemoNode(tmp_path, *SMALL_DEMO, env=env) as node:
        host, port = node.endpoints["handle"].rsplit(":", 1)
        request = client.resolution(HANDLE).to_bytes()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            udp.sendto(request, (host, int(port)))
            datagram = udp.recv(65536)
            udp.settimeout(0.5)
            with pytest.raises(TimeoutError):
                udp.recv(65536)  # one datagram, no more
        assert len(datagram) <= 1.25 * len(request)  # the error's short message
        answer = c.Message.from_bytes(datagram)
        assert answer.header.response_code == rc.RC_ERROR
        assert "ask over TCP" in client.error_text(answer)
        resolved = subprocess.run(
            [sys.executable, "-m", "idnode", "resolve", HANDLE, "--server",
             node.endpoints["handle"], "--udp"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert resolved.returncode == 0 and "URL" in resolved.stdout, resolved.stderr
        assert "asking over TCP" in resolved.stderr

        dns_host, dns_port = node.endpoints["dns"].rsplit(":", 1)
        owner = ZoneNames.of(ZONE).of_identifier(Grammar().parse(HANDLE))
        query = dns.message.make_query(owner, dns.rdatatype.URI)
        wire = query.to_wire()
        truncated = dns.query.udp(query, dns_host, port=int(dns_port), timeout=5)
        assert truncated.flags & dns.flags.TC and not truncated.answer
        assert len(truncated.to_wire()) <= len(wire)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns_host]
        resolver.port = int(dns_port)
        whole = resolver.resolve(owner, "URI")  # retries over TCP on TC, as resolvers do
        assert any("https://" in rdata.to_text() for rdata in whole)
        samples = scrape(f"{node.base}/metrics")
        for protocol in ("handle_udp", "dns"):
            limited = summed(
                samples, "idnode_rate_limited_total", protocol=protocol, action="truncated"
            )
            assert limited >= 1, protocol
