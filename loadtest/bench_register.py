"""Registration throughput: how fast identifiers can be filed, written as in
production — each with its values, an entry of the hash-chained audit log and
an outbox event for the top-level node, in the same transaction.

* ``batchCreate``: SNMS ``POST /identityv2/data/batchCreate`` with 2,000 records
  a call (the API's limit), records filled from the demo templates;
* ``native``: Handle ``CREATE_HANDLE`` over one persistent, authenticated TCP
  connection with ``--pipeline`` requests in flight (as the IDIS SDKs do).

Against ``idnode demo`` on SQLite or PostgreSQL (``--db URL``). Checks that every
item succeeded and that the audit log and the outbox grew by exactly the number
filed; prints identifiers/s and writes ``results/bench-register.json``.

    python -m loadtest.bench_register [--db URL] [--calls 10] [--native 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from loadtest.demo_node import DemoNode, write_results
from loadtest.harness import DEMO_ADMIN, Progress, demo_enterprises, registration
from registry import schema as t
from registry.db import create_engine, read_transaction
from registry.models import HandleValue
from resolver.handle import client
from resolver.handle import codec as c

BATCH = 2000


@dataclass
class Figures:
    path: str
    database: str
    identifiers: int
    seconds: float
    identifiers_per_second: float
    audit_rows_added: int
    outbox_rows_added: int
    failures: int


async def counts(database_url: str) -> tuple[int, int]:
    """Rows in the audit log and the outbox."""
    engine = create_engine(database_url)
    try:
        async with read_transaction(engine) as conn:
            audit = (await conn.execute(select(func.count()).select_from(t.audit_log))).scalar()
            outbox = (await conn.execute(select(func.count()).select_from(t.outbox))).scalar()
    finally:
        await engine.dispose()
    return int(audit or 0), int(outbox or 0)


async def batch_create(base: str, calls: int) -> tuple[int, int, float]:
    """``calls`` batchCreate calls of BATCH records; (filed, failed, seconds)."""
    ents = demo_enterprises(32)
    run = uuid.uuid4().hex[:8]
    bodies = [
        [
            registration(ents[(k * BATCH + i) % len(ents)], f"REG-{run}-{k}-{i}")
            for i in range(BATCH)
        ]
        for k in range(calls)
    ]
    async with aiohttp.ClientSession() as session:
        login = {"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}
        async with session.post(f"{base}/identity/token", json=login) as response:
            token = (await response.json())["data"]["token"]
        headers = {"Authorization": f"Bearer {token}"}
        filed = failed = 0
        started = time.perf_counter()
        with Progress("batchCreate", total=calls * BATCH, unit="identifiers") as progress:
            for body in bodies:
                async with session.post(
                    f"{base}/identityv2/data/batchCreate", json=body, headers=headers
                ) as response:
                    answer: Any = await response.json()
                items = answer.get("data") or []
                ok = sum(1 for item in items if item.get("msg") == "success")
                filed += ok
                failed += len(body) - ok
                progress.update(len(body))
        return filed, failed, time.perf_counter() - started


async def native_create(host: str, port: int, count: int, pipeline: int) -> tuple[int, int, float]:
    """``count`` creates on one authenticated TCP session, ``pipeline`` in flight."""
    secret = client.SecretKey("0.NA/88.100", 300, DEMO_ADMIN[1].encode())
    session = await client.TcpSession.open(host, port, secret, time_limit=60)
    run = uuid.uuid4().hex[:8]
    prefix = demo_enterprises(1)[0].prefix
    filed = failed = 0
    try:
        await session.login()  # IDIS op 2001: later requests need no challenge
        started = time.perf_counter()
        next_item = 0

        progress = Progress("native create", total=count, unit="identifiers")

        async def one(i: int) -> bool:
            values = (HandleValue(1, "URL", f"https://example.org/native/{run}/{i}".encode()),)
            body = c.HandleValues(f"{prefix}/NAT-{run}-{i}".encode(), values).to_bytes()
            answer = await session.call(client.request(c.OC_CREATE_HANDLE, body))
            progress.update(1)
            return answer.header.response_code == 1

        async def lane() -> tuple[int, int]:
            nonlocal next_item
            ok = bad = 0
            while next_item < count:
                i, next_item = next_item, next_item + 1
                if await one(i):
                    ok += 1
                else:
                    bad += 1
            return ok, bad

        with progress:
            for ok, bad in await asyncio.gather(*(lane() for _ in range(pipeline))):
                filed += ok
                failed += bad
        return filed, failed, time.perf_counter() - started
    finally:
        await session.close()


def measure(args: argparse.Namespace, workdir: Path) -> list[Figures]:
    env = {"IDNODE_DATABASE_URL": args.db} if args.db else {}
    size = ("--enterprises", "32", "--identifiers", str(args.seed_identifiers))
    figures = []
    with DemoNode(workdir, *size, env=env) as node:
        database_url = args.db or f"sqlite+aiosqlite:///{node.database}"
        kind = "postgresql" if args.db and "postgresql" in args.db else "sqlite"
        host, port = node.endpoints["handle"].rsplit(":", 1)
        runs: list[tuple[str, Callable[[], Coroutine[Any, Any, tuple[int, int, float]]]]] = [
            ("batchCreate", lambda: batch_create(node.base, args.calls)),
            ("native", lambda: native_create(host, int(port), args.native, args.pipeline)),
        ]
        for path, run in runs:
            before = asyncio.run(counts(database_url))
            filed, failed, seconds = asyncio.run(run())
            after = asyncio.run(counts(database_url))
            figures.append(
                Figures(
                    path,
                    kind,
                    filed,
                    round(seconds, 2),
                    round(filed / seconds, 1) if seconds else 0.0,
                    after[0] - before[0],
                    after[1] - before[1],
                    failed,
                )
            )
            f = figures[-1]
            print(
                f"{kind:<10} {path:<11} {f.identifiers:>7,} identifiers in {f.seconds:6.2f} s: "
                f"{f.identifiers_per_second:>9,.0f}/s  (audit +{f.audit_rows_added:,}, "
                f"outbox +{f.outbox_rows_added:,}, failures {f.failures})",
                flush=True,
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", help="database URL (default: the demo's SQLite file)")
    parser.add_argument("--calls", type=int, default=10, help="batchCreate calls of 2,000")
    parser.add_argument("--native", type=int, default=5000, help="native creates")
    parser.add_argument("--pipeline", type=int, default=16, help="native creates in flight")
    parser.add_argument("--seed-identifiers", type=int, default=640)
    parser.add_argument("--out", default="results/bench-register.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="idnode-register-") as tmp:
        figures = measure(args, Path(tmp))
    ok = all(
        f.failures == 0 and f.audit_rows_added == f.identifiers == f.outbox_rows_added
        for f in figures
    )
    write_results(
        args.out,
        {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "runs": [asdict(f) for f in figures],
            "ok": ok,
        },
    )
    print("OK" if ok else "FAILED: failures, or audit/outbox rows do not match")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
