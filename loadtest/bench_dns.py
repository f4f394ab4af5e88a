"""DNS benchmark: the node against NSD (or Knot) serving the same records, in one run.

Starts ``idnode demo`` (30 enterprises, ~2,000 identifiers) with ``--workers N``
DNS processes, picks 500 of its identifiers spread over every enterprise, and
renders their records and the zone's apex in master-file format with the
node's own ``DnsService.zone_text``; NSD (or Knot) loads that zone with the
same number of server processes. Both answer a sample of the queries first and
the answers are compared (rcode, AA, answer section; a truncated UDP answer is
followed over TCP, as a resolver does, and counted). Then dnsperf (UDP, EDNS,
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
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from loadtest import dnsperf, refdns
from loadtest.bench_dns_runs import Run, measure, warm
from loadtest.bench_dns_zone import Workload, compare, pick_names, render
from loadtest.demo_node import HOST, DemoNode, version, write_results

DEMO_ENTERPRISES = 30
DEMO_IDENTIFIERS = 2000
NAMES = 500
RATIO_TARGET = 0.5
P99_TARGET_MS = 2.0
LOST_LIMIT = 0.001
"""At the fixed rate, at most this share of the queries may go unanswered."""
RATE_LIMIT = 0.98
"""At the fixed rate, dnsperf must have sustained at least this share of it."""
BUSY_WARNING = 0.3
"""Cores of other work during a run above which the figures are flagged as noisy."""


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
    truncated: list[int]
    """Sampled answers truncated over UDP (TC): the node's, then the reference's."""


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
                checked, differences, truncated = compare(node_at, ref_at, work.queries)
                print(
                    f"same rcode, AA and answer section: {checked - len(differences)} "
                    f"of {checked} sampled queries; truncated over UDP and asked again over "
                    f"TCP: {truncated[0]} of the node's answers, {truncated[1]} of {kind}'s "
                    "(dnsperf counts a truncated answer as answered)",
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
    return Outcome(work, checked, differences, runs, truncated)


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
            "same_answers": {
                "checked": outcome.checked,
                "differences": outcome.differences,
                "truncated_over_udp": {"node": outcome.truncated[0], kind: outcome.truncated[1]},
            },
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
