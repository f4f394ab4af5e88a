"""The benchmark suite's report: ``<out>.md`` (tables), ``<out>.json`` (every figure,
the machine) and ``<out>.png`` (p50/p99 against offered load; needs matplotlib).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest import dnsperf
from loadtest.bench_settings import CACHED_NAMES, CACHES, DATABASES, PEAK_SHARE, PROTOCOLS
from loadtest.bench_suite import Row, Suite, ms_text
from loadtest.demo_node import version, write_results


def machine() -> dict[str, Any]:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tools": {
            "wrk": version(["wrk", "-v"], r"wrk (\S+)"),
            "h2load": version(["h2load", "--version"], r"nghttp2/(\S+)"),
            "dnsperf": version([dnsperf.DNSPERF, "-h"], r"Version (\S+)"),
        },
    }


def _order(row: Row) -> tuple[int, int, int, int, int]:
    modes = [m for group in PROTOCOLS.values() for m in group]
    return (
        modes.index(row.protocol),
        DATABASES.index(row.db),
        row.workers,
        CACHES.index(row.cache),
        row.offered_rps or 0,
    )


def _context_lines(report: dict[str, Any]) -> list[str]:
    m, s = report["machine"], report["settings"]
    enterprises, identifiers = s["demo"]
    return [
        f"- when: {report['when']}, total runtime {report['runtime_s']:.0f} s"
        + (" (`--quick` smoke run)" if s["quick"] else ""),
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['kernel']}, Python {m['python']}; "
        f"wrk {m['tools']['wrk']}, h2load {m['tools']['h2load']}, "
        f"dnsperf {m['tools']['dnsperf']}",
        f"- **the load generators run on the same {m['cores']} cores as the node**: every "
        "figure is what node and generator reach together, not the node alone",
        f"- demo data: {enterprises} enterprises, {identifiers:,} identifiers; cached runs cycle "
        f"over {min(CACHED_NAMES, s['names']):,} names after a {s['warm_seconds']:g} s warm-up, "
        f"cold runs (`IDNODE_CACHE_ENTRIES=0`) over all {s['names']:,}",
        f"- {s['duration']:g} s per run; peak = closed loop (wrk, native_load window, "
        "unpaced dnsperf); fixed rates = open loop (h2load --rps, native_load paced, "
        f"dnsperf -Q); rates above {PEAK_SHARE:.0%} of the peak skipped",
        "- latency in ms; errors = failed, lost or non-success answers; node CPU = user + "
        "kernel time of all node processes per successful answer; cores = CPU used during the "
        "run by the node, by PostgreSQL's server processes, by the load generator, and by "
        "anything else on the machine (other jobs: a sign of noise)",
    ]


def _peak_table(rows: list[Row]) -> list[str]:
    columns = sorted({(r.db, r.workers) for r in rows}, key=lambda c: (DATABASES.index(c[0]), c[1]))
    lines = [
        "| protocol | cache | " + " | ".join(f"{db} ×{w}" for db, w in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    peaks = {(r.protocol, r.cache, r.db, r.workers): r for r in rows if r.kind == "peak"}
    for protocol, cache in dict.fromkeys((r.protocol, r.cache) for r in rows):
        cells = [peaks.get((protocol, cache, db, w)) for db, w in columns]
        text = [f"{c.achieved_rps:,.0f}" if c else "–" for c in cells]
        lines.append(f"| {protocol} | {cache} | " + " | ".join(text) + " |")
    return lines


def _runs_table(rows: list[Row]) -> list[str]:
    lines = [
        "| protocol | db | workers | cache | offered/s | achieved/s | p50 | p99 | p99.9 "
        "| errors | node µs CPU/reply | cores node / db / load / other |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        offered = "peak" if r.offered_rps is None else f"{r.offered_rps:,}"
        cpu = "–" if r.server_cpu_us_per_reply is None else f"{r.server_cpu_us_per_reply:.0f}"
        lines.append(
            f"| {r.protocol} | {r.db} | {r.workers} | {r.cache} | {offered} | "
            f"{r.achieved_rps:,.0f} | {ms_text(r.p50_ms)} | {ms_text(r.p99_ms)} | "
            f"{ms_text(r.p999_ms)} | "
            f"{r.errors} | {cpu} | {r.node_cores:.2f} / {r.database_cores:.2f} / "
            f"{r.generator_cores:.2f} / {r.other_cores:.2f} |"
        )
    return lines


def markdown(report: dict[str, Any], rows: list[Row]) -> str:
    lines = ["# idnode benchmark", "", *_context_lines(report), ""]
    lines += ["## Peak throughput (successful answers/s)", "", *_peak_table(rows), ""]
    lines += ["## Every run", "", *_runs_table(rows), ""]
    generators = sorted({f"{r.protocol}: {r.generator}" for r in rows})
    lines += ["## Load generators", "", *(f"- {g}" for g in generators), ""]
    if report["notes"]:
        lines += ["## Notes", "", *(f"- {n}" for n in report["notes"]), ""]
    if report.get("chart"):
        lines += [f"![latency against offered load]({report['chart']})", ""]
    return "\n".join(lines)


def chart(rows: list[Row], path: Path) -> str | None:
    """p50 (solid) and p99 (dashed) against the offered rate, one panel per protocol and
    cache, a line per database and worker count. None if matplotlib is missing."""
    try:
        # Imported by name: it is optional, and the type checker need not have it.
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return None
    fixed = [r for r in rows if r.kind == "rate" and r.p50_ms is not None]
    panels = list(dict.fromkeys((r.protocol, r.cache) for r in fixed))
    if not panels:
        return None
    columns = len({cache for _, cache in panels})
    protocols = list(dict.fromkeys(protocol for protocol, _ in panels))
    figure, axes = plt.subplots(
        len(protocols), columns, figsize=(6.5 * columns, 3.4 * len(protocols)), squeeze=False
    )
    caches = sorted({cache for _, cache in panels}, key=CACHES.index)
    for row_index, protocol in enumerate(protocols):
        for col_index, cache in enumerate(caches):
            _panel(axes[row_index][col_index], protocol, cache, fixed)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


def _panel(ax: Any, protocol: str, cache: str, rows: list[Row]) -> None:
    ticker: Any = importlib.import_module("matplotlib.ticker")
    mine = [r for r in rows if r.protocol == protocol and r.cache == cache]
    for index, (db, workers) in enumerate(sorted({(r.db, r.workers) for r in mine})):
        series = sorted((r for r in mine if (r.db, r.workers) == (db, workers)), key=_order)
        x = [r.offered_rps for r in series]
        colour = f"C{index}"
        ax.plot(x, [r.p50_ms for r in series], "o-", color=colour, label=f"{db} ×{workers} p50")
        ax.plot(x, [r.p99_ms for r in series], "s--", color=colour, label=f"{db} ×{workers} p99")
    ax.set_title(f"{protocol}, {cache}")
    ax.set_xlabel("offered requests/s")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    # Labels at 1, 2, 5 × 10ⁿ as plain numbers: a panel may span less than a decade.
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlim(left=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small")


def outputs(prefix: Path) -> dict[str, Path]:
    """``--out results/bench`` → results/bench.md, .json, .png; a directory → bench.* in it."""
    if prefix.is_dir():
        prefix = prefix / "bench"
    return {ext: prefix.parent / f"{prefix.name}.{ext}" for ext in ("md", "json", "png")}


def write_report(suite: Suite, prefix: Path, runtime: float) -> dict[str, Path]:
    paths = outputs(prefix)
    paths["md"].parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(suite.rows, key=_order)
    settings = suite.settings
    drawn = chart(rows, paths["png"])
    notes = list(suite.notes)
    if drawn is None:
        notes.append("no chart: matplotlib is not installed (pip install matplotlib)")
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runtime_s": round(runtime, 1),
        "machine": machine(),
        "settings": {
            **asdict(settings),
            "names": len(suite.names["cold"]),
            "peak_share": PEAK_SHARE,
        },
        "chart": drawn,
        "notes": notes,
        "runs": [asdict(r) for r in rows],
    }
    write_results(paths["json"], report)
    paths["md"].write_text(markdown(report, rows))
    if drawn is None:
        del paths["png"]
    return paths
