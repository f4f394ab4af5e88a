"""Drive ``dnsperf`` (DNS-OARC, 2.10) against a DNS server and parse its figures.

dnsperf reports throughput, loss, response codes and the average latency,
but no percentiles. With ``-v`` it prints one line per answered query,
``> NOERROR name type 0.000123`` (latency in seconds), or ``> T name type``
for a timeout; those lines are read as they come and folded into a bounded
histogram (1 µs buckets below 1 ms, three significant digits above), from
which p50/p99 are taken. Verbose output costs dnsperf some throughput: pass
``latencies=False`` to measure peak rate without it.

Every run is bounded: dnsperf gets ``-l seconds`` and is killed if it has
not finished ``seconds + timeout + 10`` seconds later.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

DNSPERF = "dnsperf"
_GRACE = 10.0
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_STATS = {
    "queries_sent": re.compile(r"^\s*Queries sent:\s+([0-9]+)", re.M),
    "queries_completed": re.compile(r"^\s*Queries completed:\s+([0-9]+)", re.M),
    "queries_lost": re.compile(r"^\s*Queries lost:\s+([0-9]+)", re.M),
    "queries_interrupted": re.compile(r"^\s*Queries interrupted:\s+([0-9]+)", re.M),
    "run_time_s": re.compile(rf"^\s*Run time \(s\):\s+{_NUMBER}", re.M),
    "qps": re.compile(rf"^\s*Queries per second:\s+{_NUMBER}", re.M),
    "avg_latency_s": re.compile(rf"^\s*Average Latency \(s\):\s+{_NUMBER}", re.M),
}
_LATENCY_RANGE = re.compile(rf"\(min {_NUMBER}, max {_NUMBER}\)")
_RCODES = re.compile(r"^\s*Response codes:[ \t]*(.*)$", re.M)
_RCODE_ITEM = re.compile(r"([A-Za-z0-9]+) ([0-9]+) \(")


class DnsperfError(RuntimeError):
    """dnsperf is missing, failed, or did not finish in time."""


@dataclass
class DnsperfResult:
    queries_sent: int
    queries_completed: int
    queries_lost: int
    qps: float
    avg_latency_ms: float
    p50_ms: float | None
    p99_ms: float | None
    min_latency_ms: float
    max_latency_ms: float
    run_time_s: float
    queries_interrupted: int = 0
    timeouts: int = 0
    p999_ms: float | None = None
    rcodes: dict[str, int] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)


class LatencyHistogram:
    """Latencies in microseconds, in a bounded number of buckets."""

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0

    @staticmethod
    def bucket(microseconds: float) -> int:
        value = max(0, round(microseconds))
        if value < 1000:
            return value
        scale = int(10 ** (len(str(value)) - 3))  # keep three significant digits
        return round(value / scale) * scale

    def add(self, seconds: float) -> None:
        self.buckets[self.bucket(seconds * 1e6)] += 1
        self.count += 1

    def merge(self, other: LatencyHistogram) -> None:
        """Add another histogram's samples (e.g. of another load process)."""
        self.buckets.update(other.buckets)
        self.count += other.count

    def percentile(self, fraction: float) -> float | None:
        """The latency (ms) below or at which ``fraction`` of the samples lie."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for micros in sorted(self.buckets):
            seen += self.buckets[micros]
            if seen >= rank:
                return micros / 1000.0
        return max(self.buckets) / 1000.0


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)  # dnsperf prints microseconds


def available() -> bool:
    return shutil.which(DNSPERF) is not None


def write_queries(path: Path, queries: list[tuple[str, str]]) -> None:
    """A dnsperf data file: one ``name type`` line per query."""
    if not queries:
        raise ValueError("dnsperf needs at least one query")
    lines = []
    for name, rdtype in queries:
        if not name or any(c.isspace() for c in name) or not rdtype.isalnum():
            raise ValueError(f"bad query {name!r} {rdtype!r}")
        lines.append(f"{name} {rdtype}\n")
    path.write_text("".join(lines))


def parse_statistics(text: str) -> dict[str, float | int | dict[str, int]]:
    """The figures of dnsperf's final ``Statistics:`` block."""
    found: dict[str, float | int | dict[str, int]] = {}
    for key, pattern in _STATS.items():
        match = pattern.search(text)
        if match:
            raw = match.group(1)
            found[key] = float(raw) if "." in raw or key.endswith("_s") else int(raw)
    match = _LATENCY_RANGE.search(text)
    if match:
        found["min_latency_s"] = float(match.group(1))
        found["max_latency_s"] = float(match.group(2))
    match = _RCODES.search(text)
    if match:
        found["rcodes"] = {code: int(n) for code, n in _RCODE_ITEM.findall(match.group(1))}
    return found


def run_dnsperf(
    host: str,
    port: int,
    queries: list[tuple[str, str]],
    *,
    seconds: float,
    clients: int = 10,
    outstanding: int = 100,
    rate: int | None = None,
    edns: bool = False,
    mode: str = "udp",
    timeout: float = 2.0,
    threads: int | None = None,
    latencies: bool = True,
) -> DnsperfResult:
    """Run dnsperf for ``seconds`` against ``host:port`` cycling over ``queries``.

    ``rate`` caps queries per second (``-Q``); ``timeout`` is the per-query
    timeout (``-t``); ``threads`` defaults to 1 for one client, else 2.
    p50/p99/p99.9 come from the per-query lines of ``-v`` (None if
    ``latencies=False`` or nothing was answered).
    """
    binary = shutil.which(DNSPERF)
    if binary is None:
        raise DnsperfError("dnsperf is not installed")
    if seconds <= 0 or clients < 1 or outstanding < 1 or timeout <= 0:
        raise ValueError("seconds, clients, outstanding and timeout must be positive")
    if rate is not None and rate < 1:
        raise ValueError("rate must be positive")
    if mode not in ("udp", "tcp"):
        raise ValueError("mode must be udp or tcp")
    nthreads = threads or min(2, clients)
    with tempfile.TemporaryDirectory(prefix="dnsperf-") as tmp:
        data = Path(tmp) / "queries.txt"
        write_queries(data, queries)
        argv = [
            binary,
            "-s", host,
            "-p", str(port),
            "-m", mode,
            "-d", str(data),
            "-l", f"{seconds:g}",
            "-t", f"{timeout:g}",
            "-c", str(clients),
            "-T", str(nthreads),
            "-q", str(outstanding),
        ]  # fmt: skip
        if rate is not None:
            argv += ["-Q", str(rate)]
        if edns:
            argv.append("-e")
        if latencies:
            argv.append("-v")
        histogram = LatencyHistogram()
        timeouts = 0
        tail: deque[str] = deque(maxlen=500)  # the other lines; the statistics come last
        stderr_path = Path(tmp) / "stderr.txt"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        watchdog = threading.Timer(seconds + timeout + _GRACE, kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("> "):
                    parts = line.split()
                    if len(parts) >= 5 and parts[1] != "T":
                        try:
                            histogram.add(float(parts[-1]))
                        except ValueError:
                            tail.append(line)
                    elif parts[1:2] == ["T"]:
                        timeouts += 1
                else:
                    tail.append(line)
            code = proc.wait(timeout=_GRACE)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors = stderr_path.read_text(errors="replace")
    output = "".join(tail)
    if killed.is_set():
        raise DnsperfError(f"dnsperf did not finish in time:\n{output}{errors}")
    if code != 0:
        raise DnsperfError(f"dnsperf exited with status {code}:\n{output}{errors}")
    stats = parse_statistics(output)
    missing = {"queries_sent", "queries_completed", "queries_lost", "qps"} - stats.keys()
    if missing:
        raise DnsperfError(f"dnsperf output lacks {sorted(missing)}:\n{output}{errors}")

    def number(key: str) -> float:
        value = stats.get(key, 0)
        assert isinstance(value, int | float)
        return float(value)

    rcodes = stats.get("rcodes", {})
    assert isinstance(rcodes, dict)
    return DnsperfResult(
        queries_sent=int(number("queries_sent")),
        queries_completed=int(number("queries_completed")),
        queries_lost=int(number("queries_lost")),
        queries_interrupted=int(number("queries_interrupted")),
        qps=number("qps"),
        avg_latency_ms=_ms(number("avg_latency_s")),
        min_latency_ms=_ms(number("min_latency_s")),
        max_latency_ms=_ms(number("max_latency_s")),
        run_time_s=number("run_time_s"),
        p50_ms=histogram.percentile(0.50),
        p99_ms=histogram.percentile(0.99),
        p999_ms=histogram.percentile(0.999),
        timeouts=timeouts,
        rcodes=rcodes,
        command=argv,
    )
