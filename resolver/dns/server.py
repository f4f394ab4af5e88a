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
from dataclasses import dataclass
from typing import cast

from metrics.instruments import RATE_LIMITED
from metrics.traffic import ClientTraffic, dns_not_found

from ..idle import IdleSweeper
from .rrl import RateLimit, ResponseRateLimiter, Verdict
from .service import DnsService, truncated

log = logging.getLogger("idnode.dns")

IDLE_SECONDS = 10.0
"""RFC 7766 §6.2.3: a few seconds of silence close a client's TCP connection."""
MAX_DATAGRAM = 65535
HEADER = 12
DRAIN_BATCH = 256
"""Datagrams read per wake-up at most, so that TCP and timers get their turn."""
MAX_UDP_IN_FLIGHT = 1024
"""UDP queries on the slow path at once; more are dropped (clients retry)."""
MAX_IN_FLIGHT = 32
"""Queries one TCP connection may have outstanding before reading pauses."""
MAX_CONNECTIONS = 4096
MAX_PER_CLIENT = 64
"""TCP connections one address may hold open (RFC 7766 §6.2.2: limit them per client)."""
BACKLOG = 1024


class UdpListener:
    """Reads the socket itself (``add_reader``) to drain it per wake-up; works
    the same under asyncio's loop and uvloop."""

    def __init__(
        self,
        service: DnsService,
        sock: socket.socket,
        limiter: ResponseRateLimiter,
        traffic: ClientTraffic | None = None,
    ):
        self.service = service
        self.sock = sock
        self.limiter = limiter
        self.traffic = traffic
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._drain)

    def _drain(self) -> None:
        service = self.service
        recvfrom, refuse, fast = self.sock.recvfrom, service.stage.refuse, service.fast
        for _ in range(DRAIN_BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued for an earlier send: read on
                continue
            refused = refuse(data, addr[0], True)
            if refused is not None:
                if refused:
                    self._send(refused, addr)
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
            log.exception(
                "unhandled error answering a DNS query from %s",
                addr[0],
                extra={"fields": _log_fields(data, addr[0])},
            )
            return
        if answer is not None:
            self._send(answer, addr)

    def _send(self, answer: bytes, addr: tuple[str, int]) -> None:
        if self.traffic is not None:
            self.traffic.see(addr[0], not_found=dns_not_found(answer))
        verdict = self.limiter.check(addr[0])
        if verdict is Verdict.DROP:
            RATE_LIMITED.labels("dns", "dropped").inc()
            return
        if verdict is Verdict.SLIP:
            RATE_LIMITED.labels("dns", "slipped").inc()
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
    """RFC 7766 framing. Reading stops while MAX_IN_FLIGHT queries are on the slow
    path or while the client does not read its answers (the transport's write
    buffer is full); bytes already read wait unparsed, so a pipeline costs no
    more than one read. "Idle" counts from the last whole query: a client that
    trickles bytes without finishing a message is closed like a silent one."""

    def __init__(
        self,
        service: DnsService,
        sweeper: IdleSweeper,
        peers: Peers,
        traffic: ClientTraffic | None = None,
    ):
        self.traffic = traffic
        self.service = service
        self.sweeper = sweeper
        self.peers = peers
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.buffer = bytearray()
        self.last_seen = 0.0
        self.in_flight = 0
        self.write_paused = False
        self.read_paused = False
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else ""
        if not self.peers.admit(self):
            self.transport.abort()
            return
        self.last_seen = asyncio.get_running_loop().time()
        self.sweeper.add(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._process()

    def _process(self) -> None:
        while (
            self.transport is not None
            and not self.write_paused
            and self.in_flight < MAX_IN_FLIGHT
            and len(self.buffer) >= 2
        ):
            length = int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < 2 + length:
                break
            if length < HEADER:  # no DNS message is this short: not a DNS client
                self.transport.close()
                return
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            self.last_seen = asyncio.get_running_loop().time()
            refused = self.service.stage.refuse(message, self.peer, False)
            if refused is not None:
                if refused:
                    self._write(refused)
                continue
            answer = self.service.fast(message, udp=False)
            if answer is not None:
                self._write(answer)
                continue
            self.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._answer(message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        self._flow()

    def _flow(self) -> None:
        """Read only while there is room to work and the client takes its answers."""
        if self.transport is None:
            return
        blocked = self.write_paused or self.in_flight >= MAX_IN_FLIGHT
        if blocked and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        elif not blocked and self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    async def _answer(self, message: bytes) -> None:
        try:
            answer = await self.service.handle(message, udp=False)
        except Exception:
            log.exception(
                "unhandled error answering a DNS query over TCP",
                extra={"fields": _log_fields(message, self.peer)},
            )
            answer = None
        finally:
            self.in_flight -= 1
        if answer is not None:
            self._write(answer)
        self._process()

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.traffic is not None:
                self.traffic.see(self.peer, not_found=dns_not_found(answer))
            self.transport.write(len(answer).to_bytes(2, "big") + answer)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._flow()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._process()

    def close_if_idle(self) -> None:
        if self.in_flight == 0 and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.peers.leave(self)
        self.sweeper.connections.discard(self)
        for task in self.tasks:
            task.cancel()


class Peers:
    """Open TCP connections, at most MAX_CONNECTIONS and MAX_PER_CLIENT per address."""

    def __init__(self) -> None:
        self.connections: set[TcpProtocol] = set()
        self.by_address: dict[str, int] = {}

    def admit(self, connection: TcpProtocol) -> bool:
        address = connection.peer
        if (
            len(self.connections) >= MAX_CONNECTIONS
            or self.by_address.get(address, 0) >= MAX_PER_CLIENT
        ):
            return False
        self.connections.add(connection)
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return True

    def leave(self, connection: TcpProtocol) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            left = self.by_address.get(connection.peer, 1) - 1
            if left:
                self.by_address[connection.peer] = left
            else:
                self.by_address.pop(connection.peer, None)


@dataclass
class DnsListeners:
    udp: UdpListener
    tcp: asyncio.Server
    sweeper: IdleSweeper
    peers: Peers

    async def close(self) -> None:
        self.tcp.close()
        self.sweeper.stop()
        for connection in list(self.peers.connections):
            if connection.transport is not None:
                connection.transport.abort()
        await self.udp.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.tcp.wait_closed(), 5.0)


async def start(
    service: DnsService,
    tcp_sock: socket.socket,
    udp_sock: socket.socket,
    *,
    rate_limit: RateLimit | None = None,
    traffic: ClientTraffic | None = None,
    idle: float = IDLE_SECONDS,
) -> DnsListeners:
    """Serve on sockets bound by the caller (one port for both). ``rate_limit``
    caps the UDP responses a client gets (RRL); the service's guard stage, the
    queries it may make (answered REFUSED beyond); ``traffic`` counts every answer."""
    loop = asyncio.get_running_loop()
    limiter = ResponseRateLimiter(rate_limit or RateLimit())
    udp = UdpListener(service, udp_sock, limiter, traffic)
    sweeper = IdleSweeper(idle)
    peers = Peers()
    tcp = await loop.create_server(
        lambda: TcpProtocol(service, sweeper, peers, traffic),
        sock=tcp_sock,
        backlog=BACKLOG,
    )
    return DnsListeners(udp, tcp, sweeper, peers)


def _log_fields(message: bytes, remote: str) -> dict[str, object]:
    """What ties a logged failure to the client's query: its DNS message id."""
    query = int.from_bytes(message[:2], "big") if len(message) >= 2 else None
    return {"request_id": f"dns:{query}", "client": remote}
