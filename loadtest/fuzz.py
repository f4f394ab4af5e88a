"""A long fuzzing run: a million generated inputs against the codec and a real node.

    python -m loadtest.fuzz                          # 1,000,000 inputs, seed 1
    python -m loadtest.fuzz --inputs 20000 --minutes 2 --seed 7 --db postgresql+asyncpg://...

Starts ``idnode demo`` on free loopback ports (``loadtest.demo_node``) and drives,
from one fixed-seed generator (the same seed makes the same inputs), and judges
codec and answers by the rules of ``loadtest.oracle`` (those of tests/test_fuzz.py):

- ``codec``: the native codec in this process — every decoder over every input
  must raise only ``CodecError`` (value payloads only ``ValueFormatError``), and a
  decoded message must encode back to itself;
- ``native_udp`` / ``native_tcp``: the node's Handle port — random bytes, real
  requests (resolutions of demo names, site info, admin operations, logins,
  challenge answers) and mutants of them. Whatever the protocol must answer gets
  an answer within the timeout that decodes, carries a response code and the
  request's id and opcode; TCP requests are pipelined on persistent connections;
- ``dns_udp`` / ``dns_tcp``: the node's DNS port — random bytes, dnspython queries
  (demo names, the apex, OIDs, foreign names; EDNS, flags, opcodes, classes) and
  mutants: every query with a header and no QR bit gets an answer with its id
  that parses, FORMERR no larger than the query for what does not parse, never
  SERVFAIL (the store is up);
- ``http``: every operation of the OpenAPI document the node serves with
  parameters and bodies generated from its schemas, valid and broken, as an
  administrator, an identity, nobody or a forger: never a 5xx, and every answer's
  status, content type and (with jsonschema installed) body as documented.

Afterwards the node must still answer every protocol and its log (JSON lines) must
hold no error and no traceback. Counts, rates and the first failures of each lane
go to ``results/fuzz.json``; the exit status is 1 if anything failed. The run is
bounded: it stops at ``--inputs`` or after ``--minutes``, whichever comes first.

This module plans the run, starts the node, checks it afterwards and writes the
report; the lanes are in ``fuzz_native``, ``fuzz_dns`` and ``fuzz_http``, over what
``fuzz_lanes`` gives them all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
from yarl import URL

from resolver.handle import codec as c

from .demo_node import DemoNode, write_results
from .fuzz_dns import DnsInputs, run_dns_tcp, run_dns_udp
from .fuzz_http import run_http
from .fuzz_lanes import ANSWER_TIMEOUT, MAX_SAMPLES, Lane
from .fuzz_native import NativeInputs, run_codec, run_native_tcp, run_native_udp
from .mix import DemoMix

SHARES = {
    "codec": 0.45,
    "native_udp": 0.17,
    "native_tcp": 0.08,
    "dns_udp": 0.19,
    "dns_tcp": 0.06,
    "http": 0.05,
}
"""How ``--inputs`` is split between the lanes."""
DEMO_IDENTIFIERS = 1024


def log_problems(path: Path) -> list[str]:
    """Lines of the node's JSON log at level error or above, or with a traceback."""
    problems = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                problems.append(line[:2000])
            continue
        if isinstance(entry, dict) and (
            entry.get("level") in ("error", "critical") or "exc" in entry
        ):
            problems.append(line[:2000])
    return problems


async def still_answers(node: DemoNode, names: list[str], mix: DemoMix) -> list[str]:
    """After the run, the node must answer every protocol: health, and a demo name
    the fuzzing left in place (it may delete some, as an administrator may) found
    over REST, the native protocol and DNS alike. What did not work."""
    broken = []
    found = None
    async with aiohttp.ClientSession() as session:
        async with session.get(node.base + "/healthz") as resp:
            if resp.status != 200:
                broken.append(f"/healthz: {resp.status}")
        for name in names[:64]:
            url = URL(f"{node.base}/api/handles/{quote(name, safe='')}", encoded=True)
            async with session.get(url) as resp:
                if resp.status == 200:
                    found = name
                    break
                if resp.status != 404:
                    broken.append(f"REST {name}: {resp.status}")
                    break
    if found is None:
        return [*broken, "no demo name left to resolve"]
    host, port = node.endpoints["handle"].rsplit(":", 1)
    request = c.Message(
        c.Envelope(request_id=99),
        c.Header(opcode=c.OC_RESOLUTION),
        c.ResolutionRequest(found.encode()).to_bytes(),
    ).to_bytes()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readexactly(c.ENVELOPE_SIZE), ANSWER_TIMEOUT)
        rest = await reader.readexactly(c.message_length(head))
        if c.Message.from_bytes(head + rest).header.response_code != 1:
            broken.append(f"native resolution of {found}")
    finally:
        writer.close()
    dns_host, dns_port = node.endpoints["dns"].rsplit(":", 1)
    query = dns.message.make_query(mix.dns_name(found), "TXT")
    reply = await dns.asyncquery.udp(query, dns_host, port=int(dns_port), timeout=ANSWER_TIMEOUT)
    if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
        broken.append(f"DNS TXT of {found}")
    return broken


def plan(total: int) -> dict[str, int]:
    counts = {name: int(total * share) for name, share in SHARES.items()}
    counts["codec"] += total - sum(counts.values())
    return counts


async def fuzz_node(node: DemoNode, lanes: dict[str, Lane], seed: int, deadline: float) -> None:
    mix = DemoMix(enterprises=32, identifiers=DEMO_IDENTIFIERS, seed=seed)
    names = mix.all_names()
    rng = random.Random(seed)
    native = NativeInputs(random.Random(rng.random()), names)
    dns_inputs = DnsInputs(random.Random(rng.random()), mix, names)
    progress = asyncio.ensure_future(report_progress(lanes))
    try:
        await _all_lanes(node, lanes, native, dns_inputs, names, rng, deadline)
    finally:
        progress.cancel()


async def report_progress(lanes: dict[str, Lane], every: float = 60.0) -> None:
    """A line a minute: how far each lane is, and what failed so far."""
    while True:
        await asyncio.sleep(every)
        done = ", ".join(f"{name} {lane.inputs:,}" for name, lane in lanes.items())
        failures = sum(lane.failures for lane in lanes.values())
        print(f"... {done}; {failures} failures", flush=True)


async def _all_lanes(
    node: DemoNode,
    lanes: dict[str, Lane],
    native: NativeInputs,
    dns_inputs: DnsInputs,
    names: list[str],
    rng: random.Random,
    deadline: float,
) -> None:
    handle_port = int(node.endpoints["handle"].rsplit(":", 1)[1])
    dns_port = int(node.endpoints["dns"].rsplit(":", 1)[1])
    await asyncio.gather(
        run_native_udp(lanes["native_udp"], native, handle_port, deadline),
        run_native_tcp(lanes["native_tcp"], native, handle_port, deadline),
        run_dns_udp(lanes["dns_udp"], dns_inputs, dns_port, deadline),
        run_dns_tcp(lanes["dns_tcp"], dns_inputs, dns_port, deadline),
        run_http(lanes["http"], node.base, random.Random(rng.random()), names, deadline),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="generated inputs in all")
    parser.add_argument("--seed", type=int, default=1, help="the generator's seed")
    parser.add_argument("--minutes", type=float, default=25.0, help="stop after this long")
    parser.add_argument("--db", help="database URL for the node (default: the demo's SQLite)")
    parser.add_argument(
        "--workdir", type=Path, help="the node's directory (default: a temporary one)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/fuzz.json"))
    args = parser.parse_args(argv)

    started = time.monotonic()
    deadline = started + args.minutes * 60
    counts = plan(args.inputs)
    lanes = {name: Lane(name, count) for name, count in counts.items()}
    mix = DemoMix(enterprises=32, identifiers=DEMO_IDENTIFIERS, seed=args.seed)
    names = mix.all_names()

    print(f"codec: {counts['codec']:,} inputs in this process", flush=True)
    run_codec(lanes["codec"], NativeInputs(random.Random(args.seed), names), deadline)

    extra = ["--enterprises", "32", "--identifiers", str(DEMO_IDENTIFIERS)]
    if args.db:
        extra += ["--db", args.db]
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        print("starting idnode demo ...", flush=True)
        with DemoNode(workdir, *extra) as node:
            print(f"node: {node.endpoints}", flush=True)
            asyncio.run(fuzz_node(node, lanes, args.seed, deadline))
            broken = asyncio.run(still_answers(node, names, mix))
            alive = node.proc is not None and node.proc.poll() is None
        problems = log_problems(workdir / "node.log")

    total_inputs = sum(lane.inputs for lane in lanes.values())
    failures = sum(lane.failures for lane in lanes.values())
    ok = failures == 0 and not problems and not broken and alive
    result = {
        "inputs": total_inputs,
        "planned": args.inputs,
        "seed": args.seed,
        "database": args.db or "sqlite (the demo's file)",
        "seconds": round(time.monotonic() - started, 1),
        "stopped_by_deadline": total_inputs < args.inputs,
        "failures": failures,
        "node_log_errors": len(problems),
        "node_log_error_samples": problems[:MAX_SAMPLES],
        "node_alive_after": alive,
        "not_answering_after": broken,
        "passed": ok,
        "lanes": {name: lane.report() for name, lane in lanes.items()},
    }
    write_results(args.out, result)
    for name, lane in lanes.items():
        print(
            f"{name:>10}: {lane.inputs:>9,} inputs  {lane.answered:>8,} answered  "
            f"{lane.failures:>5} failures  {lane.seconds:7.1f} s",
            flush=True,
        )
    print(
        f"total {total_inputs:,} inputs, {failures} failures, {len(problems)} node log errors, "
        f"{'PASSED' if ok else 'FAILED'} -> {args.out}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
