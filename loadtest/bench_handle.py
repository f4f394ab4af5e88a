"""Native-protocol benchmark: UDP and TCP resolutions against a running node.

Starts ``idnode demo`` (10,240 identifiers), warms the answer cache, then
drives it from separate client processes with pre-encoded requests (so the
client is not the bottleneck) at concurrency 1, 8 and 32:

* ``udp``: one datagram per request, each virtual client waits for its answer;
* ``tcp-oneshot``: a connection per request, as HANDLE.NET's tools do;
* ``tcp-persistent``: one connection per virtual client, as the IDIS SDKs do.

For each run it prints throughput, p50/p99 latency and the server's CPU time
per reply, read from ``/proc/<pid>/stat`` (independent of the load client),
and writes everything to ``results/bench-handle.json``. Runs are bounded by
``--duration``. Usage: ``python -m loadtest.bench_handle [--duration 8]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import select
import selectors
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtest.demo_node import DemoNode, cpu_times, write_results
from loadtest.harness import demo_enterprises, example_handle
from resolver.handle import client as cl
from resolver.handle import codec as c

IP_BIND_ADDRESS_NO_PORT = 24  # Linux; not exported by Python's socket module


@dataclass
class Run:
    transport: str
    concurrency: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    server_cpu_us_per_reply: float
    server_user_us_per_reply: float
    server_kernel_us_per_reply: float
    replies: int
    errors: int


def names(count: int) -> list[str]:
    ents = demo_enterprises(32)
    return [example_handle(ents[i % 32], 1 + (i // 32) % 300) for i in range(count)]


def encoded_requests(count: int, seed: int) -> list[bytes]:
    """Pre-encoded anonymous resolutions of the URL value, the commonest lookup (flags as
    a HANDLE.NET client sends them); the answer fits one datagram."""
    chosen = names(count)[seed % 7 :] + names(7)
    return [cl.resolution(name, types=["URL"]).to_bytes() for name in chosen][:count]


# --- load clients (each in its own process) -------------------------------------


def _udp_worker(host: str, port: int, sockets: int, until: float, seed: int, out: Any) -> None:
    requests = encoded_requests(500, seed)
    selector = selectors.DefaultSelector()
    sent_at: dict[socket.socket, float] = {}
    latencies: list[float] = []
    errors = 0
    position = 0
    for _ in range(sockets):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((host, port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        sock.send(requests[position % len(requests)])
        position += 1
        sent_at[sock] = time.perf_counter()
    while time.perf_counter() < until:
        events = selector.select(timeout=0.5)
        if not events:
            errors += len(sent_at)  # lost datagrams: resend everything outstanding
            for sock in sent_at:
                sock.send(requests[position % len(requests)])
                position += 1
                sent_at[sock] = time.perf_counter()
            continue
        for key, _ in events:
            sock = key.fileobj  # type: ignore[assignment]
            assert isinstance(sock, socket.socket)
            try:
                answer = sock.recv(4096)
            except BlockingIOError:
                continue
            if c.message_length(answer) > len(answer) - c.ENVELOPE_SIZE:
                errors += 1  # a multi-datagram answer: these requests should not get one
                continue
            now = time.perf_counter()
            latencies.append(now - sent_at[sock])
            sock.send(requests[position % len(requests)])
            position += 1
            sent_at[sock] = time.perf_counter()
    out.put((latencies, errors))


def _tcp_persistent_worker(
    host: str, port: int, sockets: int, until: float, seed: int, out: Any
) -> None:
    requests = encoded_requests(500, seed)
    latencies: list[float] = []
    errors = 0
    position = 0
    selector = selectors.DefaultSelector()
    started: dict[socket.socket, float] = {}
    buffers: dict[socket.socket, bytearray] = {}

    def open_one() -> None:
        nonlocal position, errors
        try:
            sock = socket.create_connection((host, port), timeout=5)
        except OSError:
            errors += 1
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = bytearray()
        send(sock)

    def send(sock: socket.socket) -> None:
        nonlocal position
        started[sock] = time.perf_counter()
        sock.send(requests[position % len(requests)])
        position += 1

    for _ in range(sockets):
        open_one()
    while time.perf_counter() < until and started:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                chunk = b""
            buffer = buffers[sock]
            buffer += chunk
            size = len(buffer)
            if size >= c.ENVELOPE_SIZE and size - c.ENVELOPE_SIZE >= c.message_length(buffer):
                latencies.append(time.perf_counter() - started[sock])
                buffer.clear()
            elif chunk:
                continue  # part of an answer: wait for the rest
            else:
                errors += 1  # closed before a whole answer
            if not chunk:  # the server closed: reconnect
                selector.unregister(sock)
                sock.close()
                del started[sock], buffers[sock]
                open_one()
            else:
                send(sock)
    out.put((latencies, errors))


def _tcp_oneshot_worker(
    host: str, port: int, sockets: int, until: float, seed: int, out: Any
) -> None:
    """A connection per request, with as few system calls as a client can make
    (blocking connect and send on loopback, epoll without unregistering: close
    does that), so that the figures are the server's rather than the client's."""
    requests = encoded_requests(500, seed)
    latencies: list[float] = []
    errors = 0
    position = 0
    poller = select.epoll()
    # Tens of thousands of connections a second from one source address leave
    # the client's ports in TIME_WAIT and its kernel searching for a free one
    # at every connect (measured: 40% of the machine). Loopback answers all of
    # 127/8, so the client spreads its source addresses instead.
    spread = host.startswith("127.")
    open_sockets: dict[int, tuple[socket.socket, float, bytearray]] = {}

    def open_one() -> None:
        nonlocal position, errors
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        started = time.perf_counter()
        try:
            if spread:
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((f"127.{1 + seed}.{position >> 8 & 255}.{1 + position % 250}", 0))
            sock.connect((host, port))
            sock.sendall(requests[position % len(requests)])
        except OSError:
            sock.close()
            errors += 1
            return
        position += 1
        open_sockets[sock.fileno()] = (sock, started, bytearray())
        poller.register(sock.fileno(), select.EPOLLIN)

    for _ in range(sockets):
        open_one()
    while time.perf_counter() < until and open_sockets:
        for fd, _ in poller.poll(1.0):
            sock, started, buffer = open_sockets[fd]
            try:
                chunk = sock.recv(65536)  # ready, so this does not block
            except ConnectionError:
                chunk = b""
            buffer += chunk
            size = len(buffer)
            if size >= c.ENVELOPE_SIZE and size - c.ENVELOPE_SIZE >= c.message_length(buffer):
                latencies.append(time.perf_counter() - started)
            elif chunk:
                continue  # part of an answer: wait for the rest
            else:
                errors += 1  # closed before a whole answer
            del open_sockets[fd]
            sock.close()
            open_one()
    poller.close()
    for sock, _, _ in open_sockets.values():
        sock.close()
    out.put((latencies, errors))


def drive(transport: str, host: str, port: int, concurrency: int, duration: float, pid: int) -> Run:
    processes = 1 if concurrency == 1 else 2
    per_process = [
        concurrency // processes + (1 if i < concurrency % processes else 0)
        for i in range(processes)
    ]
    queue: Any = multiprocessing.get_context("fork").Queue()
    until = time.perf_counter() + duration
    workers = []
    for i, sockets in enumerate(per_process):
        args: tuple[Any, ...]
        if transport == "udp":
            target: Any = _udp_worker
            args = (host, port, sockets, until, i, queue)
        elif transport == "tcp-oneshot":
            target = _tcp_oneshot_worker
            args = (host, port, sockets, until, i, queue)
        else:
            target = _tcp_persistent_worker
            args = (host, port, sockets, until, i, queue)
        workers.append(multiprocessing.get_context("fork").Process(target=target, args=args))
    cpu_before = cpu_times(pid)
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=duration + 30) for _ in workers]
    elapsed = time.perf_counter() - started
    user_after, kernel_after = cpu_times(pid)
    user, kernel = user_after - cpu_before[0], kernel_after - cpu_before[1]
    for worker in workers:
        worker.join(timeout=10)
    latencies = sorted(x for part, _ in results for x in part)
    errors = sum(e for _, e in results)
    replies = len(latencies)
    q = statistics.quantiles(latencies, n=100) if replies >= 100 else [0.0] * 99

    def per_reply(seconds: float) -> float:
        return seconds / replies * 1e6 if replies else 0.0

    return Run(
        transport,
        concurrency,
        replies / elapsed,
        q[49] * 1000,
        q[98] * 1000,
        per_reply(user + kernel),
        per_reply(user),
        per_reply(kernel),
        replies,
        errors,
    )


def warm(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        for request in encoded_requests(500, 0) + encoded_requests(500, 1):
            sock.sendto(request, (host, port))
            sock.recv(4096)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run (≤ 60)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--transports", nargs="+", default=["udp", "tcp-oneshot", "tcp-persistent"])
    parser.add_argument("--output", default="results/bench-handle.json")
    args = parser.parse_args(argv)
    duration = max(1.0, min(args.duration, 60.0))
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="idnode-bench-") as tmp, DemoNode(Path(tmp)) as node:
        host, port_text = node.endpoints["handle"].rsplit(":", 1)
        port = int(port_text)
        warm(host, port)
        for transport in args.transports:
            for concurrency in args.concurrency:
                runs.append(drive(transport, host, port, concurrency, duration, node.pid))
                run = runs[-1]
                print(
                    f"{run.transport:<15} c={run.concurrency:<3} "
                    f"{run.requests_per_second:>9.0f}/s  p50 {run.p50_ms:6.3f} ms  "
                    f"p99 {run.p99_ms:6.3f} ms  server CPU "
                    f"{run.server_cpu_us_per_reply:5.1f} µs/reply "
                    f"(user {run.server_user_us_per_reply:4.1f}, "
                    f"kernel {run.server_kernel_us_per_reply:4.1f})  errors {run.errors}",
                    flush=True,
                )
    output = write_results(
        args.output,
        {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpus": os.cpu_count(),
            "duration_s": duration,
            "runs": [asdict(r) for r in runs],
        },
    )
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
