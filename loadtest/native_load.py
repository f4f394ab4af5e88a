"""A load generator for the native Handle protocol, over UDP or persistent TCP.

Requests are encoded once (``resolver.handle.client.resolution(name, types=["URL"])``,
the commonest lookup, whose answer fits one datagram); a send only patches the 4-byte
request id at envelope bytes 8..12, and answers are matched to their send time by that
id. Two modes:

* open loop (``rate`` set): request *k* of a process goes out at *start + k / rate*
  whatever the answers do, so a slow answer cannot hold the next request back (no
  coordinated omission); latency is taken from the actual send, and how far the sender
  fell behind its schedule is reported (``max_lag_ms``) so that a client too slow to
  keep the pace shows;
* closed loop (``rate`` None): ``window`` requests outstanding per process, each answer
  sends the next one; the peak throughput.

The load is split over ``processes`` forked processes (each its own asyncio loop,
uvloop when installed) and ``sockets`` UDP sockets or TCP connections per process:
with ``idnode --workers N`` the kernel spreads sockets over the workers by address, so
a single socket would load one worker only. An answer later than ``timeout`` counts as
lost. Every run is bounded: ``seconds`` of sending, then at most ``timeout`` of draining.

    python -m loadtest.native_load 127.0.0.1:2641 --rate 5000 --seconds 5 [--tcp]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import sys
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from loadtest.dnsperf import LatencyHistogram
from resolver.handle import client as cl
from resolver.handle import codec as c

RC_SUCCESS = 1
START_DELAY = 0.5
"""Seconds between the fork and the common start, for every process to connect."""
REAP_INTERVAL = 0.2
PACE_TICK = 0.001
SPARE_SECONDS = 30.0
"""Beyond a run's own bound, how long the parent waits for a process's figures."""
T = TypeVar("T")


@dataclass(frozen=True)
class Load:
    host: str
    port: int
    names: tuple[str, ...]
    seconds: float
    transport: str = "udp"
    """``udp`` or ``tcp`` (persistent connections, requests pipelined)."""
    rate: float | None = None
    """Requests per second offered by all processes together; None: closed loop."""
    window: int = 32
    """Closed loop: requests outstanding per process."""
    processes: int = 2
    sockets: int = 8
    """UDP sockets or TCP connections per process."""
    timeout: float = 2.0


@dataclass
class Outcome:
    """What the processes saw, added up."""

    sent: int = 0
    answered: int = 0
    """Successful answers (RC 1, whole): the ones in the histogram."""
    errors: int = 0
    """Answers that were not a success, or were cut (more than one datagram)."""
    lost: int = 0
    """No answer within the timeout, or the connection closed before it."""
    late: int = 0
    """Answers that came after their request was counted lost."""
    in_window: int = 0
    """Successful answers within the sending period: closed-loop throughput."""
    seconds: float = 0.0
    max_lag_ms: float = 0.0
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def failed(self) -> int:
        return self.errors + self.lost

    @property
    def throughput(self) -> float:
        """Successful answers per second while the load ran."""
        return self.in_window / self.seconds if self.seconds else 0.0

    def ms(self, fraction: float) -> float | None:
        return self.histogram.percentile(fraction)

    def add(self, other: Outcome) -> None:
        self.sent += other.sent
        self.answered += other.answered
        self.errors += other.errors
        self.lost += other.lost
        self.late += other.late
        self.in_window += other.in_window
        self.seconds = max(self.seconds, other.seconds)
        self.max_lag_ms = max(self.max_lag_ms, other.max_lag_ms)
        self.histogram.merge(other.histogram)


def encode(names: Sequence[str]) -> list[bytes]:
    """Each name's resolution request, encoded once."""
    if not names:
        raise ValueError("the load needs at least one name")
    return [cl.resolution(name, types=["URL"]).to_bytes() for name in names]


# --- one process: sockets, the request book, the pacing --------------------------


class _Side:
    """One UDP socket or TCP connection; answers go to the book."""

    def __init__(self, book: _Book) -> None:
        self.book = book
        self.transport: asyncio.BaseTransport | None = None
        self.closed = False

    def write(self, packet: bytes) -> None:
        raise NotImplementedError


class _UdpSide(_Side, asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def write(self, packet: bytes) -> None:
        # uvloop's transports are not subclasses of asyncio's: duck-typed.
        cast(asyncio.DatagramTransport, self.transport).sendto(packet)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.book.answer(data, self)

    def error_received(self, exc: Exception) -> None:
        pass  # e.g. ECONNREFUSED from an ICMP error: the request counts as lost

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


class _TcpSide(_Side, asyncio.Protocol):
    def __init__(self, book: _Book) -> None:
        super().__init__(book)
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def write(self, packet: bytes) -> None:
        if not self.closed:
            cast(asyncio.Transport, self.transport).write(packet)

    def data_received(self, data: bytes) -> None:
        # Answers may come back in any order and split anywhere: frame them by length.
        buffer = self.buffer
        buffer += data
        while len(buffer) >= c.ENVELOPE_SIZE:
            end = c.ENVELOPE_SIZE + c.message_length(buffer)
            if len(buffer) < end:
                return
            self.book.answer(bytes(buffer[:end]), self)
            del buffer[:end]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True  # what it had in flight is reaped as lost


class _Book:
    """Requests in flight by id, with their send time and the side they went on."""

    def __init__(self, requests: list[bytes], process: int, timeout: float) -> None:
        self.requests = requests
        # Processes start at different names, so that they do not ask in lockstep.
        self.position = process * len(requests) // 3
        self.next_id = (process & 0x7F) << 24
        self.timeout = timeout
        self.pending: dict[int, tuple[float, _Side]] = {}
        self.outcome = Outcome()
        self.refill = False
        """Closed loop: every answer (or loss) sends the next request on its side."""
        self.idle = asyncio.Event()
        """Set whenever nothing is in flight: the end of the drain."""

    def send(self, side: _Side) -> None:
        self.next_id = (self.next_id & 0x7F000000) | ((self.next_id + 1) & 0xFFFFFF)
        request_id = self.next_id or 1
        template = self.requests[self.position % len(self.requests)]
        self.position += 1
        self.pending[request_id] = (time.perf_counter(), side)
        side.write(c.with_request_id(template, request_id))
        self.outcome.sent += 1

    def answer(self, data: bytes, side: _Side) -> None:
        now = time.perf_counter()
        entry = self.pending.pop(c.request_id_of(data), None)
        if entry is None:
            self.outcome.late += 1
            return
        whole = c.message_length(data) <= len(data) - c.ENVELOPE_SIZE
        if whole and c.response_code_of(data) == RC_SUCCESS:
            self.outcome.histogram.add(now - entry[0])
            self.outcome.answered += 1
        else:
            self.outcome.errors += 1
        if self.refill:
            self.send(side)
        elif not self.pending:
            self.idle.set()

    def reap(self, now: float) -> None:
        """Count requests older than the timeout as lost (the dict is in send order)."""
        while self.pending:
            request_id, (sent, side) = next(iter(self.pending.items()))
            if now - sent <= self.timeout:
                return
            del self.pending[request_id]
            self.outcome.lost += 1
            if self.refill and not side.closed:
                self.send(side)
        self.idle.set()


async def _open_sides(load: Load, book: _Book) -> list[_Side]:
    loop = asyncio.get_running_loop()
    sides: list[_Side] = []
    for _ in range(load.sockets):
        if load.transport == "udp":
            _, udp = await loop.create_datagram_endpoint(
                lambda: _UdpSide(book), remote_addr=(load.host, load.port)
            )
            sides.append(udp)
        else:
            _, tcp = await loop.create_connection(lambda: _TcpSide(book), load.host, load.port)
            sides.append(tcp)
    return sides


async def _reaper(book: _Book) -> None:
    while True:
        await asyncio.sleep(REAP_INTERVAL)
        book.reap(time.perf_counter())


async def _paced(
    book: _Book, sides: list[_Side], rate: float, start: float, seconds: float
) -> None:
    """Open loop: request k at start + k / rate. The sender wakes at most once every
    ``PACE_TICK`` and sends what fell due meanwhile together: uvloop's timers count whole
    milliseconds, so a shorter sleep returns at once and the sender would spin."""
    total = max(1, round(rate * seconds))
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rate) + 1)
        if due > sent:
            lag = now - (start + sent / rate)
            book.outcome.max_lag_ms = max(book.outcome.max_lag_ms, lag * 1000.0)
            for k in range(sent, due):
                book.send(sides[k % len(sides)])
            sent = due
        await asyncio.sleep(max(PACE_TICK, start + sent / rate - time.perf_counter()))


async def _closed(book: _Book, sides: list[_Side], window: int, start: float, end: float) -> None:
    book.refill = True
    for k in range(window):
        book.send(sides[k % len(sides)])
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    book.refill = False


async def _drain(book: _Book, seconds: float) -> None:
    """Wait for the answers still out, ``seconds`` at most; the rest are lost."""
    if book.pending:
        book.idle.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await book.idle.wait()
    book.reap(float("inf"))


async def _process(load: Load, index: int, start: float, share: float | None) -> Outcome:
    book = _Book(encode(load.names), index, load.timeout)
    sides = await _open_sides(load, book)
    reaper = asyncio.create_task(_reaper(book))
    try:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        if share is None:
            await _closed(book, sides, load.window, start, start + load.seconds)
        else:
            await _paced(book, sides, share, start, load.seconds)
        book.outcome.seconds = time.perf_counter() - start
        # Closed loop: what the window achieved while it ran. Open loop: every answer to
        # what was sent on schedule, the last ones arriving while draining.
        book.outcome.in_window = book.outcome.answered
        await _drain(book, load.timeout)
        if share is not None:
            book.outcome.in_window = book.outcome.answered
    finally:
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper
        for side in sides:
            if side.transport is not None:
                side.transport.close()
    return book.outcome


def _run_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _child(load: Load, index: int, start: float, share: float | None) -> Outcome:
    return _run_loop(_process(load, index, start, share))


# --- the parent ---------------------------------------------------------------------


def run(load: Load) -> Outcome:
    """Drive the load from ``load.processes`` forked processes; their figures added up.
    ``time.perf_counter`` is CLOCK_MONOTONIC, shared by every process: they start
    together at one instant of it."""
    if load.processes < 1 or load.sockets < 1 or load.window < 1 or load.seconds <= 0:
        raise ValueError("processes, sockets, window and seconds must be positive")
    if load.transport not in ("udp", "tcp"):
        raise ValueError("transport must be udp or tcp")
    share = None if load.rate is None else load.rate / load.processes
    start = time.perf_counter() + START_DELAY
    context = multiprocessing.get_context("fork")
    total = Outcome()
    with ProcessPoolExecutor(load.processes, mp_context=context) as pool:
        futures = [pool.submit(_child, load, i, start, share) for i in range(load.processes)]
        bound = START_DELAY + load.seconds + load.timeout + SPARE_SECONDS
        for future in futures:
            total.add(future.result(timeout=bound))
    return total


def main(argv: list[str] | None = None) -> int:
    from loadtest.bench_handle import names as demo_names

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("address", help="host:port of the native listener")
    parser.add_argument("--rate", type=float, help="requests/s (default: closed loop)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tcp", action="store_true", help="persistent TCP instead of UDP")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--names", type=int, default=1000, help="demo names to cycle over")
    args = parser.parse_args(argv)
    host, _, port = args.address.rpartition(":")
    outcome = run(
        Load(
            host.strip("[]"),
            int(port),
            tuple(demo_names(args.names)),
            min(args.seconds, 300.0),
            "tcp" if args.tcp else "udp",
            args.rate,
            args.window,
            args.processes,
        )
    )
    print(
        f"{outcome.throughput:,.0f}/s answered, p50 {outcome.ms(0.5)} ms, p99 {outcome.ms(0.99)} "
        f"ms, p99.9 {outcome.ms(0.999)} ms; sent {outcome.sent}, errors {outcome.errors}, lost "
        f"{outcome.lost}, sender lag up to {outcome.max_lag_ms:.1f} ms"
    )
    return 0 if outcome.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
