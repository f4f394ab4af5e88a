"""DNS benchmark: the node against NSD (or Knot) serving the same records, in one run.

Starts ``idnode demo`` (30 enterprises, ~2,000 identifiers) with ``--workers N``
DNS processes, picks 500 of its identifiers spread over every enterprise, and
renders their records and the zone's apex in master-file format with the
node's own ``DnsService.zone_text``; NSD (or Knot) loads that zone with the
same number of server processes. Both answer a sample of the queries first and
the answers are compared (rcode, AA, answer section). Then dnsperf (UDP, EDNS,
``-c 20 -q 200``) cycles over one query list (TXT and NAPTR of those names, a
few names that do not exist, SOA; and each name's TXT again in random letter
case, as resolvers using 0x20 ask) against each:

* peak throughput of the node and of the reference, alternating ``--rounds`` times;
* a fixed rate of 10,000 QPS (``--rate``) against each: p50/p99 and lost queries.

Targets: the node's peak QPS at least 50% of the reference's on the
same cores, and p99 under 2 ms at 10,000 QPS. dnsperf runs on the same cores as
the server it drives; CPU time of the server, of dnsperf and of the rest of the
machine is read from ``/proc`` for every run and printed with it. Figures are
printed as a table and written to ``results/bench-dns.json``. Every run is
bounded by ``--duration``. Usage::

    python -m loadtest.bench_dns [--duration 10] [--workers 2] [--out FILE]
                                 [--reference nsd|knot] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from loadtest import dnsperf, refdns
from loadtest.demo_node import (
    HOST,
    DemoNode,
    children,
    cpu_seconds,
    machine_busy_seconds,
    version,
    write_results,
)
from loadtest.harness import Config, Endpoint, node_dns_service

DEMO_ENTERPRISES = 30
DEMO_IDENTIFIERS = 2000
NAMES = 500
NXDOMAIN_NAMES = 25
SOA_QUERIES = 10
SEED = 20261125
RENDER_SECONDS = 120.0
WARM_SECONDS = 2.0
CHECK_QUERIES = 200
CHECK_SECONDS = 30.0
RATIO_TARGET = 0.5
P99_TARGET_MS = 2.0
LOST_LIMIT = 0.001
"""At the fixed rate, at most this share of the queries may go unanswered."""
RATE_LIMIT = 0.98
"""At the fixed rate, dnsperf must have sustained at least this share of it."""
BUSY_WARNING = 0.3
"""Cores of other work during a run above which the figures are flagged as noisy."""


@dataclass
class Run:
    server: str
    """``node``, ``nsd`` or ``knot``."""
    kind: str
    """``peak`` or ``rate``."""
    round: int
    qps: float
    target_qps: int | None
    queries_sent: int
    queries_completed: int
    queries_lost: int
    avg_latency_ms: float
    p50_ms: float | None
    p99_ms: float | None
    server_cpu_us_per_query: float
    server_cores: float
    dnsperf_cores: float
    other_cores: float
    """Busy CPU of the rest of the machine: other jobs, and kernel work charged to no process."""
    script_cores: float
    """This script (reading dnsperf's per-query lines in the fixed-rate runs)."""
    rcodes: dict[str, int] = field(default_factory=dict)
    processes: int = 1
    """Server processes: the node's --workers, or the reference's server count."""

    @property
    def label(self) -> str:
        if self.kind == "peak":
            return f"{self.server} ×{self.processes} peak #{self.round}"
        return f"{self.server} ×{self.processes} @ {self.target_qps:,} QPS"


# --- CPU accounting -------------------------------------------------------------


def _rusage_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


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
    async with node_dns_service(config, Endpoint(HOST, 0)) as (service, engine):
        zone_names = service.names
        await service.start()
        zone_text = await service.zone_text(names)
        queries: list[tuple[str, str]] = []
        spelling = random.Random(SEED)
        for name in names:
            owner = zone_names.of_identifier(engine.parse(name)).to_text()
            # And the same name as a resolver using 0x20 (random letter case) asks it.
            recased = "".join(c.upper() if spelling.random() < 0.5 else c for c in owner)
            queries += [(owner, "TXT"), (owner, "NAPTR"), (recased, "TXT")]
        prefixes = sorted({name.split("/", 1)[0] for name in names})
        for i in range(NXDOMAIN_NAMES):
            missing = engine.parse(f"{prefixes[i % len(prefixes)]}/nx-bench-{i:04d}")
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
) -> tuple[int, list[str]]:
    """Ask both a sample of the queries (UDP, EDNS 1232); the differences found."""
    unique = sorted(set(queries))
    step = max(1, len(unique) // CHECK_QUERIES)
    sample = unique[::step][:CHECK_QUERIES]
    deadline = time.monotonic() + CHECK_SECONDS
    checked = 0
    differences: list[str] = []
    for name, rdtype in sample:
        if time.monotonic() > deadline:
            break  # bounded: the count checked says how far it got
        query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
        query.flags &= ~dns.flags.RD
        answers = []
        for host, port in (node, reference):
            try:
                answers.append(_summary(dns.query.udp(query, host, port=port, timeout=2.0)))
            except (dns.exception.DNSException, OSError) as error:
                answers.append((f"no answer ({error!r})", False, []))
        checked += 1
        if answers[0] != answers[1]:
            differences.append(f"{name} {rdtype}: node {answers[0]} / reference {answers[1]}")
    return checked, differences


# --- driving dnsperf ------------------------------------------------------------------


@dataclass
class _Cpu:
    """CPU seconds used so far, by part."""

    at: float
    server: float
    dnsperf: float
    script: float
    busy: float

    @classmethod
    def now(cls, server: Sequence[int], load: Sequence[int] = ()) -> _Cpu:
        return cls(
            time.monotonic(),
            cpu_seconds(server),
            cpu_seconds(load),
            _rusage_seconds(resource.RUSAGE_SELF),  # reading dnsperf's per-query lines
            machine_busy_seconds(),
        )


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def measure(
    server: str,
    kind: str,
    round_: int,
    address: tuple[str, int],
    pids: Callable[[], list[int]],
    queries: list[tuple[str, str]],
    *,
    seconds: float,
    clients: int,
    outstanding: int,
    rate: int | None = None,
    server_processes: int = 1,
) -> Run:
    """One dnsperf run. CPU is read when dnsperf starts and again near the end
    of its load (at 90% of ``seconds``, so as not to race its exit): after the
    load dnsperf only waits for the last answers, busily (its threads spin
    until the timeout when queries were lost), which would blur the figures."""
    processes = pids()
    before = _Cpu.now(processes)
    server_before = before.server
    children_before = _rusage_seconds(resource.RUSAGE_CHILDREN)
    ends: list[_Cpu] = []

    def sample() -> None:
        load = [pid for pid in children(os.getpid()) if _comm(pid) == dnsperf.DNSPERF]
        if load:  # a new process: its CPU time started at 0
            ends.append(_Cpu.now(processes, load))

    timer = threading.Timer(seconds * 0.9, sample)
    timer.start()
    try:
        result = dnsperf.run_dnsperf(
            *address,
            queries,
            seconds=seconds,
            clients=clients,
            outstanding=outstanding,
            rate=rate,
            edns=True,
            latencies=rate is not None,
        )
    finally:
        timer.cancel()
        timer.join()
    server_cpu = cpu_seconds(processes) - server_before  # every answer, late ones too
    if ends:
        end = ends[0]
        load_dnsperf = end.dnsperf
    else:  # not sampled (dnsperf ended early): the whole run, drain included
        end = _Cpu.now(processes)
        load_dnsperf = _rusage_seconds(resource.RUSAGE_CHILDREN) - children_before
    window = max(end.at - before.at, 1e-3)
    load_server = end.server - before.server
    load_script = end.script - before.script
    other = max(0.0, end.busy - before.busy - load_server - load_dnsperf - load_script)
    completed = result.queries_completed
    return Run(
        server=server,
        kind=kind,
        round=round_,
        qps=result.qps,
        target_qps=rate,
        queries_sent=result.queries_sent,
        queries_completed=completed,
        queries_lost=result.queries_lost,
        avg_latency_ms=result.avg_latency_ms,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        server_cpu_us_per_query=server_cpu / completed * 1e6 if completed else 0.0,
        server_cores=load_server / window,
        dnsperf_cores=load_dnsperf / window,
        other_cores=other / window,
        script_cores=load_script / window,
        rcodes=result.rcodes,
        processes=server_processes,
    )


def warm(
    address: tuple[str, int],
    queries: list[tuple[str, str]],
    *,
    seconds: float,
    clients: int,
    outstanding: int,
) -> None:
    """A short run first: fills the answer caches (of every node worker)."""
    dnsperf.run_dnsperf(
        *address,
        queries,
        seconds=min(WARM_SECONDS, seconds),
        clients=clients,
        outstanding=outstanding,
        edns=True,
        latencies=False,
    )


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that every server is stopped on the way out


# --- the report -----------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def report(runs: list[Run], reference: str, rate: int) -> tuple[dict[str, Any], list[str]]:
    """Ratio and targets, and the lines that state them."""
    node_peaks = [r.qps for r in runs if r.server == "node" and r.kind == "peak"]
    # The reference at its best: with one server process or as many as the node's
    # workers, whichever answers more on these cores.
    by_count: dict[int, list[Run]] = {}
    for r in runs:
        if r.server == reference and r.kind == "peak":
            by_count.setdefault(r.processes, []).append(r)
    best = max(by_count.values(), key=lambda group: statistics.median(r.qps for r in group))
    node_qps = statistics.median(node_peaks)
    ref_qps = statistics.median(r.qps for r in best)
    ratio = node_qps / ref_qps if ref_qps else 0.0
    node_us = statistics.median(
        r.server_cpu_us_per_query for r in runs if r.server == "node" and r.kind == "peak"
    )
    ref_us = statistics.median(r.server_cpu_us_per_query for r in best)
    per_cpu = ref_us / node_us if node_us else 0.0
    fixed = next(r for r in runs if r.server == "node" and r.kind == "rate")
    lost_share = fixed.queries_lost / fixed.queries_sent if fixed.queries_sent else 1.0
    sustained = fixed.qps >= RATE_LIMIT * rate
    p99_met = (
        fixed.p99_ms is not None
        and fixed.p99_ms < P99_TARGET_MS
        and lost_share <= LOST_LIMIT
        and sustained
    )
    ratio_met = ratio >= RATIO_TARGET
    rounds = len(node_peaks)
    of = f"median of {rounds} rounds" if rounds > 1 else "one round"
    lines = [
        f"peak QPS: node {node_qps:,.0f}, {reference} {ref_qps:,.0f} with {best[0].processes} "
        f"server process(es), its best ({of}); "
        f"node / {reference} = {ratio:.2f} — target ≥ {RATIO_TARGET:.2f}: "
        + ("met" if ratio_met else "NOT met"),
        f"server CPU per answer at peak: node {node_us:.1f} µs, {reference} {ref_us:.1f} µs; "
        f"answers per second of server CPU, node / {reference} = {per_cpu:.2f} (the servers' "
        "own cost, free of dnsperf's share of the cores)",
        f"node at {rate:,} QPS: achieved {fixed.qps:,.0f}, p50 {_ms(fixed.p50_ms)} ms, "
        f"p99 {_ms(fixed.p99_ms)} ms, lost {fixed.queries_lost} of {fixed.queries_sent} — "
        f"target p99 < {P99_TARGET_MS:g} ms (≥ {RATE_LIMIT:.0%} of the rate sustained, "
        f"≤ {LOST_LIMIT:.1%} lost): " + ("met" if p99_met else "NOT met"),
    ]
    figures = {
        "node_peak_qps": node_qps,
        "reference_peak_qps": ref_qps,
        "ratio": ratio,
        "ratio_target": RATIO_TARGET,
        "ratio_met": ratio_met,
        "node_cpu_us_per_query": node_us,
        "reference_cpu_us_per_query": ref_us,
        "ratio_per_server_cpu": per_cpu,
        "reference_processes": best[0].processes,
        "rate": rate,
        "rate_achieved_qps": fixed.qps,
        "rate_p50_ms": fixed.p50_ms,
        "rate_p99_ms": fixed.p99_ms,
        "rate_lost": fixed.queries_lost,
        "p99_target_ms": P99_TARGET_MS,
        "p99_met": p99_met,
    }
    return figures, lines


@dataclass
class Outcome:
    work: Workload
    checked: int
    differences: list[str]
    runs: list[Run]


def bench(args: argparse.Namespace, kind: str, duration: float, rounds: int) -> Outcome:
    """Start the node and the reference, check their answers agree, drive both."""
    runs: list[Run] = []
    load = {"seconds": duration, "clients": args.clients, "outstanding": args.outstanding}
    same_count = {**load, "server_processes": args.workers}
    with tempfile.TemporaryDirectory(prefix="idnode-bench-") as tmp:
        workdir = Path(tmp)
        print(
            f"starting the node ({DEMO_ENTERPRISES} enterprises, {DEMO_IDENTIFIERS} identifiers, "
            f"{args.workers} DNS workers)...",
            flush=True,
        )
        with DemoNode(
            workdir,
            *("--workers", str(args.workers)),
            *("--enterprises", str(DEMO_ENTERPRISES), "--identifiers", str(DEMO_IDENTIFIERS)),
        ) as node:
            node_host, node_port = node.endpoints["dns"].rsplit(":", 1)
            node_at = (node_host, int(node_port))
            work = render(node.database, workdir / "idnode.key", pick_names(node.database, NAMES))
            print(
                f"{len(work.queries)} queries: TXT, NAPTR, 0x20-cased TXT of {work.names} names, "
                f"{work.nxdomain} NXDOMAIN, {work.soa} SOA; a zone of "
                f"{len(work.zone_text) // 1024} KiB for {kind}",
                flush=True,
            )
            with refdns.ReferenceServer(
                work.zone, work.zone_text, kind=kind, host=HOST, workers=args.workers
            ) as ref:
                ref_at = (ref.host, ref.port)
                checked, differences = compare(node_at, ref_at, work.queries)
                print(
                    f"same rcode, AA and answer section: {checked - len(differences)} "
                    f"of {checked} sampled queries",
                    flush=True,
                )
                for line in differences[:10]:
                    print(f"  differs: {line}")
                for address in (node_at, ref_at):
                    warm(address, work.queries, **load)
                servers: list[tuple[str, tuple[str, int], Callable[[], list[int]]]] = [
                    ("node", node_at, node.pids),
                    (kind, ref_at, ref.server_pids),
                ]
                for round_ in range(1, rounds + 1):
                    for name, address, pids in servers:
                        runs.append(
                            measure(name, "peak", round_, address, pids, work.queries, **same_count)
                        )
                        print(f"  {runs[-1].label}: {runs[-1].qps:,.0f} QPS", flush=True)
                for name, address, pids in servers:
                    run = measure(
                        name, "rate", 1, address, pids, work.queries, rate=args.rate, **same_count
                    )
                    runs.append(run)
                    print(f"  {run.label}: p99 {_ms(run.p99_ms)} ms", flush=True)
            if args.workers > 1:  # the reference may do better with one process
                with refdns.ReferenceServer(
                    work.zone, work.zone_text, kind=kind, host=HOST, workers=1
                ) as single:
                    single_at = (single.host, single.port)
                    warm(single_at, work.queries, **load)
                    for round_ in range(1, rounds + 1):
                        run = measure(
                            kind, "peak", round_, single_at, single.server_pids, work.queries,
                            **load,
                        )  # fmt: skip
                        runs.append(run)
                        print(f"  {run.label}: {run.qps:,.0f} QPS", flush=True)
    return Outcome(work, checked, differences, runs)


def show(outcome: Outcome, heading: str, kind: str, verdicts: list[str]) -> None:
    runs = outcome.runs
    print(f"\n{heading}")
    print(
        f"{'run':<22}{'QPS':>10}{'p50 ms':>9}{'p99 ms':>9}{'lost':>7}{'µs CPU/q':>10}"
        f"{'server':>8}{'dnsperf':>9}{'other':>7}   (CPU in cores)"
    )
    for run in runs:
        print(
            f"{run.label:<22}{run.qps:>10,.0f}{_ms(run.p50_ms):>9}{_ms(run.p99_ms):>9}"
            f"{run.queries_lost:>7}{run.server_cpu_us_per_query:>10.1f}"
            f"{run.server_cores:>8.2f}{run.dnsperf_cores:>9.2f}{run.other_cores:>7.2f}"
        )
    print()
    for line in verdicts:
        print(line)

    def load_cores(server: str) -> float:
        return statistics.mean(
            r.dnsperf_cores for r in runs if r.server == server and r.kind == "peak"
        )

    print(
        f"note: dnsperf runs on the same {os.cpu_count()} cores as the server it drives "
        f"({load_cores('node'):.1f} cores in the node's peak runs, {load_cores(kind):.1f} in "
        f"{kind}'s), so a peak is what server and load generator reach together, under the "
        "same conditions for both servers. 'µs CPU/q' is the server's own CPU per answer; "
        "'other' is the rest of the machine (other jobs, kernel work charged to no process)."
    )
    busiest = max(r.other_cores for r in runs)
    if busiest > BUSY_WARNING:
        print(
            f"warning: the machine was busy with other work (up to {busiest:.1f} cores during "
            "a run): these figures are noisy; run again on a quiet machine or with --rounds"
        )
    if outcome.differences:
        print(
            f"warning: {len(outcome.differences)} of {outcome.checked} sampled answers differ "
            "(see above)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (≤ 60)")
    parser.add_argument(
        "--workers", type=int, default=2, help="DNS processes of the node and of the reference"
    )
    parser.add_argument(
        "--reference",
        choices=refdns.KINDS,
        help="reference server (default: nsd if installed, else knot)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="peak runs of each server (≤ 10)")
    parser.add_argument("--rate", type=int, default=10_000, help="QPS of the fixed-rate runs")
    parser.add_argument("--clients", type=int, default=20, help="dnsperf -c")
    parser.add_argument("--outstanding", type=int, default=200, help="dnsperf -q")
    parser.add_argument("--out", "--output", dest="output", default="results/bench-dns.json")
    args = parser.parse_args(argv)
    duration = max(1.0, min(args.duration, 60.0))
    rounds = max(1, min(args.rounds, 10))
    if args.workers < 1 or args.rate < 1 or args.clients < 1 or args.outstanding < 1:
        parser.error("--workers, --rate, --clients and --outstanding must be positive")
    if not dnsperf.available():
        print("dnsperf is needed: apt-get install dnsperf", file=sys.stderr)
        return 2
    kind = args.reference or next(
        (k for k in ("nsd", "knot") if refdns.server_binary(k) is not None), None
    )
    binary = refdns.server_binary(kind) if kind else None
    if kind is None or binary is None:
        print(f"{kind or 'nsd or knot'} is needed: apt-get install nsd", file=sys.stderr)
        return 2
    ref_version = version([binary, "-v" if kind == "nsd" else "-V"], r"version (\S+)")
    perf_version = version([dnsperf.DNSPERF, "-h"], r"Version (\S+)")
    signal.signal(signal.SIGTERM, _interrupted)
    outcome = bench(args, kind, duration, rounds)
    figures, verdicts = report(outcome.runs, kind, args.rate)
    heading = (
        f"DNS over UDP: dnsperf {perf_version}, EDNS, -c {args.clients} -q {args.outstanding}, "
        f"{duration:g} s per run; node --workers {args.workers}, {kind} {ref_version} with "
        f"{args.workers} server processes; {os.cpu_count()} CPUs"
    )
    show(outcome, heading, kind, verdicts)
    work = outcome.work
    output = write_results(
        args.output,
        {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpus": os.cpu_count(),
            "duration_s": duration,
            "workers": args.workers,
            "dnsperf": {
                "version": perf_version,
                "clients": args.clients,
                "outstanding": args.outstanding,
                "edns": True,
                "mode": "udp",
            },
            "reference": {"kind": kind, "version": ref_version},
            "queries": {
                "total": len(work.queries),
                "names": work.names,
                "nxdomain": work.nxdomain,
                "soa": work.soa,
            },
            "same_answers": {"checked": outcome.checked, "differences": outcome.differences},
            **figures,
            "runs": [asdict(r) for r in outcome.runs],
        },
    )
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench_dns: interrupted; the servers were stopped", file=sys.stderr)
        sys.exit(130)
