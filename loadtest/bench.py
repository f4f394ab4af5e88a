"""The node's benchmark suite: every protocol, peak throughput and latency at fixed
offered rates, with the answer caches warm and off, on SQLite and PostgreSQL, with
one and two worker processes.

For each database and worker count the node (``idnode demo`` on free loopback ports)
is started twice: once with its caches (warmed by a short run first) and once with
``IDNODE_CACHE_ENTRIES=0`` (cold: every request reads the database). Against each,
for every protocol, with the load generator that suits it:

* HTTP ``GET /api/handles/<name>``: peak with ``wrk`` (closed loop, 32 connections);
  fixed rates with ``h2load --h1 --rps`` (open loop per connection), latency of every
  request from its ``--log-file``;
* native Handle, UDP and persistent TCP: ``loadtest.native_load`` (pre-encoded
  requests, forked asyncio clients), closed loop for the peak, paced open loop for
  the fixed rates;
* DNS (TXT of the identifier's name in the zone): ``dnsperf``, unpaced for the peak,
  ``-Q rate`` with per-query latencies for the fixed rates.

Offered rates above 90% of the peak just measured are skipped (if all are, one run at
half the peak takes their place). The load generator shares the machine's cores with
the node: every figure is what both reach together. Every run is bounded in time.

Results: ``<out>.md`` (tables), ``<out>.json`` (every figure, the machine) and
``<out>.png`` (p50/p99 against offered load; needs matplotlib). The node's files (the
SQLite demo, seeded once; the node key, which a PostgreSQL database stays bound to) are
kept in ``<out>-node`` or ``--workdir``. Usage::

    python -m loadtest.bench [--quick] [--protocols http,handle,dns] [--dbs sqlite,postgresql]
                             [--workers 1,2] [--caches cached,cold] [--rates SPEC]...
                             [--duration S] [--out results/bench] [--workdir DIR]

``--rates`` takes ``1000,5000`` (every protocol) or ``PROTOCOL=1000,5000`` (``http``,
``handle``, ``handle-udp``, ``handle-tcp``, ``dns``) and may be repeated. ``--quick``
is the test suite's smoke run: a small demo, SQLite, one worker, cached, 1-second runs,
the first offered rate of each protocol.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from loadtest import dnsperf, native_load
from loadtest.bench_dns import machine_busy_seconds, version
from loadtest.bench_http import _LUA, wrk
from loadtest.demo_node import DemoNode, cpu_seconds, write_results
from loadtest.dnsperf import LatencyHistogram
from loadtest.harness import demo_enterprises, example_handle
from loadtest.mix import DemoMix

PROTOCOLS = {"http": ("http",), "handle": ("handle-udp", "handle-tcp"), "dns": ("dns",)}
"""What ``--protocols`` names, and the rows ("modes") each one gives."""
DEFAULT_RATES: dict[str, tuple[int, ...]] = {
    "http": (1000, 2500, 5000),
    "handle-udp": (2000, 10_000, 20_000),
    "handle-tcp": (2000, 10_000, 20_000),
    "dns": (2000, 10_000, 20_000),
}
DATABASES = ("sqlite", "postgresql")
CACHES = ("cached", "cold")
POSTGRESQL = "postgresql+asyncpg://postgres@127.0.0.1:5432/idnode_bench"
PEAK_SHARE = 0.9
"""Offered rates above this share of the measured peak are not run: they only overload."""
DEMO = (32, 10_240)
QUICK_DEMO = (32, 640)
CACHED_NAMES = 1000
"""Cached runs cycle over this many names (all warmed); cold runs over every identifier."""
WRK_CONNECTIONS = 32
H2LOAD_CONNECTION_RPS = 100
"""HTTP/1.1 has one request in flight per connection: a connection asked at most 100
times a second leaves 10 ms for an answer before it delays the next request."""
DNSPERF_CLIENTS = 20
DNSPERF_OUTSTANDING = 200
NATIVE_WINDOW = 32
NATIVE_SOCKETS = 8
NATIVE_PROCESS_RATE = 10_000
"""An open-loop native run above this rate gets a second client process."""
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


# --- settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    modes: tuple[str, ...]
    dbs: tuple[str, ...]
    workers: tuple[int, ...]
    caches: tuple[str, ...]
    rates: dict[str, tuple[int, ...]]
    duration: float
    warm_seconds: float
    demo: tuple[int, int]
    """Enterprises and identifiers of the demo data set."""
    postgresql: str
    quick: bool


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_rates(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``1000,5000`` for every mode, ``http=1000,2500`` or ``handle=...`` for some."""
    rates = dict(DEFAULT_RATES)
    for spec in specs:
        target, _, values = spec.rpartition("=")
        numbers = tuple(sorted(int(float(v)) for v in _items(values)))
        if not numbers or min(numbers) < 1:
            raise ValueError(f"--rates {spec!r}: positive numbers, comma-separated")
        if not target:
            modes: Sequence[str] = list(rates)
        elif target in PROTOCOLS:
            modes = PROTOCOLS[target]
        elif target in rates:
            modes = [target]
        else:
            raise ValueError(f"--rates {spec!r}: unknown protocol {target!r}")
        for mode in modes:
            rates[mode] = numbers
    return rates


def settings_from(args: argparse.Namespace) -> Settings:
    protocols = _items(args.protocols)
    unknown = set(protocols) - set(PROTOCOLS)
    dbs = _items(args.dbs)
    caches = _items(args.caches)
    if unknown or set(dbs) - set(DATABASES) or set(caches) - set(CACHES):
        raise ValueError("--protocols, --dbs or --caches names something unknown")
    modes = tuple(mode for p in protocols for mode in PROTOCOLS[p])
    workers = tuple(int(w) for w in _items(args.workers))
    rates = parse_rates(args.rates)
    if not modes or not dbs or not caches or not workers or min(workers) < 1:
        raise ValueError("nothing to run: check --protocols, --dbs, --caches and --workers")
    settings = Settings(
        modes=modes,
        dbs=tuple(dbs),
        workers=workers,
        caches=tuple(caches),
        rates=rates,
        duration=max(1.0, min(args.duration, 120.0)),
        warm_seconds=2.0,
        demo=DEMO,
        postgresql=args.postgresql,
        quick=False,
    )
    if args.quick:  # the smoke run: smallest of everything, whatever else was asked
        settings = replace(
            settings,
            dbs=("sqlite",),
            workers=(1,),
            caches=("cached",),
            rates={mode: values[:1] for mode, values in rates.items()},
            duration=1.0,
            warm_seconds=0.5,
            demo=QUICK_DEMO,
            quick=True,
        )
    return settings


# --- names -----------------------------------------------------------------------------


def demo_names(enterprises: int, identifiers: int) -> list[str]:
    """Every product-level identifier the demo seeds, enterprise after enterprise in
    turn, so that any leading slice spreads over every enterprise and mode. Each
    enterprise gets ceil(identifiers / enterprises) records; a traceability one spends
    1/16 of them (at least one) on batch records, so its products stop short of that."""
    per_enterprise = -(-identifiers // enterprises)
    ents = demo_enterprises(enterprises)
    limits = [
        per_enterprise - max(1, per_enterprise // 16) if e.mode.key == "trace" else per_enterprise
        for e in ents
    ]
    return [
        example_handle(ent, i)
        for i in range(1, per_enterprise + 1)
        for ent, limit in zip(ents, limits, strict=True)
        if i <= limit
    ]


# --- one measurement -------------------------------------------------------------------


@dataclass
class Measure:
    achieved: float
    """Successful answers per second."""
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    generator: str
    detail: dict[str, Any] = field(default_factory=dict)


def _histogram_measure(
    histogram: LatencyHistogram, seconds: float, errors: int, generator: str
) -> Measure:
    return Measure(
        histogram.count / seconds,
        histogram.count,
        errors,
        histogram.percentile(0.50),
        histogram.percentile(0.99),
        histogram.percentile(0.999),
        generator,
    )


class Driver(Protocol):
    """The load generator of one protocol, against one running node."""

    def warm(self, seconds: float) -> None: ...

    def peak(self, seconds: float) -> Measure: ...

    def at(self, rate: int, seconds: float) -> Measure: ...


# --- HTTP: wrk and h2load ----------------------------------------------------------------

_H2LOAD_REQUESTS = re.compile(
    r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)


def read_h2load_log(path: Path) -> tuple[LatencyHistogram, int]:
    """h2load's ``--log-file``: start (µs since the epoch), status, duration (µs) per
    request. The 2xx ones' latencies, and how many were not 2xx."""
    histogram = LatencyHistogram()
    other = 0
    with path.open() as log:
        for line in log:
            parts = line.split()
            if len(parts) < 3:
                continue
            if parts[1].startswith("2"):
                histogram.add(int(parts[2]) / 1e6)
            else:
                other += 1
    return histogram, other


def h2load(uri_file: Path, rate: int, seconds: float, log: Path) -> Measure:
    """HTTP/1.1 at ``rate`` requests/s in all over enough connections that each is paced
    at ≤ ``H2LOAD_CONNECTION_RPS``."""
    clients = max(4, math.ceil(rate / H2LOAD_CONNECTION_RPS))
    per_client = rate / clients
    duration = max(1, round(seconds))
    log.unlink(missing_ok=True)  # h2load appends to it
    argv = [
        "h2load", "--h1", "-t1", f"-c{clients}", f"--rps={per_client:.3f}", f"-D{duration}",
        "-i", str(uri_file), f"--log-file={log}",
    ]  # fmt: skip
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + 60, check=True
    ).stdout
    histogram, not_2xx = read_h2load_log(log)
    counts = _H2LOAD_REQUESTS.search(out)
    # "failed" already counts the non-2xx answers; without the summary, the log's count.
    errors = sum(int(n) for n in counts.groups()) if counts else not_2xx
    generator = f"h2load --h1 -c{clients} --rps={per_client:g}"
    return _histogram_measure(histogram, duration, errors, generator)


class HttpDriver:
    def __init__(self, node: DemoNode, names: Sequence[str], workdir: Path) -> None:
        paths = [f"/api/handles/{name}" for name in names]
        self.base = node.base
        self.script = workdir / f"bench-{len(paths)}.lua"
        self.script.write_text(_LUA % ",".join(json.dumps(p) for p in paths))
        self.uris = workdir / f"bench-{len(paths)}.uris"
        self.uris.write_text("".join(f"{self.base}{p}\n" for p in paths))
        self.log = workdir / "h2load.log"

    def warm(self, seconds: float) -> None:
        wrk(self.base, self.script, duration=max(1, round(seconds)), connections=WRK_CONNECTIONS)

    def peak(self, seconds: float) -> Measure:
        duration = max(1, round(seconds))
        rate, p50, p99, errors = wrk(
            self.base, self.script, duration=duration, connections=WRK_CONNECTIONS
        )
        return Measure(
            rate, round(rate * duration), errors, p50, p99, None, f"wrk -t1 -c{WRK_CONNECTIONS}"
        )

    def at(self, rate: int, seconds: float) -> Measure:
        return h2load(self.uris, rate, seconds, self.log)


# --- native Handle: loadtest.native_load --------------------------------------------------


class NativeDriver:
    def __init__(self, node: DemoNode, names: Sequence[str], transport: str) -> None:
        host, _, port = node.endpoints["handle"].rpartition(":")
        self.load = native_load.Load(
            host, int(port), tuple(names), 1.0, transport, None, NATIVE_WINDOW, 2, NATIVE_SOCKETS
        )

    def _run(self, load: native_load.Load, generator: str) -> Measure:
        outcome = native_load.run(load)
        return Measure(
            outcome.throughput,
            outcome.answered,
            outcome.failed,
            outcome.ms(0.50),
            outcome.ms(0.99),
            outcome.ms(0.999),
            generator,
            {
                "sent": outcome.sent,
                "lost": outcome.lost,
                "late": outcome.late,
                "max_lag_ms": round(outcome.max_lag_ms, 2),
            },
        )

    def warm(self, seconds: float) -> None:
        native_load.run(replace(self.load, seconds=seconds))

    def peak(self, seconds: float) -> Measure:
        load = replace(self.load, seconds=seconds)
        generator = (
            f"native_load closed loop, {load.processes} processes × {load.sockets} "
            f"{load.transport} sockets, window {load.window}"
        )
        return self._run(load, generator)

    def at(self, rate: int, seconds: float) -> Measure:
        processes = 1 if rate <= NATIVE_PROCESS_RATE else 2
        load = replace(self.load, seconds=seconds, rate=float(rate), processes=processes)
        generator = (
            f"native_load open loop, {processes} process(es) × {load.sockets} {load.transport}"
        )
        return self._run(load, generator)


# --- DNS: dnsperf ----------------------------------------------------------------------


class DnsDriver:
    def __init__(self, node: DemoNode, names: Sequence[str], demo: tuple[int, int]) -> None:
        host, _, port = node.endpoints["dns"].rpartition(":")
        self.address = (host, int(port))
        mix = DemoMix(*demo)
        self.queries = [(mix.dns_name(name), "TXT") for name in names]

    def _dnsperf(self, seconds: float, rate: int | None) -> dnsperf.DnsperfResult:
        return dnsperf.run_dnsperf(
            *self.address,
            self.queries,
            seconds=seconds,
            clients=DNSPERF_CLIENTS,
            outstanding=DNSPERF_OUTSTANDING,
            rate=rate,
            edns=True,
            latencies=rate is not None,  # -v costs dnsperf throughput: not at the peak
        )

    def warm(self, seconds: float) -> None:
        self._dnsperf(seconds, None)

    def _measure(self, result: dnsperf.DnsperfResult, generator: str) -> Measure:
        # Every name asked exists: any answer but NOERROR is an error, as is a lost query.
        wrong = sum(n for code, n in result.rcodes.items() if code != "NOERROR")
        return Measure(
            result.qps,
            result.queries_completed,
            result.queries_lost + wrong,
            result.p50_ms,
            result.p99_ms,
            result.p999_ms,
            generator,
            {
                "sent": result.queries_sent,
                "lost": result.queries_lost,
                "rcodes": result.rcodes,
                "avg_ms": result.avg_latency_ms,
            },
        )

    def peak(self, seconds: float) -> Measure:
        generator = f"dnsperf -c{DNSPERF_CLIENTS} -q{DNSPERF_OUTSTANDING}"
        return self._measure(self._dnsperf(seconds, None), generator)

    def at(self, rate: int, seconds: float) -> Measure:
        generator = f"dnsperf -c{DNSPERF_CLIENTS} -q{DNSPERF_OUTSTANDING} -Q{rate} -v"
        return self._measure(self._dnsperf(seconds, rate), generator)


def driver(mode: str, node: DemoNode, names: Sequence[str], settings: Settings) -> Driver:
    if mode == "http":
        return HttpDriver(node, names, node.workdir)
    if mode.startswith("handle-"):
        return NativeDriver(node, names, mode.removeprefix("handle-"))
    return DnsDriver(node, names, settings.demo)


# --- the runs ----------------------------------------------------------------------------


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


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def summary(row: Row) -> str:
    cpu = "–" if row.server_cpu_us_per_reply is None else f"{row.server_cpu_us_per_reply:.0f}"
    return (
        f"{row.achieved_rps:,.0f}/s, p50 {_ms(row.p50_ms)} p99 {_ms(row.p99_ms)} "
        f"p99.9 {_ms(row.p999_ms)} ms, errors {row.errors}, server {cpu} µs CPU/reply"
    )


# --- the report ----------------------------------------------------------------------------


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
            f"{r.achieved_rps:,.0f} | {_ms(r.p50_ms)} | {_ms(r.p99_ms)} | {_ms(r.p999_ms)} | "
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


def missing_tools(settings: Settings) -> list[str]:
    needed = {"http": ("wrk", "h2load"), "dns": (dnsperf.DNSPERF,)}
    return [
        tool
        for mode in settings.modes
        for tool in needed.get(mode, ())
        if shutil.which(tool) is None
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the test suite's smoke run")
    parser.add_argument("--protocols", default="http,handle,dns")
    parser.add_argument("--dbs", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2", help="node worker processes to try")
    parser.add_argument("--caches", default="cached,cold")
    parser.add_argument("--rates", action="append", default=[], metavar="SPEC")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run (≤ 120)")
    parser.add_argument("--postgresql", default=POSTGRESQL, metavar="URL")
    parser.add_argument("--out", default="results/bench", help="prefix of the result files")
    parser.add_argument(
        "--workdir", help="the node's files: demo database, key (default: <out>-node)"
    )
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError as error:
        parser.error(str(error))
    missing = missing_tools(settings)
    if missing:
        print(f"missing: {', '.join(sorted(set(missing)))} (apt-get install wrk nghttp2-client "
              "dnsperf)", file=sys.stderr)  # fmt: skip
        return 2
    began = time.monotonic()
    paths = outputs(Path(args.out))
    # Kept between runs: the SQLite demo is seeded once, and the node key stays the one
    # the PostgreSQL database was first set up with (the node refuses another).
    workdir = (
        Path(args.workdir)
        if args.workdir
        else paths["json"].with_name(f"{paths['json'].stem}-node")
    )
    workdir.mkdir(parents=True, exist_ok=True)
    suite = Suite(settings, workdir)
    suite.run()
    paths = write_report(suite, Path(args.out), time.monotonic() - began)
    print(f"\n{paths['md'].read_text()}")
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 1 if any("failed" in n or "not measured" in n for n in suite.notes) else 0


if __name__ == "__main__":
    sys.exit(main())
