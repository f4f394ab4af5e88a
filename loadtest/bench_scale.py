"""Scale: does the node stay as fast and as small with 1,000,000 identifiers as
with 10,000? It must — lookups are one indexed query, caches are bounded, and
nothing is preloaded.

The demo data set (32 enterprises with their prefixes and templates) is
seeded first; then identifiers are bulk-loaded straight into the store in
chunks (COPY on PostgreSQL, one multi-row INSERT per chunk on SQLite) — a
fixture, so without audit entries or outbox events — up to each size of
``--sizes``. At each size a fresh node is started and asked, over the REST API
at a fixed rate, for names it has never been asked (every one a cache miss:
the cold path); the figures are the latency percentiles and the node's
resident memory after start and after the run.

    python -m loadtest.bench_scale [--db URL] [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
from sqlalchemy import func, select
from sqlalchemy import text as sql

from loadtest.demo_node import DemoNode, write_results
from loadtest.dnsperf import LatencyHistogram
from loadtest.harness import Progress
from registry import schema as t
from registry import store
from registry.db import create_engine, read_transaction, write_transaction
from registry.dnsnames import dns_path
from registry.grammar import Grammar
from registry.models import HandleValue

CHUNK = 10_000
PREFIXES = 32


@dataclass
class Figures:
    identifiers: int
    seed_seconds: float
    start_seconds: float
    rss_after_start_mb: float
    rss_after_run_mb: float
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scale_name(n: int) -> str:
    return f"88.100.{1 + n % PREFIXES}/SCALE-{n:08d}"


async def seed(database_url: str, upto: int) -> int:
    """Bulk-load ``SCALE-`` identifiers until there are ``upto`` of them; how many were added."""
    engine = create_engine(database_url)
    grammar = Grammar()
    try:
        async with read_transaction(engine) as conn:
            have = (
                await conn.execute(
                    select(func.count())
                    .select_from(t.identifiers)
                    .where(t.identifiers.c.name.like("%/SCALE-%"))
                )
            ).scalar_one()
            prefixes = {p.prefix: p.id for p in await store.all_prefixes(conn)}
        total = max(0, upto - int(have))
        with Progress("bulk load", total=total, unit="identifiers") as progress:
            for start in range(int(have), upto, CHUNK):
                rows = []
                for n in range(start, min(start + CHUNK, upto)):
                    name = grammar.parse(scale_name(n))
                    values = (
                        HandleValue(1, "URL", f"https://scale.example.com/{n}".encode()),
                        HandleValue(2, "EMAIL", f"owner{n % 997}@example.com".encode()),
                        HandleValue(3, "DESC", f"scale record {n}".encode()),
                    )
                    prefix_id = prefixes[name.prefix]
                    rows.append(
                        store.NewIdentifier(
                            name.text, name.key, prefix_id, None, values, dns_path(name)
                        )
                    )
                async with write_transaction(engine) as conn:
                    await store.insert_identifiers(conn, rows)
                progress.update(len(rows))
        # Fresh planner statistics and settled storage, as an operator leaves them
        # after a bulk load: the lookups then measure the node, not the aftermath.
        if engine.dialect.name == "postgresql":
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(sql("VACUUM ANALYZE identifiers"))
                await conn.execute(sql("VACUUM ANALYZE identifier_values"))
                await conn.execute(sql("CHECKPOINT"))
        else:
            async with write_transaction(engine) as conn:
                await conn.execute(sql("ANALYZE"))
        return upto - int(have)
    finally:
        await engine.dispose()


async def cold_lookups(
    base: str, size: int, count: int, rate: float, rng: random.Random
) -> tuple[LatencyHistogram, int]:
    """``count`` never-asked names at ``rate`` a second; their latencies and the errors."""
    names = [scale_name(n) for n in rng.sample(range(size), min(count, size))]
    histogram = LatencyHistogram()
    errors = 0
    progress = Progress("cold lookups", total=len(names), unit="requests")
    async with aiohttp.ClientSession() as session:

        async def one(name: str) -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                async with session.get(f"{base}/api/handles/{name}") as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            finally:
                progress.update(1)
            histogram.add(time.perf_counter() - started)

        with progress:
            begin = time.perf_counter()
            tasks = []
            for k, name in enumerate(names):  # each name once: every one a miss
                await asyncio.sleep(max(0.0, begin + k / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(one(name)))
            await asyncio.gather(*tasks)
    return histogram, errors


def measure(args: argparse.Namespace, workdir: Path) -> list[Figures]:
    env = {"IDNODE_DATABASE_URL": args.db} if args.db else {}
    demo = ("--enterprises", str(PREFIXES), "--identifiers", "640")
    with DemoNode(workdir, *demo, env=env) as node:  # the prefixes and templates
        database_url = args.db or f"sqlite+aiosqlite:///{node.database}"
    rng = random.Random(7)
    figures = []
    for size in args.sizes:
        began = time.perf_counter()
        asyncio.run(seed(database_url, size))
        seeded = time.perf_counter() - began
        began = time.perf_counter()
        with DemoNode(workdir, *demo, env=env) as node:
            started = time.perf_counter() - began
            before = rss_mb(node.pid)
            # First the process warms up (database connections, prepared
            # statements): "cold" is about the answers, not the process.
            asyncio.run(cold_lookups(node.base, size, args.requests // 5, args.rate, rng))
            histogram, errors = asyncio.run(
                cold_lookups(node.base, size, args.requests, args.rate, rng)
            )
            after = rss_mb(node.pid)
        figures.append(
            Figures(
                size,
                round(seeded, 1),
                round(started, 1),
                round(before, 1),
                round(after, 1),
                histogram.count,
                errors,
                histogram.percentile(0.50),
                histogram.percentile(0.99),
                histogram.percentile(0.999),
            )
        )
        f = figures[-1]
        print(
            f"{size:>9,} identifiers: seeded in {f.seed_seconds:6.1f} s, node up in "
            f"{f.start_seconds:4.1f} s, RSS {f.rss_after_start_mb:6.1f} -> "
            f"{f.rss_after_run_mb:6.1f} MB; cold lookups p50 {f.p50_ms} ms, p99 {f.p99_ms} ms, "
            f"p99.9 {f.p999_ms} ms, errors {f.errors}",
            flush=True,
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", help="database URL (default: a SQLite file)")
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[10_000, 100_000, 1_000_000],
    )
    parser.add_argument("--requests", type=int, default=3000, help="cold lookups per size")
    parser.add_argument("--rate", type=float, default=300.0, help="lookups a second")
    parser.add_argument("--workdir", help="keep the database here (default: a temporary one)")
    parser.add_argument("--out", default="results/bench-scale.json")
    args = parser.parse_args(argv)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        figures = measure(args, Path(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="idnode-scale-") as tmp:
            figures = measure(args, Path(tmp))
    write_results(
        args.out,
        {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "database": "postgresql" if args.db else "sqlite",
            "runs": [asdict(f) for f in figures],
        },
    )
    return 0 if all(f.errors == 0 for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
