"""Soak: a fixed rate for a bounded time (default 10 minutes at 500/s), the
node's memory sampled all along. It passes when nothing failed and memory
stopped growing once warm: every demo name is first asked once over every
protocol (the caches then hold the working set), and the resident size at
the end must be within ``--tolerance`` (default 5%) of the size after
``--warmup`` seconds of the run (default the first fifth).

The load is the daily-requirement mix (loadtest/locustfile_100k.py: REST, the
proxy, DNS, native UDP and TCP over the demo data set, ~3% unknown names),
sent by Locust at a steady rate against ``idnode demo``.

    python -m loadtest.soak [--minutes 10] [--rate 500] [--db URL]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from loadtest.bench_scale import rss_mb
from loadtest.demo_node import DemoNode, write_results
from loadtest.harness import Progress
from loadtest.hundred_k import locust_totals, run_locust
from loadtest.mix import DemoMix
from loadtest.protocols import DnsClient, HandleTcpClient, HandleUdpClient

SAMPLE_SECONDS = 5.0


class _Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


NO_REDIRECTS = urllib.request.build_opener(_Stay)


def sample(pids: list[int], stop: threading.Event, into: list[tuple[float, float]]) -> None:
    """(seconds since start, RSS of the node's processes in MB) every SAMPLE_SECONDS."""
    began = time.monotonic()
    while not stop.is_set():
        total = 0.0
        for pid in pids:
            with contextlib.suppress(OSError):  # a worker that is gone holds nothing
                total += rss_mb(pid)
        into.append((round(time.monotonic() - began, 1), round(total, 1)))
        stop.wait(SAMPLE_SECONDS)


def warm(node: DemoNode, identifiers: int) -> int:
    """Ask every demo name once over every protocol the mix uses, so that the
    caches hold the working set before memory is watched; returns the requests."""
    mix = DemoMix(identifiers=identifiers)
    names = mix.all_names()
    dns_host, dns_port = node.endpoints["dns"].rsplit(":", 1)
    handle_host, handle_port = node.endpoints["handle"].rsplit(":", 1)
    local = threading.local()

    def ask(name: str) -> None:
        if not hasattr(local, "udp"):
            local.udp = HandleUdpClient(handle_host, int(handle_port))
            local.tcp = HandleTcpClient(handle_host, int(handle_port))
            local.dns = DnsClient(dns_host, int(dns_port))
        for path in (f"/api/handles/{name}", f"/{name}"):
            with contextlib.suppress(urllib.error.HTTPError):  # the proxy's 302, not followed
                NO_REDIRECTS.open(f"{node.base}{path}", timeout=10).close()
        local.udp.resolve(name)
        local.tcp.resolve(name)
        local.dns.query(mix.dns_name(name), "TXT")

    with (
        ThreadPoolExecutor(max_workers=8) as pool,
        Progress("warming", total=len(names), unit="names") as progress,
    ):
        for _ in pool.map(ask, names):
            progress.update(1)
    return len(names) * 5


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    env = {"IDNODE_DATABASE_URL": args.db} if args.db else {}
    size = ("--enterprises", "32", "--identifiers", str(args.identifiers))
    seconds = args.minutes * 60
    count = int(seconds * args.rate)
    memory: list[tuple[float, float]] = []
    with DemoNode(workdir, *size, env=env) as node:
        warmed = warm(node, args.identifiers)
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(node.pids(), stop, memory), daemon=True)
        sampler.start()
        try:
            run_locust(
                node,
                workdir / "soak",
                users=args.users,
                run_seconds=int(seconds) + 60,
                count=count,
                settings={
                    "IDNODE_LOAD_RATE": str(args.rate),
                    "IDNODE_DEMO_IDENTIFIERS": str(args.identifiers),
                },
                label="soak",
                timeout=seconds + 180,
            )
        finally:
            stop.set()
            sampler.join(timeout=10)
    totals = locust_totals(workdir / "soak")
    warmup = args.warmup if args.warmup is not None else seconds / 5
    settled = next((m for t, m in memory if t >= warmup), memory[-1][1] if memory else 0.0)
    last = memory[-1][1] if memory else 0.0
    growth = (last - settled) / settled if settled else 0.0
    return {
        "minutes": args.minutes,
        "rate": args.rate,
        "warm_up_requests": warmed,
        **totals,
        "rss_after_warmup_mb": settled,
        "rss_at_end_mb": last,
        "rss_peak_mb": max((m for _, m in memory), default=0.0),
        "growth_after_warmup": round(growth, 4),
        "memory": memory,
        "ok": totals["failures"] == 0 and totals["sent"] == count and growth <= args.tolerance,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--identifiers", type=int, default=10_240)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument(
        "--warmup", type=float, help="seconds before memory must hold still (default: a fifth)"
    )
    parser.add_argument("--db", help="database URL (default: the demo's SQLite file)")
    parser.add_argument("--out", default="results/soak.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="idnode-soak-") as tmp:
        result = run(args, Path(tmp))
    write_results(args.out, result)
    print(
        f"soak {args.minutes:g} min at {args.rate:g}/s: sent {result['sent']:,}, "
        f"failures {result['failures']}, p99 {result['p99_ms']} ms; node RSS "
        f"{result['rss_after_warmup_mb']} MB after warm-up, {result['rss_at_end_mb']} MB at the "
        f"end ({result['growth_after_warmup']:+.1%}), peak {result['rss_peak_mb']} MB"
    )
    print("OK" if result["ok"] else "FAILED: failures, a short count or memory growth")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
