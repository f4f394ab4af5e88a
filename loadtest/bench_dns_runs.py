"""One dnsperf run of the DNS benchmark against one server, and where the CPU went
meanwhile: the server, dnsperf, this script, the rest of the machine.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loadtest import dnsperf
from loadtest.demo_node import children, cpu_seconds, machine_busy_seconds

WARM_SECONDS = 2.0


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
