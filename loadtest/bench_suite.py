"""The benchmark suite's runs: for each database, worker count and cache, a node
started, and for each mode its warm-up, peak and offered rates, each a row with where
the CPU went meanwhile (the node, PostgreSQL, the load generator, the rest of the machine).
A run that fails is noted, and the suite goes on.
"""

from __future__ import annotations

import contextlib
import functools
import math
import resource
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest import dnsperf
from loadtest.bench_drivers import DnsDriver, Driver, HttpDriver, Measure, NativeDriver
from loadtest.bench_settings import CACHED_NAMES, PEAK_SHARE, Settings, demo_names
from loadtest.demo_node import DemoNode, cpu_seconds, machine_busy_seconds

LAG_WARNING_MS = 5.0
BUSY_WARNING = 0.3
"""Cores of other work during a run above which its figures are flagged as noisy."""
RUN_ERRORS = (
    BrokenExecutor,
    subprocess.CalledProcessError,
    subprocess.TimeoutExpired,
    dnsperf.DnsperfError,
    TimeoutError,
    OSError,
    ValueError,
)
"""What a run that could not be completed raises: noted, and the suite goes on."""


def driver(mode: str, node: DemoNode, names: Sequence[str], settings: Settings) -> Driver:
    if mode == "http":
        return HttpDriver(node, names, node.workdir)
    if mode.startswith("handle-"):
        return NativeDriver(node, names, mode.removeprefix("handle-"))
    return DnsDriver(node, names, settings.demo)


@dataclass(frozen=True)
class Setup:
    db: str
    workers: int
    cache: str


@dataclass
class Row:
    protocol: str
    db: str
    workers: int
    cache: str
    kind: str
    """``peak`` (closed loop, as fast as it goes) or ``rate`` (a fixed offered rate)."""
    offered_rps: int | None
    achieved_rps: float
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    requests: int
    errors: int
    server_cpu_us_per_reply: float | None
    """User + kernel time of every node process per successful answer."""
    node_cores: float
    database_cores: float
    generator_cores: float
    other_cores: float
    seconds: float
    generator: str
    detail: dict[str, Any] = field(default_factory=dict)


def database_backends(database: str | None) -> list[int]:
    """PostgreSQL's server processes for this database, found by their process title
    (``postgres: 15/main: postgres <database> 127.0.0.1(5432) idle``): the database's
    share of the work runs outside the node's processes."""
    if database is None:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                title = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
                if title.startswith("postgres: ") and f" {database} " in title:
                    found.append(int(entry.name))
    return found


def _each_cpu(pids: Sequence[int]) -> dict[int, float]:
    return {pid: cpu_seconds([pid]) for pid in pids}


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used so far: by the node, the database server, the load generator,
    the whole machine."""

    at: float
    node: float
    database: dict[int, float]
    """By server process: they come and go with the node's connections."""
    generator: float
    machine: float

    @classmethod
    def now(cls, pids: Sequence[int], database: str | None) -> Cpu:
        # The generators are this process and its children (wrk, h2load, dnsperf and the
        # native client processes), which count once reaped, at the end of their run.
        # The node is a child too, but is reaped only when it stops.
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        generator = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
        backends = _each_cpu(database_backends(database))
        return cls(time.monotonic(), cpu_seconds(pids), backends, generator, machine_busy_seconds())


@dataclass(frozen=True)
class CpuUse:
    node_us_per_reply: float | None
    node_cores: float
    database_cores: float
    """PostgreSQL's server processes (SQLite runs inside the node)."""
    generator_cores: float
    other_cores: float
    """The rest of the machine: other jobs, and kernel work charged to no process."""


def measured(
    node: DemoNode, database: str | None, run: Callable[[], Measure]
) -> tuple[Measure, CpuUse]:
    """The measure, and where the CPU went meanwhile."""
    pids = node.pids()
    before = Cpu.now(pids, database)
    measure = run()
    after = Cpu.now(pids, database)
    window = max(after.at - before.at, 1e-3)
    node_s = after.node - before.node
    database_s = sum(t - before.database.get(pid, 0.0) for pid, t in after.database.items())
    generator_s = after.generator - before.generator
    other_s = max(0.0, after.machine - before.machine - node_s - database_s - generator_s)
    per_reply = round(node_s / measure.requests * 1e6, 1) if measure.requests else None
    return measure, CpuUse(
        per_reply,
        round(node_s / window, 2),
        round(database_s / window, 2),
        round(generator_s / window, 2),
        round(other_s / window, 2),
    )


def offered_rates(candidates: Sequence[int], peak: float) -> tuple[list[int], list[int]]:
    """The rates worth running against this peak, and those skipped. If every one is
    skipped, half the peak (two significant digits) is run instead, so that every
    protocol gets its latency figures."""
    chosen = [r for r in candidates if r <= PEAK_SHARE * peak]
    skipped = [r for r in candidates if r > PEAK_SHARE * peak]
    if not chosen and peak >= 2:
        half = peak / 2
        scale = 10 ** max(0, int(math.log10(half)) - 1)
        chosen = [max(1, int(half // scale * scale))]
    return chosen, skipped


class Suite:
    """Runs the benchmark and collects its rows and notes."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.rows: list[Row] = []
        self.notes: list[str] = []
        names = demo_names(*settings.demo)
        self.names = {"cached": names[:CACHED_NAMES], "cold": names}

    def database(self, setup: Setup) -> str | None:
        """The PostgreSQL database's name, whose server processes' CPU is counted."""
        if setup.db != "postgresql":
            return None
        return self.settings.postgresql.rsplit("/", 1)[-1].split("?", 1)[0]

    def say(self, text: str) -> None:
        print(text, flush=True)

    def run(self) -> None:
        for db in self.settings.dbs:
            for workers in self.settings.workers:
                for cache in self.settings.caches:
                    self.node_runs(Setup(db, workers, cache))

    def node_args(self, setup: Setup) -> list[str]:
        enterprises, identifiers = self.settings.demo
        args = ["--workers", str(setup.workers)]
        args += ["--enterprises", str(enterprises), "--identifiers", str(identifiers)]
        if setup.db == "postgresql":
            args += ["--db", self.settings.postgresql]
        return args

    def node_runs(self, setup: Setup) -> None:
        env = {"IDNODE_CACHE_ENTRIES": "0"} if setup.cache == "cold" else {}
        label = f"{setup.db}, {setup.workers} worker(s), {setup.cache}"
        self.say(f"== {label}: starting the node")
        began = time.monotonic()
        with contextlib.ExitStack() as stack:
            try:
                node = stack.enter_context(DemoNode(self.workdir, *self.node_args(setup), env=env))
            except RuntimeError as error:  # e.g. PostgreSQL is not there: the rest goes on
                lines = [line for line in str(error).splitlines() if line.strip()]
                why = lines[-1][:300] if lines else "?"  # the node's last words
                self.notes.append(f"{label}: not measured, the node did not start: {why}")
                self.say(f"   {self.notes[-1]}")
                return
            self.say(f"   up in {time.monotonic() - began:.1f} s: {node.endpoints}")
            for mode in self.settings.modes:
                self.mode_runs(node, setup, mode)

    def mode_runs(self, node: DemoNode, setup: Setup, mode: str) -> None:
        settings = self.settings
        gen = driver(mode, node, self.names[setup.cache], settings)
        with self.guard(setup, mode, "warm-up"):
            if setup.cache == "cached":  # every name answered once, by every worker
                gen.warm(settings.warm_seconds)
        peak = self.row(node, setup, mode, None, lambda: gen.peak(settings.duration))
        if peak is None:
            return
        rates, skipped = offered_rates(settings.rates[mode], peak.achieved_rps)
        if skipped:
            instead = rates and rates[0] not in settings.rates[mode]
            self.notes.append(
                f"{mode}, {setup.db} ×{setup.workers}, {setup.cache}: offered rates "
                f"{', '.join(f'{r:,}' for r in skipped)}/s skipped (above "
                f"{PEAK_SHARE:.0%} of the {peak.achieved_rps:,.0f}/s peak)"
                + (f"; ran {rates[0]:,}/s, about half the peak, instead" if instead else "")
            )
        for rate in rates:
            self.row(node, setup, mode, rate, functools.partial(gen.at, rate, settings.duration))

    @contextlib.contextmanager
    def guard(self, setup: Setup, mode: str, what: str) -> Iterator[None]:
        """A run that fails is noted, and the suite goes on with the next."""
        try:
            yield
        except RUN_ERRORS as error:
            detail = str(error).strip().splitlines()
            self.notes.append(
                f"{mode}, {setup.db} ×{setup.workers}, {setup.cache}, {what}: failed: "
                f"{type(error).__name__}: {detail[0] if detail else ''}"
            )
            self.say(f"   {self.notes[-1]}")

    def row(
        self,
        node: DemoNode,
        setup: Setup,
        mode: str,
        rate: int | None,
        run: Callable[[], Measure],
    ) -> Row | None:
        what = "peak" if rate is None else f"{rate:,}/s"
        with self.guard(setup, mode, what):
            began = time.monotonic()
            measure, cpu = measured(node, self.database(setup), run)
            row = Row(
                mode, setup.db, setup.workers, setup.cache, "peak" if rate is None else "rate",
                rate, round(measure.achieved, 1), measure.p50_ms, measure.p99_ms,
                measure.p999_ms, measure.requests, measure.errors, cpu.node_us_per_reply,
                cpu.node_cores, cpu.database_cores, cpu.generator_cores, cpu.other_cores,
                round(time.monotonic() - began, 1), measure.generator, measure.detail,
            )  # fmt: skip
            self.rows.append(row)
            self.say(f"   {mode:<11}{what:>9}: {summary(row)}")
            if cpu.other_cores > BUSY_WARNING:
                self.notes.append(
                    f"{mode}, {setup.db} ×{setup.workers}, {setup.cache}, {what}: the machine "
                    f"was busy with other work ({cpu.other_cores:.1f} cores): a noisy figure"
                )
            lag = measure.detail.get("max_lag_ms", 0.0)
            if rate is not None and lag > LAG_WARNING_MS:
                self.notes.append(
                    f"{mode}, {setup.db} ×{setup.workers}, {setup.cache}, {what}: the client "
                    f"fell up to {lag:.0f} ms behind its schedule (sharing the cores with the "
                    "node): the requests went out in bursts"
                )
            return row
        return None


def ms_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def summary(row: Row) -> str:
    cpu = "–" if row.server_cpu_us_per_reply is None else f"{row.server_cpu_us_per_reply:.0f}"
    return (
        f"{row.achieved_rps:,.0f}/s, p50 {ms_text(row.p50_ms)} p99 {ms_text(row.p99_ms)} "
        f"p99.9 {ms_text(row.p999_ms)} ms, errors {row.errors}, server {cpu} µs CPU/reply"
    )
