"""Logins over the wire: what an SM2 identity's IDIS login costs the node, RSA-2048 beside it.

Starts ``idnode demo`` (one worker process), registers ``--identities`` Handle
identities of each kind through the Handle REST API — ``HS_PUBKEY`` at index 300,
SM2 in the IDIS SDK's form (``SM2_PUB_KEY``, PEM) and RSA-2048 in HANDLE.NET's —
logs each in once to check it, then drives logins from forked client processes,
each running ``--concurrency`` lanes of our client (``resolver.handle.client``)::

    connect ─ op 2001 (login) ─▶ RC 402 + nonce ─▶ op 200 (SM2 signature over
    SM3(nonce ‖ request digest), user ID = the identity's handle) ─▶ RC 1 ─ close

A login binds the identity to its connection (a second one there is refused), so
every login is a new connection, as an IDIS SDK client's. The clients sign on the
same cores the node runs on: the node's own rate is judged per second of its CPU
time (user + kernel of its processes, from ``/proc``), its "one core" figure; wall
logins/s, p50/p99 latency (connect to RC 1) and the clients' CPU per login are
reported beside it. Each algorithm runs ``--seconds`` (at most ``--max-logins``).
Prints a table and writes ``results/bench-login.json``; exits 1 if a login failed.

    python -m loadtest.bench_login [--seconds 10] [--identities 64] [--processes 2]
                                   [--concurrency 4] [--out results/bench-login.json]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa

from loadtest.bench_trust import put_record
from loadtest.demo_node import DemoNode, cpu_seconds, machine_busy_seconds, write_results
from registry.crypto import Sm2PrivateKey
from registry.models import HandleValue
from registry.values import HS_PUBKEY, encode_public_key
from resolver.handle import client as cl

TARGET_PER_CPU_SECOND = 1000.0
"""SM2 logins one core of the node must answer in a second."""
KEY_INDEX = 300
PREFIX = "88.100.1"
"""An enterprise prefix of the demo data set (which holds no identity of ours)."""
FAILURES_SHOWN = 5


@dataclass
class LoginRun:
    algorithm: str
    identities: int
    processes: int
    concurrency: int
    logins: int
    failures: int
    seconds: float
    logins_per_second: float
    """Wall rate: what the node and the signing clients reach together on the machine."""
    logins_per_server_cpu_second: float
    """Logins per second of the node's CPU time: one core's rate (the target's measure)."""
    server_cpu_us_per_login: float
    client_cpu_us_per_login: float
    other_cores: float
    """Cores busy with neither the node nor the clients during the run (other work)."""
    p50_ms: float
    p99_ms: float
    target: float | None
    failure_samples: list[str]

    @property
    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        return self.failures == 0 and self.logins_per_server_cpu_second >= self.target


def identities(algorithm: str, count: int) -> list[cl.KeyPair]:
    """``count`` fresh key pairs, each the identity ``PREFIX/login-<alg>-<n>``."""
    made = []
    for n in range(count):
        key: Sm2PrivateKey | rsa.RSAPrivateKey = (
            Sm2PrivateKey.generate()
            if algorithm == "SM2"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        made.append(cl.KeyPair(f"{PREFIX}/login-{algorithm.lower()}-{n}", KEY_INDEX, key))
    return made


async def register(base: str, pairs: Sequence[cl.KeyPair]) -> None:
    """Each identity's record: its public key as clients publish it, HS_PUBKEY at 300."""
    async with aiohttp.ClientSession() as session:
        for pair in pairs:
            assert isinstance(pair.key, Sm2PrivateKey | rsa.RSAPrivateKey)
            published = encode_public_key(pair.key.public_key())
            record = [HandleValue(KEY_INDEX, HS_PUBKEY, published)]
            await put_record(session, base, pair.handle, record)


async def login_once(host: str, port: int, pair: cl.KeyPair) -> str | None:
    """One login on its own connection: None when the node answered RC 1, else why not."""
    try:
        session = await cl.TcpSession.open(host, port, pair, time_limit=10.0)
    except OSError as exc:
        return f"connect: {exc}"
    try:
        answer = await session.login()
    except (cl.ClientError, OSError) as exc:
        return f"{pair.handle}: {exc}"
    finally:
        await session.close()
    if answer.header.response_code != 1:
        return f"{pair.handle}: RC {answer.header.response_code} {cl.error_text(answer)}"
    return None


# --- load clients (each in its own process) -------------------------------------


async def _lanes(
    host: str, port: int, pairs: Sequence[cl.KeyPair], lanes: int, until: float, most: int
) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    failures: list[str] = []
    turn = 0

    async def lane() -> None:
        nonlocal turn
        while time.perf_counter() < until and len(latencies) + len(failures) < most:
            pair, turn = pairs[turn % len(pairs)], turn + 1
            started = time.perf_counter()
            failure = await login_once(host, port, pair)
            if failure is None:
                latencies.append(time.perf_counter() - started)
            else:
                failures.append(failure)

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return latencies, failures


def _client(
    host: str,
    port: int,
    pairs: Sequence[cl.KeyPair],
    lanes: int,
    until: float,
    most: int,
    out: Any,
) -> None:
    cpu_before = time.process_time()
    latencies, failures = asyncio.run(_lanes(host, port, pairs, lanes, until, most))
    out.put((latencies, failures, time.process_time() - cpu_before))


def drive(
    algorithm: str,
    node: DemoNode,
    pairs: Sequence[cl.KeyPair],
    args: argparse.Namespace,
) -> LoginRun:
    """Logins from ``args.processes`` forked clients for ``args.seconds``; the node's
    CPU time over the run from ``/proc``."""
    host, port_text = node.endpoints["handle"].rsplit(":", 1)
    context = multiprocessing.get_context("fork")
    queue: Any = context.Queue()
    share = max(1, args.max_logins // args.processes)
    until = time.perf_counter() + args.seconds
    workers = []
    for i in range(args.processes):
        rotated = [*pairs[i:], *pairs[:i]]  # each process starts at another identity
        client_args = (host, int(port_text), rotated, args.concurrency, until, share, queue)
        workers.append(context.Process(target=_client, args=client_args))
    pids = node.pids()
    server_before, machine_before = cpu_seconds(pids), machine_busy_seconds()
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=args.seconds + 60) for _ in workers]
    elapsed = time.perf_counter() - started
    server = cpu_seconds(pids) - server_before
    machine = machine_busy_seconds() - machine_before
    for worker in workers:
        worker.join(timeout=10)
    latencies = sorted(x for part, _, _ in results for x in part)
    failures = [f for _, part, _ in results for f in part]
    client_cpu = sum(cpu for _, _, cpu in results)
    logins = len(latencies)
    q = statistics.quantiles(latencies, n=100) if logins >= 2 else [sum(latencies)] * 99

    def per_login(seconds: float) -> float:
        return round(seconds / logins * 1e6, 1) if logins else 0.0

    return LoginRun(
        algorithm=algorithm,
        identities=len(pairs),
        processes=args.processes,
        concurrency=args.processes * args.concurrency,
        logins=logins,
        failures=len(failures),
        seconds=round(elapsed, 3),
        logins_per_second=round(logins / elapsed, 1),
        logins_per_server_cpu_second=round(logins / server, 1) if server > 0 else 0.0,
        server_cpu_us_per_login=per_login(server),
        client_cpu_us_per_login=per_login(client_cpu),
        other_cores=round(max(0.0, machine - server - client_cpu) / elapsed, 2),
        p50_ms=round(q[49] * 1000, 3),
        p99_ms=round(q[98] * 1000, 3),
        target=TARGET_PER_CPU_SECOND if algorithm == "SM2" else None,
        failure_samples=failures[:FAILURES_SHOWN],
    )


async def prepare(node: DemoNode, pairs: Sequence[cl.KeyPair]) -> list[str]:
    """Register the identities and log each in once (which also warms the node's
    decoded-key cache, as any identity's second login finds it): the failures."""
    await register(node.base, pairs)
    host, port = node.endpoints["handle"].rsplit(":", 1)
    checked = [await login_once(host, int(port), pair) for pair in pairs]
    return [failure for failure in checked if failure is not None]


def _line(run: LoginRun) -> str:
    verdict = ""
    if run.target is not None:
        verdict = f"  target ≥ {run.target:,.0f}/CPU s {'met' if run.meets_target else 'MISSED'}"
    return (
        f"{run.algorithm:<8} {run.logins:>7,} logins  {run.logins_per_second:>7,.0f}/s wall  "
        f"{run.logins_per_server_cpu_second:>7,.0f}/s per node CPU s "
        f"({run.server_cpu_us_per_login:,.0f} µs; clients {run.client_cpu_us_per_login:,.0f} µs)  "
        f"p50 {run.p50_ms:.2f} ms  p99 {run.p99_ms:.2f} ms  failures {run.failures}"
        f"  other load {run.other_cores:.2f} cores{verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per algorithm (0.2 to 60)")
    parser.add_argument("--max-logins", type=int, default=200_000, help="per algorithm")
    parser.add_argument("--identities", type=int, default=64, help="of each kind (1 to 1000)")
    parser.add_argument("--processes", type=int, default=2, help="client processes (1 to 8)")
    parser.add_argument("--concurrency", type=int, default=4, help="logins in flight a process")
    parser.add_argument("--algorithms", default="SM2,RSA-2048")
    parser.add_argument("--out", default="results/bench-login.json")
    args = parser.parse_args(argv)
    algorithms = [a.strip().upper() for a in args.algorithms.split(",") if a.strip()]
    if not (
        0.2 <= args.seconds <= 60
        and 1 <= args.max_logins <= 1_000_000
        and 1 <= args.identities <= 1000
        and 1 <= args.processes <= 8
        and 1 <= args.concurrency <= 64
        and algorithms
        and set(algorithms) <= {"SM2", "RSA-2048"}
    ):
        parser.error("--seconds 0.2–60, --max-logins ≤ 1e6, --identities 1–1000, "
                     "--processes 1–8, --concurrency 1–64, --algorithms SM2,RSA-2048")  # fmt: skip
    load_before = os.getloadavg()[0]
    runs: list[LoginRun] = []
    refused: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="idnode-login-") as tmp,
        DemoNode(Path(tmp), "--enterprises", "30", "--identifiers", "0") as node,
    ):
        for algorithm in algorithms:
            pairs = identities(algorithm, args.identities)
            refused += asyncio.run(prepare(node, pairs))
            if refused:
                break  # a login that fails unloaded would fail the whole run
            runs.append(drive(algorithm, node, pairs, args))
            print(_line(runs[-1]), flush=True)
    for failure in refused:
        print(f"refused before the run: {failure}", file=sys.stderr)
    ok = not refused and all(run.failures == 0 and run.logins > 0 for run in runs)
    output = write_results(
        args.out,
        {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpus": len(os.sched_getaffinity(0)),
            "node_workers": 1,
            "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
            "client": "resolver.handle.client TcpSession.login + KeyPair, asyncio",
            "runs": [asdict(run) | {"meets_target": run.meets_target} for run in runs],
            "refused_before_run": refused[:FAILURES_SHOWN],
            "ok": ok,
        },
    )
    print(f"written to {output}")
    if not ok:
        print("FAILED: a login did not succeed", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
