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
import shutil
import sys
import time
from pathlib import Path

# The suite's parts: what to run (bench_settings), the load generator of each protocol
# (bench_drivers), the runs and where the CPU went (bench_suite), the report (bench_report).
from loadtest import dnsperf
from loadtest.bench_report import outputs, write_report
from loadtest.bench_settings import POSTGRESQL, Settings, settings_from
from loadtest.bench_suite import Suite


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
