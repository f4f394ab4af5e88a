"""UDP and TCP listeners of the DNS zone: framing only, answers from the service.

UDP reads drain the socket: one wake-up of the event loop reads every
datagram that has arrived (up to a bound), answers the cached ones on the
spot and sends each answer with a single ``sendto``. Response rate limiting
applies here, per client address, because only UDP can be spoofed. TCP
carries each message after a 2-byte length (RFC 1035 §4.2.2), several
queries per connection, answered as they complete (RFC 7766 §6.2.1.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field
from typing import cast

from metrics.instruments import DNS_RATE_LIMITED

from ..idle import IdleSweeper
from .rrl import RateLimit, ResponseRateLimiter, Verdict
from .service import DnsService, truncated

log = logging.getLogger("idnode.dns")

IDLE_SECONDS = 10.0
"""RFC 7766 §6.2.3: a few seconds of silence close a client's TCP connection."""
MAX_DATAGRAM = 65535
DRAIN_BATCH = 256
"""Datagrams read per wake-up at most, so that TCP and timers get their turn."""
MAX_UDP_IN_FLIGHT = 1024
"""UDP queries on the slow path at once; more are dropped (clients retry)."""
MAX_IN_FLIGHT = 32
"""Queries one TCP connection may have outstanding before reading pauses."""
MAX_CONNECTIONS = 4096


class UdpListener:
    """Reads the socket itself (``add_reader``) to drain it per wake-up; works
    the same under asyncio's loop and uvloop."""

    def __init__(self, service: DnsService, sock: socket.socket, limiter: ResponseRateLimiter):
        self.service = service
        self.sock = sock
        self.limiter = limiter
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._drain)

    def _drain(self) -> None:
        recvfrom, fast = self.sock.recvfrom, self.service.fast
        for _ in range(DRAIN_BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued for an earlier send: read on
                continue
            answer = fast(data, udp=True)
            if answer is not None:
                self._send(answer, addr)
            elif len(self._tasks) < MAX_UDP_IN_FLIGHT:
                task = self._loop.create_task(self._answer(data, addr))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            answer = await self.service.handle(data, udp=True)
        except Exception:  # one bad query must not stop the listener
            log.exception("unhandled error answering a DNS query from %s", addr[0])
            return
        if answer is not None:
            self._send(answer, addr)

    def _send(self, answer: bytes, addr: tuple[str, int]) -> None:
        verdict = self.limiter.check(addr[0])
        if verdict is Verdict.DROP:
            DNS_RATE_LIMITED.labels("dropped").inc()
            return
        if verdict is Verdict.SLIP:
            DNS_RATE_LIMITED.labels("slipped").inc()
            answer = truncated(answer)
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            self.sock.sendto(answer, addr)  # a full send buffer drops it, like the network

    async def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.sock.close()


class TcpProtocol(asyncio.Protocol):
    def __init__(self, service: DnsService, sweeper: IdleSweeper, connections: set[object]):
        self.service = service
        self.sweeper = sweeper
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.last_seen = 0.0
        self.in_flight = 0
        self.paused = False
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if len(self.connections) >= MAX_CONNECTIONS:
            self.transport.abort()
            return
        self.connections.add(self)
        self.last_seen = asyncio.get_running_loop().time()
        self.sweeper.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_seen = asyncio.get_running_loop().time()
        self.buffer += data
        while len(self.buffer) >= 2 and self.transport is not None:
            length = int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < 2 + length:
                break
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            answer = self.service.fast(message, udp=False)
            if answer is not None:
                self._write(answer)
                continue
            self.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._answer(message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            if self.in_flight >= MAX_IN_FLIGHT and not self.paused:
                self.paused = True
                self.transport.pause_reading()

    async def _answer(self, message: bytes) -> None:
        try:
            answer = await self.service.handle(message, udp=False)
        except Exception:
            log.exception("unhandled error answering a DNS query over TCP")
            answer = None
        finally:
            self.in_flight -= 1
        if answer is not None:
            self._write(answer)
        if self.paused and self.in_flight < MAX_IN_FLIGHT // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(len(answer).to_bytes(2, "big") + answer)

    def close_if_idle(self) -> None:
        if self.in_flight == 0 and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.connections.discard(self)
        self.sweeper.connections.discard(self)
        for task in self.tasks:
            task.cancel()


@dataclass
class DnsListeners:
    udp: UdpListener
    tcp: asyncio.Server
    sweeper: IdleSweeper
    connections: set[object] = field(default_factory=set)

    async def close(self) -> None:
        self.tcp.close()
        self.sweeper.stop()
        for connection in list(self.connections):
            transport = cast(TcpProtocol, connection).transport
            if transport is not None:
                transport.abort()
        await self.udp.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.tcp.wait_closed(), 5.0)


async def start(
    service: DnsService,
    tcp_sock: socket.socket,
    udp_sock: socket.socket,
    *,
    rate_limit: RateLimit | None = None,
    idle: float = IDLE_SECONDS,
) -> DnsListeners:
    """Serve on sockets bound by the caller (one port for both)."""
    loop = asyncio.get_running_loop()
    limiter = ResponseRateLimiter(rate_limit or RateLimit())
    udp = UdpListener(service, udp_sock, limiter)
    sweeper = IdleSweeper(idle)
    connections: set[object] = set()
    tcp = await loop.create_server(
        lambda: TcpProtocol(service, sweeper, connections), sock=tcp_sock
    )
    return DnsListeners(udp, tcp, sweeper, connections)
