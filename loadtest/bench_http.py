"""HTTP resolution benchmark: ``GET /api/handles/<handle>`` driven by ``wrk``.

Starts a real node (the demo data set: 32 enterprises, 10,240 identifiers)
on SQLite or PostgreSQL, then measures over loopback:

* cached: the answer cache warm; peak throughput, then latency at half of it;
* cold: the cache disabled (``cache_entries = 0``), so every request reads the store.

Figures are printed as a table and written to ``results/bench-http.json``.
Every run is bounded by ``--duration``. Usage::

    python -m loadtest.bench_http [--db sqlite|URL] [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtest.demo_node import DemoNode, write_results
from loadtest.harness import demo_enterprises, example_handle

_LUA = """
local paths = {%s}
local i = math.random(#paths)
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
delay = function()
  return pause
end
"""


@dataclass
class Run:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    target_rate: float | None = None


def demo_paths(count: int) -> list[str]:
    """Names the demo seeds, spread over every enterprise."""
    enterprises = demo_enterprises(32)
    paths = []
    for i in range(count):
        ent = enterprises[i % len(enterprises)]
        paths.append(f"/api/handles/{example_handle(ent, 1 + (i // len(enterprises)) % 300)}")
    return paths


def wrk(
    base: str, script: Path, *, duration: int, connections: int, delay_ms: float = 0
) -> tuple[float, float, float, int]:
    env = {**os.environ, "BENCH_DELAY_MS": f"{delay_ms:.3f}"}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        env=env,
        timeout=duration + 60,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    errors_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    errors = int(errors_match.group(1)) if errors_match else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(0)))
    return rate, p50, p99, errors


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def warm(base: str, paths: list[str]) -> None:
    for path in paths:
        with urllib.request.urlopen(base + path, timeout=10) as response:  # noqa: S310
            response.read()


def bench(db: str | None, *, duration: int, connections: int) -> list[Run]:
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="idnode-bench-") as tmp:
        workdir = Path(tmp)
        cached_paths = demo_paths(1000)
        cold_paths = demo_paths(10_000)
        scripts = {}
        for name, paths in (("cached", cached_paths), ("cold", cold_paths)):
            script = workdir / f"{name}.lua"
            script.write_text(_LUA % ",".join(json.dumps(p) for p in paths))
            scripts[name] = script
        store = ("--db", db) if db else ()
        with DemoNode(workdir, *store) as node:
            warm(node.base, cached_paths)
            rate, p50, p99, errors = wrk(
                node.base, scripts["cached"], duration=duration, connections=connections
            )
            runs.append(Run("cached, peak", rate, p50, p99, errors))
            half = rate / 2
            # Each connection waits so that all of them together ask at half the peak.
            delay_ms = connections * 1000.0 / half
            rate2, p50, p99, errors = wrk(
                node.base,
                scripts["cached"],
                duration=duration,
                connections=connections,
                delay_ms=delay_ms,
            )
            runs.append(Run("cached, half of peak", rate2, p50, p99, errors, target_rate=half))
        with DemoNode(workdir, *store, env={"IDNODE_CACHE_ENTRIES": "0"}) as node:
            rate, p50, p99, errors = wrk(
                node.base, scripts["cold"], duration=duration, connections=connections
            )
            runs.append(Run("cold (store), peak", rate, p50, p99, errors))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db",
        default="sqlite",
        help="sqlite (the demo file) or a postgresql+asyncpg:// URL of an empty database",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (≤ 120)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--output", default="results/bench-http.json")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    duration = max(1, min(args.duration, 120))
    db = None if args.db == "sqlite" else args.db
    runs = bench(db, duration=duration, connections=args.connections)
    backend = "sqlite" if db is None else "postgresql"
    print(
        f"\nGET /api/handles on {backend}, {args.connections} connections, "
        f"{duration} s per run, {os.cpu_count()} CPUs"
    )
    print(f"{'run':<24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for run in runs:
        print(
            f"{run.name:<24}{run.requests_per_second:>10.0f}{run.p50_ms:>9.2f}"
            f"{run.p99_ms:>9.2f}{run.errors:>8}"
        )
    previous = Path(args.output)
    existing: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    existing[backend] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "connections": args.connections,
        "duration_s": duration,
        "runs": [asdict(r) for r in runs],
    }
    output = write_results(previous, existing)
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
