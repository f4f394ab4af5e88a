"""The DNS benchmark's workload (``python -m loadtest.bench_dns``): which of the
demo's identifiers to ask for, the zone and the query list rendered through the node's
own wiring, and a check that the node and the reference server give the same answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from loadtest.demo_node import HOST
from loadtest.harness import Config, Endpoint, node_dns_service

NXDOMAIN_NAMES = 25
SOA_QUERIES = 10
SEED = 20261125
RENDER_SECONDS = 120.0
CHECK_QUERIES = 200
CHECK_SECONDS = 30.0


# --- the records and the queries ------------------------------------------------------


def pick_names(database: Path, count: int) -> list[str]:
    """``count`` of the demo's identifiers, spread evenly over every enterprise."""
    uri = database.resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
        rows = [
            str(row[0])
            for row in db.execute(
                "SELECT name FROM identifiers WHERE name LIKE ? ORDER BY id",
                (f"{Config().node_prefix}.%/%",),
            )
        ]
    if len(rows) < count:
        raise RuntimeError(f"the demo has {len(rows)} identifiers, fewer than {count}")
    return [rows[i * len(rows) // count] for i in range(count)]


@dataclass
class Workload:
    zone: str
    zone_text: str
    queries: list[tuple[str, str]]
    names: int
    nxdomain: int
    soa: int


async def _render(config: Config, names: list[str]) -> Workload:
    """The zone as the node sees it, and the query list, from the node's own database
    through the node's own wiring (its DNS service, nameserver address ``HOST``)."""
    async with node_dns_service(config, Endpoint(HOST, 0)) as (service, resolver):
        zone_names = service.names
        await service.start()
        zone_text = await service.zone_text(names)
        queries: list[tuple[str, str]] = []
        spelling = random.Random(SEED)
        for name in names:
            owner = zone_names.of_identifier(resolver.parse(name)).to_text()
            # And the same name as a resolver using 0x20 (random letter case) asks it.
            recased = "".join(c.upper() if spelling.random() < 0.5 else c for c in owner)
            queries += [(owner, "TXT"), (owner, "NAPTR"), (recased, "TXT")]
        prefixes = sorted({name.split("/", 1)[0] for name in names})
        for i in range(NXDOMAIN_NAMES):
            missing = resolver.parse(f"{prefixes[i % len(prefixes)]}/nx-bench-{i:04d}")
            queries.append((zone_names.of_identifier(missing).to_text(), "TXT"))
        queries += [(zone_names.zone.to_text(), "SOA")] * SOA_QUERIES
    random.Random(SEED).shuffle(queries)
    return Workload(
        zone_names.zone.to_text(), zone_text, queries, len(names), NXDOMAIN_NAMES, SOA_QUERIES
    )


def render(database: Path, key_file: Path, names: list[str]) -> Workload:
    """:func:`_render` with the node's configuration (the defaults, its files)."""
    config = Config(
        database_url=f"sqlite+aiosqlite:///{database.resolve()}", key_file=str(key_file)
    )

    async def bounded() -> Workload:
        async with asyncio.timeout(RENDER_SECONDS):
            return await _render(config, names)

    return asyncio.run(bounded())


# --- are they serving the same records? ----------------------------------------------


def _summary(message: dns.message.Message) -> tuple[str, bool, list[str]]:
    lines = sorted(line for rrset in message.answer for line in rrset.to_text().splitlines())
    return dns.rcode.to_text(message.rcode()), bool(message.flags & dns.flags.AA), lines


def compare(
    node: tuple[str, int], reference: tuple[str, int], queries: list[tuple[str, str]]
) -> tuple[int, list[str], list[int]]:
    """Ask both a sample of the queries (UDP, EDNS 1232) as a resolver does, asking
    again over TCP after a truncated answer (the node truncates answers beyond its
    ``udp_amplification`` bound); the differences found, and how many answers of
    each server came truncated."""
    unique = sorted(set(queries))
    step = max(1, len(unique) // CHECK_QUERIES)
    sample = unique[::step][:CHECK_QUERIES]
    deadline = time.monotonic() + CHECK_SECONDS
    checked = 0
    differences: list[str] = []
    truncated = [0, 0]
    for name, rdtype in sample:
        if time.monotonic() > deadline:
            break  # bounded: the count checked says how far it got
        query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
        query.flags &= ~dns.flags.RD
        answers = []
        for at, (host, port) in enumerate((node, reference)):
            try:
                response, over_tcp = dns.query.udp_with_fallback(
                    query, host, timeout=2.0, port=port
                )
                truncated[at] += over_tcp
                answers.append(_summary(response))
            except (dns.exception.DNSException, OSError) as error:
                answers.append((f"no answer ({error!r})", False, []))
        checked += 1
        if answers[0] != answers[1]:
            differences.append(f"{name} {rdtype}: node {answers[0]} / reference {answers[1]}")
    return checked, differences, truncated
