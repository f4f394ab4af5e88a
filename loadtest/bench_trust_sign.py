"""Signing speed: what one record's ``HS_SIGNATURE`` costs the node, RS256 and SM2256.

* ``sign``: the signature alone — the digests of a record's public values, the
  claims, the JWS (RSA-2048 PKCS#1 v1.5, or SM2 with SM3 through OpenSSL), and
  the record's values with the new signature placed;
* ``service``: ``Trust.sign_many`` over ``--records`` records of one enterprise,
  as the SNMS and REST endpoints call it — each record read, checked, signed and
  written with its audit entry and outbox event, one savepoint each — per record;
* ``one call``: ``Trust.sign`` of one record, its own transaction.

In this process, on a temporary SQLite database (``--db`` for another). Bounded
by ``--rounds`` and ``--seconds``. Prints the figures and writes
``results/bench-trust-sign.json``; exits 1 when a signature does not verify or a
record was not signed.

    python -m loadtest.bench_trust_sign [--records 200] [--rounds 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from loadtest.demo_node import write_results
from registry import store
from registry.crypto import Sm2PrivateKey
from registry.db import create_engine, migrate
from registry.models import PERM_PUBLIC, HandleValue
from registry.secrets import NodeKey
from registry.services import Actor, NodeIssuer, Registry, Services
from registry.services.enterprises import EnterpriseApplication, HostedConfig, NewUser
from registry.services.identifiers import SnmsRecord
from registry.services.templates import TemplateSpec
from registry.templates import ItemChange, RecordValue
from registry.trust import Claims, parse_jws
from registry.trust.claims import ValueRef
from registry.trust.issue import SigningKey, Validity, jws_public_key, signature, with_signature

NODE_PREFIX = "88.100"
ADMIN = ("bench-admin", "bench-secret")
TARGET_MS = 2.0


@dataclass
class Figures:
    algorithm: str
    sign_rounds: int
    sign_ms_median: float
    sign_ms_p99: float
    service_records: int
    service_ms_per_record: float
    one_call_ms_median: float
    verified: bool


def _record_values(n: int) -> list[HandleValue]:
    """A typical SNMS record: four public data values and the template version."""
    texts = [f"https://example.com/p/{n}", f"产品{n}", f"批次{n % 97}", f"SN-{n:08d}"]
    values = [
        HandleValue(2000 + i, kind, text.encode(), timestamp=1_700_000_000, permissions=PERM_PUBLIC)
        for i, (kind, text) in enumerate(zip(("URL", "name", "note", "serial"), texts, strict=True))
    ]
    return [*values, HandleValue(1001, "TEMPLATE", b"1.0", timestamp=1_700_000_000)]


def measure_sign(key: SigningKey, rounds: int, seconds: float) -> list[float]:
    """Milliseconds of each signature over a record, at most ``rounds`` or ``seconds``."""
    issuer = ValueRef(f"0.NA/{NODE_PREFIX}.1", 401)
    validity = Validity.starting(int(time.time()), 365)
    values = _record_values(1)
    timings = []
    deadline = time.perf_counter() + seconds
    for n in range(rounds):
        started = time.perf_counter()
        jws = signature(
            f"{NODE_PREFIX}.1/SN-{n}", values, issuer=issuer, key=key, validity=validity
        )
        with_signature(values, jws, timestamp=1_700_000_000)
        timings.append((time.perf_counter() - started) * 1000)
        if time.perf_counter() > deadline:
            break
    return timings


async def measure_service(
    database_url: str, key: SigningKey, records: int, seconds: float
) -> tuple[float, list[float], bool]:
    """(ms per record of one sign_many over ``records``, ms of single signs, all verified)."""
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        issuer = NodeIssuer.configured(
            key,
            algorithm="SM2256" if isinstance(key, Sm2PrivateKey) else "RS256",
            identity="",
            node_prefix=NODE_PREFIX,
            imported=None,
            cert_days=365,
            resign_on_change=True,
            now=int(time.time()),
        )
        registry = Registry(
            Services(engine, node_prefix=NODE_PREFIX, node_key=NodeKey.generate()), issuer
        )
        await registry.ensure_node()
        await registry.trust.publish_node_certificate()
        await registry.accounts.bootstrap_admin(*ADMIN)
        admin = Actor((await registry.accounts.login(*ADMIN)).principal, "bench")
        prefix = await _enterprise(registry, admin)
        names = [f"{prefix}/SN-{n:06d}" for n in range(records)]
        filed = await registry.identifiers.batch_create(
            admin,
            [
                SnmsRecord(
                    name,
                    "1.0",
                    (
                        RecordValue(2000, "URL", f"https://example.com/{n}"),
                        RecordValue(2001, "name", f"产品{n}"),
                    ),
                )
                for n, name in enumerate(names)
            ],
        )
        assert all(r.ok for r in filed), [r.message for r in filed if not r.ok][:3]
        started = time.perf_counter()
        results = await registry.trust.sign_many(admin, names)
        per_record = (time.perf_counter() - started) * 1000 / records
        singles = []
        deadline = time.perf_counter() + seconds
        for name in names:
            began = time.perf_counter()
            await registry.trust.sign(admin, name)
            singles.append((time.perf_counter() - began) * 1000)
            if time.perf_counter() > deadline:
                break
        verified = all(r.ok for r in results) and await _all_verify(registry, names, key)
        await registry.accounts.drain()
        return per_record, singles, verified
    finally:
        await engine.dispose()


async def _enterprise(registry: Registry, admin: Actor) -> str:
    application = EnterpriseApplication(
        org_name="基准测试企业",
        org_crt_type=2,
        org_crt_code="BENCH-0001",
        contact_name="基准",
        contact_phone="13800000000",
        new_user=NewUser("bench-user", "0" * 64, None, "13900000000"),
    )
    _, prefix = await registry.enterprises.apply(admin, application)
    await registry.enterprises.configure(admin, prefix.prefix, HostedConfig(1))
    items = (
        ItemChange("网址", "URL", 2000, True, 1, "string", 1, 255, True),
        ItemChange("名称", "name", 2001, True, 1, "string", 1, 64, True),
    )
    await registry.templates.create(
        admin,
        TemplateSpec(
            prefix.prefix,
            "1.0",
            items,
            industry_category="C",
            carrier_type=1,
            description="基准模板",
        ),
    )
    return prefix.prefix


async def _all_verify(registry: Registry, names: list[str], node_key: SigningKey) -> bool:
    """Every record's signature verifies with the enterprise key its certificate holds."""
    async with registry.services.read() as conn:
        prefix_record = await store.get_identifier(conn, f"0.NA/{names[0].split('/')[0]}")
        found = await store.get_identifiers(conn, names)
    assert prefix_record is not None
    cert = next(v for v in prefix_record.values if v.type == "HS_CERT")
    certified = parse_jws(cert.data)
    if not certified.verifies(jws_public_key(node_key)):
        return False
    enterprise_key = Claims.from_json(certified.payload).public_key
    assert enterprise_key is not None
    for name in names:
        value = next(v for v in found[name].values if v.type == "HS_SIGNATURE")
        if not parse_jws(value.data).verifies(enterprise_key):
            return False
    return True


def run(algorithm: str, key: SigningKey, args: argparse.Namespace, folder: Path) -> Figures:
    timings = measure_sign(key, args.rounds, args.seconds)
    database_url = args.db or f"sqlite+aiosqlite:///{folder / f'trust-{algorithm}.db'}"
    per_record, singles, verified = asyncio.run(
        measure_service(database_url, key, args.records, args.seconds)
    )
    ordered = sorted(timings)
    return Figures(
        algorithm=algorithm,
        sign_rounds=len(timings),
        sign_ms_median=round(statistics.median(timings), 3),
        sign_ms_p99=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        service_records=args.records,
        service_ms_per_record=round(per_record, 3),
        one_call_ms_median=round(statistics.median(singles), 3),
        verified=verified,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--records", type=int, default=200, help="records signed in one call")
    parser.add_argument("--rounds", type=int, default=2000, help="signatures timed alone")
    parser.add_argument("--seconds", type=float, default=10.0, help="bound of each timed loop")
    parser.add_argument("--out", default="results/bench-trust-sign.json")
    args = parser.parse_args(argv)
    keys: list[tuple[str, SigningKey]] = [
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("SM2256", Sm2PrivateKey.generate()),
    ]
    with tempfile.TemporaryDirectory(prefix="idnode-trust-sign-") as tmp:
        figures = [run(name, key, args, Path(tmp)) for name, key in keys]
    for f in figures:
        print(
            f"{f.algorithm:7} sign {f.sign_ms_median:.3f} ms median, {f.sign_ms_p99:.3f} ms p99 "
            f"({f.sign_rounds} rounds); signed and stored {f.service_ms_per_record:.3f} ms a "
            f"record in a call of {f.service_records}; one call {f.one_call_ms_median:.3f} ms"
        )
    ok = all(f.verified for f in figures)
    within = all(f.sign_ms_median <= TARGET_MS for f in figures)
    write_results(
        args.out,
        {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "target_ms": TARGET_MS,
            "runs": [asdict(f) for f in figures],
            "within_target": within,
            "ok": ok,
        },
    )
    print("OK" if ok else "FAILED: a signature did not verify")
    if not within:
        print(f"over target: a signature takes more than {TARGET_MS} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
