"""The benchmark suite's load generators, one per protocol, each against one running
node: a warm-up, a closed-loop peak and a run at a fixed offered rate, measured alike.

* HTTP: ``wrk`` for the peak, ``h2load --h1 --rps`` for fixed rates;
* native Handle (UDP and TCP): ``loadtest.native_load``;
* DNS: ``dnsperf``.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from loadtest import dnsperf, native_load
from loadtest.bench_http import _LUA, wrk
from loadtest.demo_node import DemoNode
from loadtest.dnsperf import LatencyHistogram
from loadtest.mix import DemoMix

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
