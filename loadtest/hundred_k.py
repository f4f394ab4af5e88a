"""The daily requirement, proved end to end: ``idnode demo`` on fresh ports, a
real Prometheus scraping it every second, and Locust sending ``--count``
resolutions (default 100,000) at a steady ``--rate`` (default 1,000/s) over
REST, the proxy, DNS and native UDP and TCP (loadtest/locustfile_100k.py).
Afterwards three independent counts must equal what Locust sent, with no
failure: the node's daily counter (``idnode_resolutions_today``), the persisted
daily statistics (``daily_resolutions`` in its database) and Prometheus
(``sum(idnode_resolutions_total)``).

    python -m loadtest.hundred_k [--count 100000] [--rate 1000] [--users 50]
                                 [--db URL] [--workdir DIR] [--out FILE]

Prints a summary, writes it as JSON (default ``results/hundred-k.json``) and
exits 0 only if everything matched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families

from loadtest.demo_node import DemoNode, write_results
from loadtest.harness import Progress
from loadtest.prometheus import Prometheus, http_get
from registry import usage
from registry.db import create_engine, read_transaction

LOCUSTFILE = Path(__file__).with_name("locustfile_100k.py")
SETTLE_SECONDS = 30.0
"""Bound on waiting, after the run, for the counts to be persisted and scraped."""
POLL_SECONDS = 1.0
"""How often the node's counter is read for the progress of a run."""
FINAL_POLLS = 3
"""Reads after the run, for the node to count its last answers."""


def stored_total(database_url: str, first: str, last: str) -> int:
    """Resolutions in the node's daily statistics between two days."""

    async def read() -> int:
        engine = create_engine(database_url)
        try:
            async with read_transaction(engine) as conn:
                return sum(d.resolutions for d in await usage.days(conn, first, last))
        finally:
            await engine.dispose()

    return asyncio.run(read())


def node_gauges(base: str) -> dict[str, float]:
    status, text = http_get(f"{base}/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    wanted = ("idnode_resolutions_today", "idnode_resolutions_yesterday")
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(str(text))
        for sample in family.samples
        if sample.name in wanted
    }


def resolutions_so_far(base: str) -> Callable[[], int]:
    """What the node has counted since this call (its daily counter, less the
    count it had then): how far a run that it serves has got."""
    start = node_gauges(base).get("idnode_resolutions_today", 0.0)
    return lambda: int(node_gauges(base).get("idnode_resolutions_today", 0.0) - start)


def run_locust(
    node: DemoNode,
    stats: Path,
    *,
    users: int,
    run_seconds: int,
    count: int,
    settings: dict[str, str],
    label: str,
    timeout: float,
) -> int:
    """Locust, headless, with LOCUSTFILE's ``users`` against ``node`` for at most
    ``run_seconds``: the load's own ``settings`` in its environment besides the
    node's addresses and the ``count`` of requests; its final statistics in
    ``stats``, its output in ``locust.log`` beside them, and a progress line
    (``label``) of what the node has counted. Its exit code."""
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{run_seconds}s", "--stop-timeout", "10",
        "--host", node.base, "--json-file", str(stats), "--only-summary",
    ]  # fmt: skip
    env = {
        **os.environ,
        "IDNODE_DNS": node.endpoints["dns"],
        "IDNODE_HANDLE": node.endpoints["handle"],
        "IDNODE_LOAD_COUNT": str(count),
        **settings,
    }
    with (
        (stats.parent / "locust.log").open("wb") as log,
        Progress(label, total=count, unit="requests") as progress,
    ):
        done = resolutions_so_far(node.base)
        proc = subprocess.Popen(
            argv, env=env, cwd=stats.parent, stdout=log, stderr=subprocess.STDOUT
        )
        return _follow_locust(proc, timeout, progress, done)


def _follow_locust(
    proc: subprocess.Popen[bytes], timeout: float, progress: Progress, done: Callable[[], int]
) -> int:
    """Wait for Locust to exit (killed past ``timeout``), ``progress`` told every
    POLL_SECONDS what ``done`` counts; its exit code."""
    deadline = time.monotonic() + timeout
    shown = 0

    def poll() -> None:
        nonlocal shown
        with contextlib.suppress(OSError, RuntimeError):  # a missed poll is no failure
            now = done()
            if now > shown:  # the counter is daily: it may restart at midnight
                progress.update(now - shown)
                shown = now

    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            time.sleep(POLL_SECONDS)
            poll()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    # The node counts a request a moment after answering it: wait for the last, briefly.
    for _ in range(FINAL_POLLS):
        if progress.total is not None and shown >= progress.total:
            break
        time.sleep(POLL_SECONDS)
        poll()
    return proc.returncode


def settle(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


def locust_totals(prefix: Path) -> dict[str, float]:
    """Totals of a Locust run from its final statistics (``--json-file``; the CSV
    files are written periodically and may miss the last requests)."""
    entries = json.loads(prefix.with_name(f"{prefix.name}.json").read_text())
    sent = sum(int(e["num_requests"]) for e in entries)
    times: Counter[float] = Counter()
    for entry in entries:
        for milliseconds, count in entry["response_times"].items():
            times[float(milliseconds)] += int(count)
    seconds = max(
        (float(e["last_request_timestamp"]) - float(e["start_time"]) for e in entries),
        default=0.0,
    )

    def percentile(fraction: float) -> float:
        rank, seen = max(1, math.ceil(fraction * sent)), 0
        for milliseconds in sorted(times):
            seen += times[milliseconds]
            if seen >= rank:
                return milliseconds
        return 0.0

    return {
        "sent": sent,
        "failures": sum(int(e["num_failures"]) for e in entries),
        "requests_per_second": sent / seconds if seconds else 0.0,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "p999_ms": percentile(0.999),
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    zone = ZoneInfo(args.time_zone)
    env = {"IDNODE_ACCOUNTING_INTERVAL": "1", "IDNODE_TIME_ZONE": args.time_zone}
    if args.db:
        env["IDNODE_DATABASE_URL"] = args.db
    size = ("--enterprises", str(args.enterprises), "--identifiers", str(args.identifiers))
    with DemoNode(workdir, *size, env=env) as node:
        database = args.db or f"sqlite+aiosqlite:///{node.database}"
        first_day = datetime.now(zone).date()
        before = stored_total(database, first_day.isoformat(), first_day.isoformat())
        with Prometheus(workdir, node.endpoints["http"]) as prometheus:
            stats_prefix = workdir / "hundred-k"
            started = time.monotonic()
            limit = int(args.count / args.rate) + 60
            run_locust(
                node,
                stats_prefix,
                users=args.users,
                run_seconds=limit,
                count=args.count,
                settings={
                    "IDNODE_LOAD_RATE": str(args.rate),
                    "IDNODE_DEMO_ENTERPRISES": str(args.enterprises),
                    "IDNODE_DEMO_IDENTIFIERS": str(args.identifiers),
                },
                label="resolutions",
                timeout=limit + 120,
            )
            seconds = time.monotonic() - started
            figures = locust_totals(stats_prefix)
            sent = int(figures["sent"])
            last_day = datetime.now(zone).date()
            crossed = last_day != first_day
            before_gauge = before if not crossed else 0

            def node_count() -> float:
                gauges = node_gauges(node.base)
                today = gauges.get("idnode_resolutions_today", -1)
                if crossed:  # the run went past midnight: both days hold a part
                    return today + gauges.get("idnode_resolutions_yesterday", 0) - before
                return today - before_gauge

            def stored() -> int:
                return stored_total(database, first_day.isoformat(), last_day.isoformat()) - before

            def scraped() -> float | None:
                return prometheus.scalar("sum(idnode_resolutions_total)")

            settle(lambda: node_count() == sent)
            settle(lambda: stored() == sent)
            settle(lambda: scraped() == sent)
            counted, persisted, in_prometheus = node_count(), stored(), scraped()
    return {
        "count": args.count,
        "rate": args.rate,
        "users": args.users,
        "seconds": round(seconds, 1),
        **figures,
        "node_daily_counter": counted,
        "persisted_daily_statistics": persisted,
        "prometheus": in_prometheus,
        "database": "postgresql" if args.db and "postgresql" in args.db else "sqlite",
        "identifiers": args.identifiers,
        "when": datetime.now(zone).isoformat(timespec="seconds"),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="resolutions a second")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--enterprises", type=int, default=32)
    parser.add_argument("--identifiers", type=int, default=10_240)
    parser.add_argument("--db", help="database URL (default: the demo's SQLite file)")
    parser.add_argument("--time-zone", default="Asia/Shanghai")
    parser.add_argument("--workdir", help="where the node, Prometheus and Locust work")
    parser.add_argument("--out", default="results/hundred-k.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        result = run(args, workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="idnode-100k-") as tmp:
            result = run(args, Path(tmp))
    sent = result["sent"]
    ok = (
        sent == args.count
        and result["failures"] == 0
        and result["node_daily_counter"] == sent
        and result["persisted_daily_statistics"] == sent
        and result["prometheus"] == sent
    )
    result["ok"] = ok
    write_results(args.out, result)
    print(
        f"sent {sent:,} resolutions in {result['seconds']} s "
        f"({result['requests_per_second']:,.0f}/s, p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms), {result['failures']} failures"
    )
    print(
        f"node daily counter {result['node_daily_counter']:,.0f}, persisted daily statistics "
        f"{result['persisted_daily_statistics']:,}, Prometheus {result['prometheus'] or 0:,.0f}"
    )
    print("OK: every count equals what was sent" if ok else "MISMATCH or failures: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
