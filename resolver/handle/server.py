"""UDP and TCP listeners of the native protocol: framing only, answers from the service.

UDP: one request per datagram (or several datagrams reassembled), answers of
up to 512 bytes per datagram. TCP: length-checked framing, one-shot
connections (HANDLE.NET tools) and persistent ones with several requests in
flight, answered as they complete and matched by request id (IDIS SDKs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Protocol, cast

from metrics.traffic import ClientTraffic, handle_not_found

from ..idle import IdleSweeper
from . import codec as c
from .connection import Connection

log = logging.getLogger("idnode.handle")

IDLE_SECONDS = 60.0
"""A TCP connection with nothing to say for this long is closed."""
REASSEMBLY_SECONDS = 5.0
MAX_REASSEMBLIES = 1024
MAX_REASSEMBLY_BYTES = 16 * 1024 * 1024
"""Fragments held for all half-arrived UDP requests together."""
MAX_REASSEMBLIES_PER_SOURCE = 16
MAX_UDP_IN_FLIGHT = 1024
"""UDP requests on the slow path at once; more are dropped (clients retry)."""
MAX_IN_FLIGHT = 64
"""Requests one TCP connection may have outstanding before reading pauses."""


class NativeService(Protocol):
    """What the listeners need from whatever answers: the node's HandleService,
    or the mock top-level node's prefix lookups."""

    def fast(self, data: bytes, *, udp: bool) -> list[bytes] | None: ...

    def refuse(self, data: bytes, remote: str, *, udp: bool) -> list[bytes] | None:
        """The answer to a client over its limits (resolver.limits); None: go on."""
        ...

    async def handle(self, data: bytes, connection: Connection) -> list[bytes]: ...

    def forget(self, connection: Connection) -> None: ...


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, service: NativeService, traffic: ClientTraffic | None = None) -> None:
        self.service = service
        self.traffic = traffic
        self.transport: asyncio.DatagramTransport | None = None
        self._partial: dict[tuple[object, int], tuple[c.Reassembly, float]] = {}
        self._partial_bytes = 0
        self._per_source: dict[object, int] = {}
        self._next_purge = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's: duck-typed.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if len(data) >= c.ENVELOPE_SIZE and c.is_fragment(data):
            whole = self._reassemble(data, addr)
            if whole is None:
                return
            data = whole
        remote = str(addr[0]) if isinstance(addr, tuple) else ""
        refused = self.service.refuse(data, remote, udp=True)
        if refused is not None:
            self._send(refused, addr)
            return
        # The hot path runs right here, without a task: a cached answer, patched.
        answer = self.service.fast(data, udp=True)
        if answer is not None:
            self._send(answer, addr)
            return
        if len(self._tasks) >= MAX_UDP_IN_FLIGHT:
            return  # overloaded: shed the request rather than queue without bound
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reassemble(self, data: bytes, addr: tuple[str | object, int]) -> bytes | None:
        """Collect the fragments of a multi-datagram request, within bounds: per
        source, in count and in bytes; beyond them fragments are dropped (the
        client retries), and half-arrived requests are forgotten after 5 s."""
        now = time.monotonic()
        if now >= self._next_purge:
            for stale in [k for k, (_, t) in self._partial.items() if t < now]:
                self._forget(stale)
            self._next_purge = now + 1.0
        source = addr[0] if isinstance(addr, tuple) else addr
        key: tuple[object, int] | None = None
        try:
            envelope = c.Envelope.from_bytes(data)
            key = (addr, envelope.request_id)
            entry = self._partial.get(key)
            if entry is None:
                if (
                    len(self._partial) >= MAX_REASSEMBLIES
                    or self._per_source.get(source, 0) >= MAX_REASSEMBLIES_PER_SOURCE
                    or self._partial_bytes + len(data) > MAX_REASSEMBLY_BYTES
                ):
                    return None
                entry = (c.Reassembly(envelope), now + REASSEMBLY_SECONDS)
                self._partial[key] = entry
                self._per_source[source] = self._per_source.get(source, 0) + 1
            elif self._partial_bytes + len(data) > MAX_REASSEMBLY_BYTES:
                return None
            before = entry[0].size
            whole = entry[0].add(envelope.sequence, data[c.ENVELOPE_SIZE :])
            self._partial_bytes += entry[0].size - before
        except c.CodecError:
            if key in self._partial:
                self._forget(key)
            return None
        if whole is not None:
            self._forget(key)
        return whole

    def _forget(self, key: tuple[object, int]) -> None:
        reassembly, _ = self._partial.pop(key)
        self._partial_bytes -= reassembly.size
        addr = key[0]
        source = addr[0] if isinstance(addr, tuple) else addr
        left = self._per_source.get(source, 1) - 1
        if left:
            self._per_source[source] = left
        else:
            self._per_source.pop(source, None)

    async def _answer(self, data: bytes, addr: tuple[str | object, int]) -> None:
        remote = str(addr[0]) if isinstance(addr, tuple) else ""
        try:
            parts = await self.service.handle(data, Connection(tcp=False, remote=remote))
        except Exception:  # one bad request must not stop the listener
            log.exception(
                "unhandled error answering a UDP request from %s",
                remote,
                extra={"fields": _log_fields(data, remote)},
            )
            return
        self._send(parts, addr)

    def _send(self, parts: list[bytes], addr: tuple[str | object, int]) -> None:
        if self.transport is not None and parts:
            if self.traffic is not None:
                self.traffic.see(str(addr[0]), not_found=handle_not_found(parts[0]))
            for part in parts:
                self.transport.sendto(part, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


@dataclass
class _Inbox:
    buffer: bytearray = field(default_factory=bytearray)
    in_flight: int = 0


class TcpProtocol(asyncio.Protocol):
    def __init__(
        self, service: NativeService, sweeper: IdleSweeper, traffic: ClientTraffic | None = None
    ) -> None:
        self.service = service
        self.sweeper = sweeper
        self.traffic = traffic
        self.transport: asyncio.Transport | None = None
        self.connection = Connection(tcp=True)
        self.inbox = _Inbox()
        self.last_seen = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.last_seen = asyncio.get_running_loop().time()
        self.sweeper.add(self)
        peer = transport.get_extra_info("peername")
        self.connection.remote = str(peer[0]) if isinstance(peer, tuple) else ""

    def close_if_idle(self) -> None:
        if self.transport is not None and not self._tasks:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.last_seen = asyncio.get_running_loop().time()
        inbox = self.inbox
        if (
            not inbox.buffer
            and not self._paused
            and len(data) >= c.ENVELOPE_SIZE
            and len(data) == c.ENVELOPE_SIZE + c.message_length(data)
        ):
            self._dispatch(data)  # the common case: exactly one whole request
            return
        inbox.buffer += data
        self._frame()

    def _frame(self) -> None:
        """Dispatch the whole requests buffered, until too many are in flight."""
        inbox = self.inbox
        while len(inbox.buffer) >= c.ENVELOPE_SIZE and not self._paused:
            length = c.message_length(inbox.buffer)
            if length > c.MAX_MESSAGE:
                # Answer once, then stop: the rest of the stream cannot be framed.
                garbage = bytes(inbox.buffer[: c.ENVELOPE_SIZE])
                inbox.buffer.clear()
                self._reply_then_close(garbage)
                return
            end = c.ENVELOPE_SIZE + length
            if len(inbox.buffer) < end:
                return
            message = bytes(inbox.buffer[:end])
            del inbox.buffer[:end]
            self._dispatch(message)

    def _dispatch(self, message: bytes) -> None:
        refused = self.service.refuse(message, self.connection.remote, udp=False)
        if refused is not None:
            self._write(refused)
            return
        if self.connection.identity is None:  # an identity may read more than the cache holds
            answer = self.service.fast(message, udp=False)
            if answer is not None:
                self._write(answer)
                return
        self.inbox.in_flight += 1
        if self.inbox.in_flight >= MAX_IN_FLIGHT and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        task = asyncio.get_running_loop().create_task(self._answer(message))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.inbox.in_flight -= 1
        if (
            self._paused
            and self.inbox.in_flight < MAX_IN_FLIGHT
            and self.transport is not None
            and not self.transport.is_closing()
        ):
            self._paused = False
            self._frame()  # what was read before the pause
            if not self._paused:
                self.transport.resume_reading()

    async def _answer(self, message: bytes) -> None:
        if not self.connection.remote and self.transport is not None:
            peer = self.transport.get_extra_info("peername")
            self.connection.remote = str(peer[0]) if peer else ""
        try:
            parts = await self.service.handle(message, self.connection)
        except Exception:  # one bad request must not take the connection's others down
            log.exception(
                "unhandled error answering a TCP request from %s",
                self.connection.remote,
                extra={"fields": _log_fields(message, self.connection.remote)},
            )
            return
        self._write(parts)

    def _reply_then_close(self, data: bytes) -> None:
        async def reply() -> None:
            with contextlib.suppress(Exception):
                self._write(await self.service.handle(data, self.connection))
            if self.transport is not None:
                self.transport.close()

        task = asyncio.get_running_loop().create_task(reply())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(self, parts: list[bytes]) -> None:
        if self.transport is not None and not self.transport.is_closing() and parts:
            if self.traffic is not None:
                self.traffic.see(self.connection.remote, not_found=handle_not_found(parts[0]))
            self.transport.write(b"".join(parts))

    def connection_lost(self, exc: Exception | None) -> None:
        self.sweeper.connections.discard(self)
        self.service.forget(self.connection)
        for task in self._tasks:
            task.cancel()
        self.transport = None


@dataclass
class HandleListeners:
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server
    sweeper: IdleSweeper

    async def close(self) -> None:
        self.sweeper.stop()
        self.udp.close()
        self.tcp.close()
        await self.tcp.wait_closed()


async def start(
    service: NativeService,
    tcp_sock: socket.socket,
    udp_sock: socket.socket,
    *,
    traffic: ClientTraffic | None = None,
    idle: float = IDLE_SECONDS,
) -> HandleListeners:
    """Serve on sockets bound by the caller (one port for both); ``traffic``
    counts every answer."""
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(
        lambda: UdpProtocol(service, traffic), sock=udp_sock
    )
    sweeper = IdleSweeper(idle)
    with contextlib.suppress(OSError, AttributeError):
        # Wake the accept only once the request has arrived: one loop turn fewer.
        tcp_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    tcp = await loop.create_server(
        lambda: TcpProtocol(service, sweeper, traffic), sock=tcp_sock, backlog=1024
    )
    return HandleListeners(udp, tcp, sweeper)


def _log_fields(message: bytes, remote: str) -> dict[str, object]:
    """What ties a logged failure to the client's request: its envelope's request id."""
    request = c.request_id_of(message) if len(message) >= 12 else None
    return {"request_id": f"handle:{request}", "client": remote}
