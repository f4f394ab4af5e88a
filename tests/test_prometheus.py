"""The shipped monitoring against a real Prometheus: the top-level node and a node
that syncs with it run as processes, the Debian ``prometheus`` scrapes the node
every second and evaluates ``metrics/rules/idnode.rules.yml``, the test drives a
short load over every protocol, and then every query of the dashboard and every
recording rule must return data, and every alert must evaluate without error.

tests/test_rules.py checks the same files statically (promtool); this test finds
what only real data shows: a series the node never exports, a label a query
expects and the node does not set, a rule that fails on the samples it gets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import dns.asyncquery
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from idnode.config import Endpoint
from loadtest.prometheus import Prometheus
from loadtest.refdns import free_port
from registry.dnsnames import ZoneNames
from registry.grammar import Grammar
from resolver.handle import client
from resolver.handle import codec as c
from tests.factories import needs
from tests.test_cli import ANY_PORTS, Server
from tests.test_federation import listening
from tests.test_rules import VARIABLE, VARIABLES, exprs, needs_yaml, rules_of
from tests.test_sync_faults import AUTH, migrated_env, register, toplevel, wait_until

pytestmark = pytest.mark.slow

PROMETHEUS = shutil.which("prometheus")
ZONE = "hdl.idnode.test."
TAG = "prom"
REGISTERED = 6
"""Identifiers registered through REST before the load: the "found" answers."""
LOAD_SECONDS = 13.0
LOAD_ROUNDS = 40
ROUND_PAUSE = 0.35
"""About 15 requests a round: a few dozen requests a second, well within 2 cores."""
REGISTER_EVERY = 4
"""Rounds between registrations during the load (one good, one with a wrong secret)."""
QUERY_SECONDS = 20.0
WRONG_AUTH = "Basic " + base64.b64encode(b"300%3A0.NA/88.100:not-the-secret").decode()
# The panels' Grafana variables, as the test substitutes them: the range of a
# stat panel is this test's few seconds of data, not tests/test_rules.py's day.
SUBSTITUTES = {**VARIABLES, "__range": "5m"}


def substitute(expr: str) -> str:
    return VARIABLE.sub(lambda m: SUBSTITUTES[m.group(1) or m.group(2)], expr)


# --- processes ----------------------------------------------------------------------


@dataclass
class Drained:
    """What a background process writes after its ready lines, read so that a full
    pipe never blocks it; kept for the failure message."""

    lines: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def follow(self, *streams: IO[str] | None) -> None:
        for stream in streams:
            if stream is not None:
                thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self.lines.append(line.rstrip("\n"))
        except (ValueError, OSError):  # closed by Server.stop once the process exited
            pass

    def tail(self, count: int = 20) -> str:
        return "\n".join(self.lines[-count:])


def drain(server: Server) -> Drained:
    drained = Drained()
    drained.follow(server.proc.stdout, server.proc.stderr)
    return drained


def node_env(tmp_path: Path) -> dict[str, str]:
    """As tests/test_sync_faults.py's node: SQLite in tmp_path, migrated, with the
    daily counts persisted every second."""
    return migrated_env(
        tmp_path,
        IDNODE_SYNC_TIMEOUT="2",
        IDNODE_ACCOUNTING_INTERVAL="1",
        # Wrong secrets are sent on purpose, over and over: no lockout (tests/test_limits.py).
        IDNODE_LOGIN_ATTEMPTS="0",
    )


@pytest.fixture
def prometheus_at(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    """Start Prometheus scraping ``target`` (HOST:PORT); stopped whatever happens."""
    with contextlib.ExitStack() as stack:
        yield lambda target: stack.enter_context(Prometheus(tmp_path, target))


# --- the load -----------------------------------------------------------------------


@dataclass
class Load:
    """Answers seen while driving the load, by kind of request."""

    seen: dict[str, set[object]] = field(default_factory=dict)
    requests: int = 0

    def saw(self, kind: str, what: object) -> None:
        self.seen.setdefault(kind, set()).add(what)
        self.requests += 1


async def drive(http: str, handle: Endpoint, dns_at: Endpoint, found: list[str]) -> Load:
    """Resolutions over every protocol, with every outcome the node can give a
    plain client: found, not found, malformed. Bounded in time and in rounds."""
    load = Load()
    zone = ZoneNames.of(ZONE)
    grammar = Grammar()
    apex = dns.name.from_text(ZONE)
    deadline = time.monotonic() + LOAD_SECONDS
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def get(kind: str, path: str) -> None:
            async with session.get(http + path, allow_redirects=False) as response:
                await response.read()
                load.saw(kind, response.status)

        async def put(kind: str, name: str, auth: str) -> None:
            body = [{"index": 1, "type": "URL", "data": f"https://x/{name}"}]
            headers = {"Authorization": auth}
            async with session.put(f"{http}/api/handles/{name}", json=body, headers=headers) as r:
                await r.read()
                load.saw(kind, r.status)

        async def native(kind: str, name: str, *, tcp: bool) -> None:
            message = client.resolution(name, flags=c.FLAG_PUBL)
            if tcp:
                answer = await client.tcp_call(handle.host, handle.port, message)
            else:
                answer = await client.udp_call(handle.host, handle.port, message)
            load.saw(kind, answer.header.response_code)

        async def ask(kind: str, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> None:
            query = dns.message.make_query(qname, rdtype)
            answer = await dns.asyncquery.udp(query, dns_at.host, port=dns_at.port, timeout=3)
            load.saw(kind, dns.rcode.to_text(answer.rcode()))

        for round_ in range(LOAD_ROUNDS):
            if time.monotonic() >= deadline:
                break
            name = found[round_ % len(found)]
            unknown = f"88.100/{TAG}-missing-{round_}"
            await get("rest found", f"/api/handles/{name}")
            await get("rest unknown", f"/api/handles/{unknown}")
            await get("rest malformed", "/api/handles/%20bad")
            await get("rest no prefix", "/api/handles/noprefix")
            await get("proxy found", f"/{name}?noredirect")
            await get("proxy unknown", f"/{unknown}?noredirect")
            await get("oid", "/api/oid/1.2.156.86.1.1")
            await native("udp found", name, tcp=False)
            await native("udp unknown", unknown, tcp=False)
            await native("tcp found", name, tcp=True)
            await native("tcp unknown", unknown, tcp=True)
            await ask("dns soa", apex, dns.rdatatype.SOA)
            await ask("dns found", zone.of_identifier(grammar.parse(name)), dns.rdatatype.TXT)
            await ask("dns unknown", zone.of_identifier(grammar.parse(unknown)), dns.rdatatype.TXT)
            if round_ % REGISTER_EVERY == 0:
                await put("put", f"88.100/{TAG}-load-{round_}", AUTH)
                await put("put wrong secret", f"88.100/{TAG}-denied-{round_}", WRONG_AUTH)
            await asyncio.sleep(ROUND_PAUSE)
    return load


# --- the checks ---------------------------------------------------------------------


def wait_for_results(
    prometheus: Prometheus, queries: dict[str, str], seconds: float
) -> dict[str, str]:
    """Query each expression until it returns data (rates need two scrapes, rules an
    evaluation); return the ones that never did, with their last answer."""
    pending = dict(queries)
    last: dict[str, str] = {}
    deadline = time.monotonic() + seconds
    while pending:
        for where, expr in list(pending.items()):
            result = prometheus.query(expr)
            if result:
                del pending[where]
            else:
                last[where] = f"{expr!r} returned no series"
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(1)
    return {where: last[where] for where in pending}


def rule_health(prometheus: Prometheus) -> dict[tuple[str, str], tuple[str, str]]:
    """(type, name) → (health, lastError) of every rule Prometheus loaded."""
    body = prometheus.get("/api/v1/rules")
    assert body["status"] == "success", body
    return {
        (rule["type"], rule["name"]): (rule["health"], rule.get("lastError", ""))
        for group in body["data"]["groups"]
        for rule in group["rules"]
    }


@needs(PROMETHEUS is not None, "prometheus")
@needs_yaml
def test_every_dashboard_query_and_rule_has_data(
    tmp_path: Path, prometheus_at: Callable[[str], Prometheus]
) -> None:
    env = node_env(tmp_path)
    port = free_port()
    top = toplevel(tmp_path, port)
    top_output = drain(top)
    node = Server(
        "serve", *ANY_PORTS, "--toplevel", f"http://127.0.0.1:{port}", cwd=tmp_path, env=env
    )
    node_output: Drained | None = None
    try:
        http = node.wait_for_http(60)
        handle = listening(node, "handle")
        dns_at = listening(node, "dns")
        node_output = drain(node)
        prometheus = prometheus_at(http.removeprefix("http://"))

        register(http, REGISTERED, TAG)
        found = [f"88.100/{TAG}-{i:05d}" for i in range(REGISTERED)]
        load = asyncio.run(drive(http, handle, dns_at, found))
        # The load reached the node and got every kind of answer it asked for.
        assert load.seen["rest found"] == {200}
        assert load.seen["rest unknown"] == {404}
        assert load.seen["rest malformed"] == load.seen["rest no prefix"] == {400}
        assert load.seen["proxy found"] == {200}
        assert load.seen["proxy unknown"] == load.seen["oid"] == {404}
        assert load.seen["udp found"] == load.seen["tcp found"] == {1}
        assert load.seen["udp unknown"] == load.seen["tcp unknown"] == {100}
        assert load.seen["dns soa"] == load.seen["dns found"] == {"NOERROR"}
        assert load.seen["dns unknown"] == {"NXDOMAIN"}
        assert load.seen["put"] == {201}
        assert load.seen["put wrong secret"] == {401}
        up = prometheus.query('up{job="idnode"}')
        assert [sample["value"][1] for sample in up] == ["1"], up
        # The registrations reached the top-level node: the sync gauges are real.
        assert wait_until(
            lambda: prometheus.query(
                'idnode_sync_last_success_timestamp_seconds{job="idnode"} > 0'
                ' and idnode_sync_backlog_events{job="idnode"} == 0'
            ),
            15,
        )

        queries = {where: substitute(expr) for where, expr in exprs()}
        queries.update({f"rule {r['record']}": r["record"] for r in rules_of("record")})
        empty = wait_for_results(prometheus, queries, QUERY_SECONDS)
        assert not empty, "queries without data:\n" + "\n".join(
            f"  {where}: {why}" for where, why in empty.items()
        )

        # Beyond "has a series" (the node exports every label set at 0 from the
        # start): the load was counted where the dashboard looks for it.
        counted = {
            f"{what} counted": f"sum(increase({series}[5m])) > 0"
            for what, series in [
                *(
                    (f"protocol {p}", f'idnode_resolutions_total{{protocol="{p}"}}')
                    for p in ("handle_udp", "handle_tcp", "http", "dns", "oid")
                ),
                *(
                    (f"outcome {o}", f'idnode_resolutions_total{{outcome="{o}"}}')
                    for o in ("found", "not_found", "error")
                ),
                ("creations", 'idnode_registrations_total{operation="create"}'),
                ("auth failures", "idnode_auth_failures_total"),
                ("sync deliveries", "idnode_sync_delivered_events_total"),
                ("cache hits", "idnode_cache_hits_total"),
            ]
        }
        uncounted = wait_for_results(prometheus, counted, 10)
        assert not uncounted, "load not counted:\n" + "\n".join(
            f"  {where}: {why}" for where, why in uncounted.items()
        )

        alerts = {rule["alert"] for rule in rules_of("alert")}
        records = {rule["record"] for rule in rules_of("record")}
        expected = {("alerting", a) for a in alerts} | {("recording", r) for r in records}

        def all_healthy() -> bool:
            health = rule_health(prometheus)
            return expected <= health.keys() and all(health[key][0] == "ok" for key in expected)

        if not wait_until(all_healthy, 10):
            health = rule_health(prometheus)
            bad = {key: health.get(key, ("missing", "")) for key in sorted(expected)}
            pytest.fail(
                "rules not evaluated cleanly:\n"
                + "\n".join(f"  {k}: {v}" for k, v in bad.items() if v[0] != "ok")
            )
    except BaseException:
        print("--- node output ---", node_output.tail() if node_output else node.lines, sep="\n")
        print("--- top-level output ---", top_output.tail(), sep="\n")
        raise
    finally:
        node.stop()
        top.stop()
