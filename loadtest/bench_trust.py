"""Trusted resolution: what verifying a chain costs, and what signatures cost resolution.

* ``verify``: ``registry.trust.verify_record`` in process over a chain held in
  memory — the record's ``HS_SIGNATURE``, an enterprise ``HS_CERT`` and the
  self-issued root (3 links), or with a prefix certificate between (4 links);
  RS256 (RSA-2048), DS256 (DSA-2048) and SM2256. Pure CPU: parsing, digests,
  signature checks, the walk.
* ``node``: ``idnode demo`` in a subprocess; one record with a signature and
  its chain to the node's trust root, one without, written through the Handle
  REST API. Then each is resolved over ``GET /api/handles/NAME`` (the answer
  cache: signed values are ordinary values) and verified over
  ``GET /api/verify/NAME`` by concurrent clients.

Every run is bounded (``--seconds`` of CPU loop, ``--requests`` HTTP requests).
Prints a table and writes ``results/bench-trust.json``.

    python -m loadtest.bench_trust [--seconds 1] [--requests 2000] [--no-node]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric import dsa, rsa

from loadtest.demo_node import DemoNode, cpu_seconds, write_results
from loadtest.harness import DEMO_ADMIN
from registry.crypto import Sm2PrivateKey
from registry.models import HandleValue
from registry.trust import (
    Claims,
    Permission,
    PrivateKey,
    TrustRoot,
    Verdict,
    clear_caches,
    digests_claim,
    public_key_pem,
    sign_jws,
    verify_record,
)

ROOT = "88.100.1/0.0"
PREFIX_ID = "300:0.NA/88.100.1"
ENT_ID = "300:88.100.1/ent"
SIGNED = "88.100.1/bench-signed"
UNSIGNED = "88.100.1/bench-unsigned"
MAX_ITERATIONS = 20_000


@dataclass
class VerifyFigure:
    alg: str
    links: int
    caches: str
    """``cold``: every certificate parsed and every signature checked anew;
    ``warm``: the same record again (what was read and checked is remembered)."""
    verifications: int
    seconds: float
    per_second: float
    microseconds_each: float


@dataclass
class HttpFigure:
    path: str
    record: str
    requests: int
    concurrency: int
    seconds: float
    per_second: float
    answer_bytes: int
    server_cpu_us_per_answer: float
    """The node's CPU time (its processes, from ``/proc``) per answer: what the record
    costs the node, whatever the client in this process reaches."""


def _values() -> list[HandleValue]:
    return [
        HandleValue(index=1, type="URL", data=b"https://example.org/products/bench"),
        HandleValue(index=2, type="EMAIL", data=b"quality@example.org"),
        HandleValue(index=3, type="DESC", data="批次 2026-07 出厂检验合格".encode()),
    ]


def _cert(subject: str, issuer: str, key: PrivateKey, signer: PrivateKey, now: int) -> bytes:
    claims = Claims(
        iss=issuer,
        sub=subject,
        iat=now,
        exp=now + 86400,
        perms=(Permission("everything"),),
        public_key=key.public_key(),
    )
    return sign_jws(claims.to_json(), signer).compact().encode()


def build_chain(
    keys: Sequence[PrivateKey], *, with_prefix: bool
) -> tuple[dict[str, list[HandleValue]], TrustRoot]:
    """The records of a chain: root (keys[0]) → [prefix (keys[1]) →] enterprise
    (keys[-1]) → the signed record; and the root to trust."""
    now = int(time.time())
    root_id = f"300:{ROOT}"
    records: dict[str, list[HandleValue]] = {}

    def put(subject: str, data: bytes) -> None:
        records.setdefault(subject.partition(":")[2], []).append(
            HandleValue(index=400, type="HS_CERT", data=data)
        )

    put(root_id, _cert(root_id, root_id, keys[0], keys[0], now))
    issuer, signer = root_id, keys[0]
    if with_prefix:
        put(PREFIX_ID, _cert(PREFIX_ID, root_id, keys[1], keys[0], now))
        issuer, signer = PREFIX_ID, keys[1]
    put(ENT_ID, _cert(ENT_ID, issuer, keys[-1], signer, now))
    values = _values()
    claims = Claims(iss=ENT_ID, sub=SIGNED, iat=now, exp=now + 86400, digests=digests_claim(values))
    signature = sign_jws(claims.to_json(), keys[-1]).compact().encode()
    records[SIGNED] = [*values, HandleValue(index=400, type="HS_SIGNATURE", data=signature)]
    root_key = keys[0].public_key()
    return records, TrustRoot(ROOT, (root_key,))


async def time_verification(
    alg: str, keys: Sequence[PrivateKey], *, with_prefix: bool, seconds: float, cold: bool
) -> VerifyFigure:
    records, root = build_chain(keys, with_prefix=with_prefix)

    async def values_of(handle: str) -> list[HandleValue] | None:
        return records.get(handle)

    report = await verify_record(SIGNED, records[SIGNED], values_of, root)
    if report.verdict is not Verdict.TRUSTED:
        raise SystemExit(f"bench_trust: the {alg} chain is not trusted: {report.reason}")
    links = len(report.signatures[0].chain)
    done = 0
    started = time.perf_counter()
    while done < MAX_ITERATIONS and time.perf_counter() - started < seconds:
        if cold:
            clear_caches()
        await verify_record(SIGNED, records[SIGNED], values_of, root)
        done += 1
    elapsed = time.perf_counter() - started
    caches = "cold" if cold else "warm"
    return VerifyFigure(alg, links, caches, done, elapsed, done / elapsed, elapsed / done * 1e6)


# --- against a node -----------------------------------------------------------------


def _rest(values: Sequence[HandleValue]) -> dict[str, Any]:
    return {
        "values": [
            {
                "index": v.index,
                "type": v.type,
                "data": {"format": "base64", "value": base64.b64encode(v.data).decode()},
            }
            for v in values
        ]
    }


async def put_record(
    session: aiohttp.ClientSession, base: str, name: str, values: Sequence[HandleValue]
) -> None:
    """Write a whole record through the node's Handle REST API, as the demo's administrator."""
    headers = {"Authorization": aiohttp.BasicAuth(*DEMO_ADMIN).encode()}
    url = f"{base}/api/handles/{name}"
    async with session.put(url, json=_rest(values), headers=headers) as resp:
        if resp.status not in (200, 201):
            raise SystemExit(f"PUT {name}: HTTP {resp.status} {await resp.text()}")


async def time_http(
    base: str, path: str, record: str, requests: int, concurrency: int, pids: Sequence[int]
) -> HttpFigure:
    url = f"{base}{path}/{record}"
    sizes: list[int] = []

    async def client(session: aiohttp.ClientSession, count: int) -> None:
        for _ in range(count):
            async with session.get(url) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"bench_trust: GET {url}: HTTP {resp.status} {body[:200]!r}")
                sizes.append(len(body))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await client(session, 1)  # warm the answer cache
        server_before = cpu_seconds(pids)
        started = time.perf_counter()
        share = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
        await asyncio.gather(*(client(session, n) for n in share))
        elapsed = time.perf_counter() - started
        server = cpu_seconds(pids) - server_before
    return HttpFigure(
        path,
        record,
        requests,
        concurrency,
        elapsed,
        requests / elapsed,
        sizes[-1],
        round(server / requests * 1e6, 1),
    )


async def node_figures(
    workdir: Path, requests: int, concurrency: int
) -> tuple[list[HttpFigure], str]:
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
    records, root = build_chain(keys, with_prefix=False)
    env = {
        "IDNODE_TRUST_ROOT_HANDLE": ROOT,
        "IDNODE_TRUST_ROOT_KEYS": public_key_pem(root.keys[0]).decode(),
    }
    figures = []
    with DemoNode(workdir, "--enterprises", "30", "--identifiers", "0", env=env) as node:
        async with aiohttp.ClientSession() as session:
            for name, values in records.items():
                await put_record(session, node.base, name, values)
            await put_record(session, node.base, UNSIGNED, _values())
            async with session.get(f"{node.base}/api/verify/{SIGNED}") as resp:
                verdict = (await resp.json())["verdict"]
        for path, record in (
            ("/api/handles", UNSIGNED),
            ("/api/handles", SIGNED),
            ("/api/verify", SIGNED),
        ):
            figures.append(
                await time_http(node.base, path, record, requests, concurrency, node.pids())
            )
    return figures, verdict


def _table(verifies: list[VerifyFigure], http: list[HttpFigure]) -> str:
    lines = ["verification in process (registry.trust.verify_record):"]
    lines += [
        f"  {f.alg:<7} {f.links} links {f.caches}  {f.per_second:>7.0f}/s  "
        f"{f.microseconds_each:>6.0f} µs each"
        f"  ({f.verifications} in {f.seconds:.2f} s)"
        for f in verifies
    ]
    if http:
        lines.append("over HTTP against idnode demo (1 worker):")
        lines += [
            f"  GET {f.path}/{f.record:<24} {f.per_second:>8.0f}/s  "
            f"{f.answer_bytes:>5} B answers  node CPU {f.server_cpu_us_per_answer:>5.0f} µs each  "
            f"({f.requests} requests, {f.concurrency} clients)"
            for f in http
        ]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    rsa_keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
    dsa_keys = [dsa.generate_private_key(2048) for _ in range(2)]
    sm2_keys = [Sm2PrivateKey.generate() for _ in range(2)]
    runs: list[tuple[str, Sequence[PrivateKey], bool]] = [
        ("RS256", rsa_keys, False),
        ("RS256", rsa_keys, True),
        ("DS256", dsa_keys, False),
        ("SM2256", sm2_keys, False),
    ]
    verifies = [
        await time_verification(alg, keys, with_prefix=prefix, seconds=args.seconds, cold=cold)
        for cold in (True, False)
        for alg, keys, prefix in runs
    ]
    http: list[HttpFigure] = []
    verdict = ""
    if not args.no_node:
        with tempfile.TemporaryDirectory(prefix="bench-trust-") as folder:
            http, verdict = await node_figures(Path(folder), args.requests, args.concurrency)
    print(_table(verifies, http))
    results = {
        "cpus": len(os.sched_getaffinity(0)),
        "verify": [asdict(f) for f in verifies],
        "http": [asdict(f) for f in http],
        "node_verdict": verdict,
    }
    print(f"results: {write_results(args.out, results)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU loop per algorithm")
    parser.add_argument("--requests", type=int, default=2000, help="HTTP requests per path")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-node", action="store_true", help="skip the idnode demo runs")
    parser.add_argument("--out", default="results/bench-trust.json")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 60 or not 0 < args.requests <= 100_000:
        parser.error("--seconds in (0, 60], --requests in (0, 100000]")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
