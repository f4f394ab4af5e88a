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
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib
import json
import random
import re
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ParamSpec
from urllib.parse import quote

import aiohttp
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
from yarl import URL

from registry.models import HandleValue
from resolver.handle import codec as c
from resolver.handle import credentials as cred
from resolver.http.openapi import OPENAPI_PATH

from .demo_node import HOST, DemoNode, write_results
from .harness import DEMO_ADMIN
from .mix import DemoMix
from .oracle import (
    WrongAnswer,
    check_decoders,
    check_dns_answer,
    check_native_answer,
    dns_answer_owed,
    native_answer_owed,
    read_native,
)

_P = ParamSpec("_P")
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
WINDOW = 64
"""Requests outstanding per socket."""
HTTP_CONNECTIONS = 16
ANSWER_TIMEOUT = 10.0
"""An answer owed and not come by then is a failure (a hang)."""
SLOW_SECONDS = 1.0
MAX_SAMPLES = 20
"""Failures kept (with their input) per lane; all are counted."""
MAX_UDP_DATAGRAM = 512


# --- bookkeeping --------------------------------------------------------------------


@dataclass
class Lane:
    name: str
    planned: int
    inputs: int = 0
    answered: int = 0
    silent: int = 0
    """Inputs the protocol answers with nothing, that got nothing."""
    unchecked: int = 0
    """Inputs sent without waiting (no answer can be told from a lost one)."""
    retried: int = 0
    failures: int = 0
    seconds: float = 0.0
    slow: int = 0
    """Answers that took longer than ``SLOW_SECONDS``."""
    slowest: float = 0.0
    started: float = field(default_factory=time.monotonic)
    outcomes: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, str]] = field(default_factory=list)

    def fail(self, reason: str, data: bytes | str, detail: str = "") -> None:
        self.failures += 1
        if len(self.samples) < MAX_SAMPLES:
            shown = data.hex() if isinstance(data, bytes) else data
            self.samples.append(
                {
                    "reason": reason,
                    "input": shown[:2000],
                    "detail": detail[:2000],
                    "at_second": f"{time.monotonic() - self.started:.1f}",
                }
            )

    def took(self, seconds: float) -> None:
        self.answered += 1
        self.slowest = max(self.slowest, seconds)
        if seconds > SLOW_SECONDS:
            self.slow += 1

    def report(self) -> dict[str, Any]:
        rate = self.inputs / self.seconds if self.seconds else 0.0
        return {
            "planned": self.planned,
            "inputs": self.inputs,
            "answered": self.answered,
            "silent_as_specified": self.silent,
            "sent_unchecked": self.unchecked,
            "retried": self.retried,
            "failures": self.failures,
            "answers_over_1s": self.slow,
            "slowest_answer_seconds": round(self.slowest, 3),
            "seconds": round(self.seconds, 1),
            "inputs_per_second": round(rate),
            "outcomes": dict(sorted(self.outcomes.items())),
            "failure_samples": self.samples,
        }


# --- mutation -------------------------------------------------------------------------

_INTERESTING_U32 = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """A few random edits: bits, bytes, lengths (u32 extremes), cuts, repeats, splices."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out)) if out else 0
        kind = rng.randrange(9)
        if kind == 0 and out:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[at] = rng.randrange(256)
        elif kind == 2 and len(out) >= 4:
            at = min(at, len(out) - 4)
            value = rng.choice((*_INTERESTING_U32, len(out), len(out) - at, rng.randrange(1 << 32)))
            out[at : at + 4] = struct.pack(">I", value & 0xFFFFFFFF)
        elif kind == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == 4 and out:
            del out[at : at + rng.randint(1, 16)]
        elif kind == 5:
            del out[at:]
        elif kind == 6 and out:
            piece = out[at : at + rng.randint(1, 32)]
            out[at:at] = piece * rng.randint(1, 4)
        elif kind == 7 and others:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            out = out[:at] + bytearray(other[cut:])
        elif kind == 8 and out:
            out[at] = rng.choice((0, 0x7F, 0x80, 0xFF))
    return bytes(out)


# --- the native protocol ------------------------------------------------------------

_OPCODES = (
    c.OC_RESOLUTION,
    c.OC_RESOLUTION,
    c.OC_RESOLUTION,
    c.OC_GET_SITE_INFO,
    c.OC_CREATE_HANDLE,
    c.OC_DELETE_HANDLE,
    c.OC_ADD_VALUE,
    c.OC_REMOVE_VALUE,
    c.OC_MODIFY_VALUE,
    c.OC_LIST_HANDLES,
    c.OC_CHALLENGE_RESPONSE,
    c.OC_VERIFY_CHALLENGE,
    c.OC_HOME_NA,
    c.OC_UNHOME_NA,
    c.OC_LIST_HOMED_NAS,
    c.OC_SESSION_SETUP,
    c.OC_SESSION_TERMINATE,
    c.OC_LOGIN_ID_SYSTEM,
)
_FLAGS = (0, c.FLAG_RRDG, c.FLAG_CERT, c.FLAG_RECU, c.FLAG_PUBL, c.FLAG_AUTH, c.FLAG_CONT)
_TYPES = (b"URL", b"EMAIL", b"HS_SITE", b"HS_ADMIN", b"HS_SECKEY", b"\xff\xfe", b"")


class NativeInputs:
    """Native-protocol inputs: 15% random bytes, 35% real requests, 50% their mutants."""

    def __init__(self, rng: random.Random, names: list[str]) -> None:
        self.rng = rng
        self.names = [n.encode() for n in names]
        self.seeds = [self.request() for _ in range(256)]

    def name(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return rng.choice(self.names)
        if roll < 0.7:
            return rng.choice([b"0.NA/88.100", b"88.100", b"0.NA/88.100.1", b"88.100.1"])
        if roll < 0.8:
            return b"1.2.156.86.1." + str(rng.randint(1, 40)).encode()
        if roll < 0.9:
            return rng.choice(self.names)[: rng.randint(0, 20)] + rng.randbytes(rng.randint(0, 8))
        return rng.randbytes(rng.randint(0, 40))

    def value(self) -> HandleValue:
        rng = self.rng
        return HandleValue(
            index=rng.choice((1, 2, 100, 1000, 2000, rng.randrange(1 << 32))),
            type=rng.choice(("URL", "EMAIL", "HS_ADMIN", "HS_SITE", "HS_VLIST", "DESC")),
            data=rng.randbytes(rng.randint(0, 80)),
            ttl_type=rng.choice((0, 1, rng.randrange(256))),
            ttl=rng.randrange(1 << 32),
            timestamp=rng.randrange(1 << 32),
            permissions=rng.randrange(256),
            references=tuple(
                (rng.choice(("", "0.NA/88.100", "x")), rng.randrange(1 << 32))
                for _ in range(rng.randint(0, 2))
            ),
        )

    def body(self, opcode: int) -> bytes:
        rng = self.rng
        if opcode == c.OC_RESOLUTION:
            return c.ResolutionRequest(
                self.name(),
                tuple(
                    rng.choice((1, 2, 100, rng.randrange(1 << 32)))
                    for _ in range(rng.randint(0, 3))
                ),
                tuple(rng.choice(_TYPES) for _ in range(rng.randint(0, 3))),
            ).to_bytes()
        if opcode in (c.OC_CREATE_HANDLE, c.OC_ADD_VALUE, c.OC_MODIFY_VALUE):
            values = tuple(self.value() for _ in range(rng.randint(0, 3)))
            return c.HandleValues(self.name(), values).to_bytes()
        if opcode == c.OC_REMOVE_VALUE:
            indexes = tuple(rng.randrange(1 << 32) for _ in range(rng.randint(0, 3)))
            return c.RemoveValues(self.name(), indexes).to_bytes()
        if opcode == c.OC_CHALLENGE_RESPONSE:
            return cred.ChallengeAnswer(
                rng.choice((b"HS_SECKEY", b"HS_PUBKEY", b"")),
                rng.choice((b"0.NA/88.100", self.name())),
                rng.choice((300, 0, rng.randrange(1 << 32))),
                rng.randbytes(rng.randint(0, 64)),
            ).to_bytes()
        if opcode == c.OC_VERIFY_CHALLENGE:
            return cred.VerifyChallenge(
                self.name(),
                rng.choice((300, rng.randrange(1 << 32))),
                rng.randbytes(rng.randint(0, 20)),
                rng.randbytes(rng.randint(0, 40)),
                rng.randbytes(rng.randint(0, 40)),
            ).to_bytes()
        if opcode == c.OC_LOGIN_ID_SYSTEM:
            return cred.Login(rng.choice((b"0.NA/88.100", self.name())), 300).to_bytes()
        if opcode in (c.OC_SESSION_SETUP, c.OC_SESSION_TERMINATE, c.OC_LIST_HOMED_NAS):
            return rng.randbytes(rng.randint(0, 24))
        return c.HandleOnly(self.name()).to_bytes()

    def request(self) -> bytes:
        rng = self.rng
        opcode = rng.choice(_OPCODES) if rng.random() < 0.95 else rng.randrange(1 << 32)
        flags = 0
        for _ in range(rng.randint(0, 2)):
            flags |= rng.choice(_FLAGS)
        envelope = c.Envelope(
            major=rng.choice((2, 2, 2, 1, 3)),
            minor=rng.choice((11, 10, 7, 5, 1, 0, rng.randrange(256))),
            suggested_major=rng.choice((0, 2, rng.randrange(32))),
            suggested_minor=rng.choice((0, 11, rng.randrange(256))),
            session_id=rng.choice((0, 0, 1, rng.randrange(1 << 32))),
        )
        header = c.Header(
            opcode=opcode,
            response_code=0 if rng.random() < 0.97 else rng.randrange(1 << 32),
            flags=flags,
            site_serial=rng.choice((0xFFFF, 1, 0)),
            recursion=rng.choice((0, 0, 1, 9, 255)),
            expiration=rng.randrange(1 << 32),
        )
        credential = b""
        if rng.random() < 0.1:
            credential = rng.choice(
                (cred.Credential().to_bytes(), rng.randbytes(rng.randint(0, 40)))
            )
        return c.Message(envelope, header, self.body(opcode), credential).to_bytes()

    def next(self) -> bytes:
        roll = self.rng.random()
        if roll < 0.15:
            return self.rng.randbytes(self.rng.randint(0, 300))
        if roll < 0.5:
            return self.request()
        return mutate(self.rng, self.rng.choice(self.seeds), self.seeds)


def judge(
    lane: Lane, data: bytes, check: Callable[_P, str], *args: _P.args, **kwargs: _P.kwargs
) -> None:
    """Tally what ``check`` (a rule of :mod:`loadtest.oracle`) saw, or count what it
    found wrong as a failure of the lane, with the input ``data`` that caused it."""
    try:
        seen = check(*args, **kwargs)
    except WrongAnswer as wrong:
        lane.fail(wrong.reason, data, wrong.detail)
    else:
        lane.outcomes[seen] += 1


def run_codec(lane: Lane, inputs: NativeInputs, deadline: float) -> None:
    started = time.monotonic()
    while lane.inputs < lane.planned and time.monotonic() < deadline:
        data = inputs.next()
        judge(lane, data, check_decoders, data)
        lane.inputs += 1
    lane.seconds = time.monotonic() - started


def native_framed(data: bytes, request_id: int, *, udp: bool) -> bytes:
    """The input as one whole message for the transport, with our request id: the
    envelope's length says what follows, sequence 0 (no fragment of a longer one)."""
    data = data[:MAX_UDP_DATAGRAM] if udp else data[: c.MAX_MESSAGE]
    data = data.ljust(c.ENVELOPE_SIZE if not udp else 0, b"\x00")
    if len(data) < 20:
        return data
    return (
        data[:8]
        + struct.pack(">III", request_id, 0, len(data) - c.ENVELOPE_SIZE)
        + data[c.ENVELOPE_SIZE :]
    )


class Outstanding:
    """Requests awaiting answers, by id; each has a future the reader completes."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[bytes]] = {}

    def expect(self, key: int) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        return future

    def answer(self, key: int, raw: bytes) -> bool:
        future = self.waiting.pop(key, None)
        if future is None or future.done():
            return False
        future.set_result(raw)
        return True


class NativeUdp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.outstanding = Outstanding()
        self.partial: dict[int, c.Reassembly] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            envelope = c.Envelope.from_bytes(data)
        except c.CodecError:
            return
        whole: bytes | None = data
        if len(data) - c.ENVELOPE_SIZE < envelope.length or envelope.sequence:
            reassembly = self.partial.setdefault(envelope.request_id, c.Reassembly(envelope))
            try:
                whole = reassembly.add(envelope.sequence, data[c.ENVELOPE_SIZE :])
            except c.CodecError:
                whole = data  # let the checks say what is wrong with it
            if whole is None:
                return
            self.partial.pop(envelope.request_id, None)
        if whole is not None:
            self.outstanding.answer(envelope.request_id, whole)


async def run_native_udp(lane: Lane, inputs: NativeInputs, port: int, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(NativeUdp, remote_addr=(HOST, port))
    ids = iter(range(1, 1 << 31))

    async def one(data: bytes) -> None:
        request = read_native(data)
        if not native_answer_owed(data, request, udp=True) or len(data) < c.ENVELOPE_SIZE:
            transport.sendto(data)
            lane.unchecked += 1
            return
        for attempt in range(2):  # a lost datagram is retried once
            request_id = next(ids)
            data = c.with_request_id(data, request_id)
            future = protocol.outstanding.expect(request_id)
            transport.sendto(data)
            try:
                sent = time.monotonic()
                raw = await asyncio.wait_for(future, ANSWER_TIMEOUT)
            except TimeoutError:
                protocol.outstanding.waiting.pop(request_id, None)
                if attempt == 0:
                    lane.retried += 1
                    continue
                lane.fail("no answer (UDP)", data)
                return
            lane.took(time.monotonic() - sent)
            if request is not None:
                request = replace(
                    request, envelope=replace(request.envelope, request_id=request_id)
                )
            judge(lane, data, check_native_answer, data, request, raw)
            return

    try:
        await _pump(lane, lambda: native_framed(inputs.next(), 0, udp=True), one, deadline)
    finally:
        transport.close()


async def _pump(
    lane: Lane,
    make: Callable[[], bytes],
    send: Callable[[bytes], Any],
    deadline: float,
    window: int = WINDOW,
) -> None:
    """``lane.planned`` inputs through ``send``, ``window`` at a time, until the deadline."""
    started = time.monotonic()
    running: set[asyncio.Task[None]] = set()

    def settle(done: set[asyncio.Task[None]]) -> None:
        for task in done:  # the fuzzer's own faults are failures too, never swallowed
            if task.exception() is not None:
                lane.fail("the fuzzer failed", "", repr(task.exception()))

    while lane.inputs < lane.planned and time.monotonic() < deadline:
        while len(running) >= window:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            settle(done)
        running.add(asyncio.ensure_future(send(make())))
        lane.inputs += 1
    if running:
        done, _ = await asyncio.wait(running)
        settle(done)
    lane.seconds = time.monotonic() - started


class TcpStream:
    """A persistent connection on which requests are pipelined and answers matched
    by request id; ``frame`` splits the stream into answers."""

    def __init__(self, port: int, frame: Callable[[bytearray], tuple[int, bytes] | None]):
        self.port = port
        self.frame = frame
        self.outstanding = Outstanding()
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.lost = 0

    async def connect(self) -> None:
        reader, self.writer = await asyncio.open_connection(HOST, self.port)
        self.reader_task = asyncio.ensure_future(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        while chunk := await reader.read(65536):
            buffer += chunk
            while (found := self.frame(buffer)) is not None:
                key, raw = found
                self.outstanding.answer(key, raw)
        self.lost += 1

    async def send(self, key: int, data: bytes) -> asyncio.Future[bytes]:
        if (
            self.writer is None
            or self.writer.is_closing()
            or (self.reader_task is not None and self.reader_task.done())
        ):
            await self.close()
            await self.connect()
        assert self.writer is not None
        future = self.outstanding.expect(key)
        self.writer.write(data)
        await self.writer.drain()
        return future

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        if self.reader_task is not None:
            self.reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self.reader_task


def _native_frame(buffer: bytearray) -> tuple[int, bytes] | None:
    if len(buffer) < c.ENVELOPE_SIZE:
        return None
    end = c.ENVELOPE_SIZE + c.message_length(buffer)
    if len(buffer) < end:
        return None
    raw = bytes(buffer[:end])
    del buffer[:end]
    return c.request_id_of(raw), raw


async def run_native_tcp(lane: Lane, inputs: NativeInputs, port: int, deadline: float) -> None:
    streams = [TcpStream(port, _native_frame) for _ in range(4)]
    for stream in streams:
        await stream.connect()
    ids = iter(range(1, 1 << 31))

    async def one(data: bytes) -> None:
        request_id = next(ids)
        data = native_framed(data, request_id, udp=False)
        request = read_native(data)
        stream = streams[request_id % len(streams)]
        if not native_answer_owed(data, request, udp=False):
            stream.writer.write(data) if stream.writer is not None else None
            lane.unchecked += 1
            return
        future = await stream.send(request_id, data)
        try:
            sent = time.monotonic()
            raw = await asyncio.wait_for(future, ANSWER_TIMEOUT)
        except TimeoutError:
            stream.outstanding.waiting.pop(request_id, None)
            lane.fail("no answer (TCP)", data)
            return
        lane.took(time.monotonic() - sent)
        judge(lane, data, check_native_answer, data, request, raw)

    try:
        await _pump(lane, inputs.next, one, deadline)
    finally:
        for stream in streams:
            lane.outcomes["connections lost"] += stream.lost
            await stream.close()


# --- DNS ---------------------------------------------------------------------------------

_QTYPES = (
    "TXT",
    "TXT",
    "URI",
    "NAPTR",
    "A",
    "AAAA",
    "ANY",
    "SOA",
    "NS",
    "AXFR",
    "IXFR",
    "OPT",
    "MAILA",
    "TSIG",
    "CNAME",
    "TYPE65000",
)


_OPCODES_DNS = (dns.opcode.QUERY,) * 8 + (
    dns.opcode.NOTIFY,
    dns.opcode.STATUS,
    dns.opcode.UPDATE,
    dns.opcode.IQUERY,
)


class DnsInputs:
    """DNS inputs: 15% random bytes, 35% dnspython queries, 50% their mutants."""

    def __init__(self, rng: random.Random, mix: DemoMix, names: list[str]) -> None:
        self.rng = rng
        zone = mix.zone.zone.to_text()
        self.qnames = [mix.dns_name(n) for n in names[:400]]
        self.qnames += [
            zone,
            f"ns1.{zone}",
            f"1.100.88.{zone}",
            f"_.1.100.88.{zone}",
            f"oid-res.{zone}",
            f"1.86.156.2.1.oid-res.{zone}",
            f"nothing._.1.100.88.{zone}",
            "example.com.",
            ".",
        ]
        self.seeds = [self.query() for _ in range(256)]

    def query(self) -> bytes:
        rng = self.rng
        qname = rng.choice(self.qnames)
        if rng.random() < 0.1:
            qname = (
                "".join(rng.choice("abcXYZ-_09.") for _ in range(rng.randint(1, 30))) + "." + qname
            )
            qname = re.sub(r"\.{2,}", ".", qname).lstrip(".") or "."
        try:
            query = dns.message.make_query(
                qname,
                rng.choice(_QTYPES),
                rdclass=rng.choice(("IN", "IN", "IN", "CH", "ANY", "NONE")),
                use_edns=rng.choice((None, 0, 0, 1)),
                payload=rng.choice((512, 1232, 4096, 0)),
                want_dnssec=rng.random() < 0.2,
            )
        except (dns.exception.DNSException, ValueError):
            return rng.randbytes(rng.randint(12, 60))
        query.flags = dns.flags.Flag(
            rng.choice((dns.flags.RD, 0, dns.flags.CD, dns.flags.AD, dns.flags.RD | dns.flags.TC))
        )
        query.set_opcode(rng.choice(_OPCODES_DNS))
        return bytes(query.to_wire())

    def next(self) -> bytes:
        roll = self.rng.random()
        if roll < 0.15:
            return self.rng.randbytes(self.rng.randint(0, 120))
        if roll < 0.5:
            return self.query()
        return mutate(self.rng, self.rng.choice(self.seeds), self.seeds)


class DnsUdp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.outstanding = Outstanding()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 2:
            self.outstanding.answer(int.from_bytes(data[:2], "big"), data)


async def run_dns_udp(lane: Lane, inputs: DnsInputs, port: int, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(DnsUdp, remote_addr=(HOST, port))
    free = list(range(1 << 16))  # ids in use at once never alike; reused 65,000 queries later

    async def one(data: bytes) -> None:
        if not dns_answer_owed(data):
            transport.sendto(data)
            lane.unchecked += 1
            return
        qid = free.pop()
        try:
            for attempt in range(2):
                data = struct.pack(">H", qid) + data[2:]
                future = protocol.outstanding.expect(qid)
                transport.sendto(data)
                try:
                    sent = time.monotonic()
                    raw = await asyncio.wait_for(future, ANSWER_TIMEOUT)
                except TimeoutError:
                    protocol.outstanding.waiting.pop(qid, None)
                    if attempt == 0:
                        lane.retried += 1
                        continue
                    lane.fail("no answer (UDP)", data)
                    return
                lane.took(time.monotonic() - sent)
                judge(lane, data, check_dns_answer, data, raw, udp=True)
                return
        finally:
            free.insert(0, qid)

    try:
        await _pump(lane, inputs.next, one, deadline)
    finally:
        transport.close()


def _dns_frame(buffer: bytearray) -> tuple[int, bytes] | None:
    if len(buffer) < 2:
        return None
    end = 2 + int.from_bytes(buffer[:2], "big")
    if len(buffer) < end:
        return None
    raw = bytes(buffer[2:end])
    del buffer[:end]
    return int.from_bytes(raw[:2], "big") if len(raw) >= 2 else -1, raw


async def run_dns_tcp(lane: Lane, inputs: DnsInputs, port: int, deadline: float) -> None:
    streams = [TcpStream(port, _dns_frame) for _ in range(2)]
    for stream in streams:
        await stream.connect()
    free = list(range(1 << 16))

    async def one(data: bytes) -> None:
        if not dns_answer_owed(data):
            lane.silent += 1  # a runt or a response: the node must say nothing
            return
        qid = free.pop()
        stream = streams[qid % len(streams)]
        data = struct.pack(">H", qid) + data[2:65535]
        try:
            future = await stream.send(qid, struct.pack(">H", len(data)) + data)
            try:
                sent = time.monotonic()
                raw = await asyncio.wait_for(future, ANSWER_TIMEOUT)
            except TimeoutError:
                stream.outstanding.waiting.pop(qid, None)
                lane.fail("no answer (TCP)", data)
                return
            lane.took(time.monotonic() - sent)
            judge(lane, data, check_dns_answer, data, raw, udp=False)
        finally:
            free.insert(0, qid)

    try:
        await _pump(lane, inputs.next, one, deadline, window=WINDOW // 2)
    finally:
        for stream in streams:
            lane.outcomes["connections lost"] += stream.lost
            await stream.close()


# --- HTTP, from the OpenAPI document ----------------------------------------------------

_STRINGS = (
    "",
    " ",
    "0",
    "-1",
    "1.0",
    "true",
    "null",
    "88.100",
    "88.100.1",
    "0.NA/88.100",
    "88.100.1/x",
    "88.100.999/x",
    "1.2.156.86.1.3.7",
    "%",
    "%zz",
    "%00",
    "..",
    "/",
    "\u0000",
    "a\u0000b",
    "\ud7ff",
    "设备-001",
    "😀",
    "<script>",
    "'; DROP TABLE x;--",
    "2026-01-01",
    "2026-13-45 25:61:61",
    "9" * 30,
    "x" * 300,
    "HS_SITE",
    "HS_ADMIN",
    "URL",
    "string",
    "base64",
    "public",
    "restricted",
    "2000",
    "1000",
    "various",
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation: dict[str, Any]
    parameters: list[dict[str, Any]]


def operations(doc: dict[str, Any]) -> list[Operation]:
    found = []
    for path, item in doc["paths"].items():
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                parameters = shared + operation.get("parameters", [])
                found.append(Operation(method.upper(), path, operation, parameters))
    return found


class JsonInputs:
    """Values for a schema — mostly valid, sometimes the wrong type or out of range."""

    def __init__(self, rng: random.Random, doc: dict[str, Any], names: list[str]) -> None:
        self.rng = rng
        self.schemas = doc["components"]["schemas"]
        self.names = names

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def anything(self, depth: int = 0) -> Any:
        rng = self.rng
        roll = rng.randrange(8 if depth < 3 else 5)
        if roll == 0:
            return None
        if roll == 1:
            return rng.choice((True, False))
        if roll == 2:
            return rng.choice((0, -1, 2**31, 2**63, rng.randint(-(10**6), 10**6), 1e308, 0.5))
        if roll in (3, 4):
            return self.string()
        if roll == 5:
            return [self.anything(depth + 1) for _ in range(rng.randint(0, 3))]
        return {self.string(): self.anything(depth + 1) for _ in range(rng.randint(0, 3))}

    def string(self, max_length: int = 64) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            text = rng.choice(_STRINGS)
        elif roll < 0.7:
            text = rng.choice(self.names)
        else:
            text = "".join(
                chr(rng.choice((rng.randint(32, 126), rng.randint(0, 0x2FFF), rng.randint(0, 31))))
                for _ in range(rng.randint(0, 24))
            )
        return text[: max(max_length, 0)] if rng.random() < 0.9 else text

    def value(self, schema: dict[str, Any], depth: int = 0) -> Any:
        rng = self.rng
        schema = self.resolve(schema)
        if rng.random() < 0.05 or depth > 6:
            return self.anything(depth)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.value(rng.choice(schema[key]), depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return rng.choice(schema["enum"])
        kind = schema.get("type")
        if kind == "string":
            if schema.get("pattern", "").startswith("^[0-9]"):
                return rng.choice(self.names)
            return self.string(schema.get("maxLength", 64))
        if kind == "integer":
            low, high = schema.get("minimum", -(2**31)), schema.get("maximum", 2**31 - 1)
            return rng.choice((low, high, rng.randint(low, high), rng.randint(0, 5)))
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "null":
            return None
        if kind == "array":
            count = rng.randint(schema.get("minItems", 0), min(schema.get("maxItems", 4), 4))
            return [self.value(schema.get("items", {}), depth + 1) for _ in range(count)]
        if kind == "object":
            properties = schema.get("properties", {})
            required = set(schema.get("required", ()))
            result = {
                name: self.value(sub, depth + 1)
                for name, sub in properties.items()
                if name in required or rng.random() < 0.5
            }
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for _ in range(rng.randint(0, 3)):
                    result[self.string(16)] = self.value(extra, depth + 1)
            return result
        return self.anything(depth)


def _parameter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _login_is_safe(body: Any) -> bool:
    """Never guess the administrator's password: the lockout would lock it out."""
    text = json.dumps(body, ensure_ascii=False).lower()
    return DEMO_ADMIN[0] not in text


@dataclass
class HttpRequest:
    operation: Operation
    url: URL
    headers: dict[str, str]
    body: bytes | aiohttp.FormData | None
    described: str


class HttpInputs:
    def __init__(self, rng: random.Random, doc: dict[str, Any], names: list[str], base: str):
        self.rng = rng
        self.ops = operations(doc)
        self.json = JsonInputs(rng, doc, names)
        self.names = names
        self.base = base
        self.token = ""
        basic = base64.b64encode(f"300%3A0.NA/88.100:{DEMO_ADMIN[1]}".encode()).decode()
        self.basic = f"Basic {basic}"

    def path_value(self, name: str) -> str:
        rng = self.rng
        if name in ("handle", "oid"):
            text = rng.choice(self.names) if rng.random() < 0.7 else self.json.string()
            text = text.replace("\n", "") or "0"
            return text if text[0].isdigit() else "1" + text
        if name == "prefix":
            return rng.choice(("88.100", "88.100.1", "88.100.2", "0.NA/88.100", "x", "%"))
        if name == "rest":
            return "x-" + "".join(rng.choice("abc-._~09") for _ in range(rng.randint(0, 12)))
        return str(rng.choice((1, 2, 0, -1, 2**31, 99999)))

    def auth(self) -> dict[str, str]:
        roll = self.rng.random()
        if roll < 0.5:
            return {"Authorization": f"Bearer {self.token}"}
        if roll < 0.65:
            return {"Authorization": self.basic}
        if roll < 0.9:
            return {}
        forged = self.rng.choice(
            (
                f"Bearer {self.token[:-4]}AAAA",
                "Bearer " + self.json.string(),
                "Basic " + base64.b64encode(f"{self.json.string()}:x".encode()).decode(),
                "Basic %%%",
                "Digest x",
            )
        )
        # No control characters: the client refuses to send them (header injection).
        return {"Authorization": re.sub(r"[\x00-\x1f\x7f]", "", forged)}

    def next(self) -> HttpRequest:
        rng = self.rng
        op = rng.choice(self.ops)
        path = op.path
        query: list[tuple[str, str]] = []
        for parameter in op.parameters:
            name, where, schema = parameter["name"], parameter["in"], parameter["schema"]
            if where == "path":
                path = path.replace("{" + name + "}", quote(self.path_value(name), safe=""))
            elif where == "query" and (parameter.get("required") or rng.random() < 0.6):
                value = self.json.value(schema)
                if name == "conditions" and isinstance(value, dict):
                    query += [(str(k), _parameter_text(v)) for k, v in value.items()]
                elif isinstance(value, list):
                    query += [(name, _parameter_text(v)) for v in value]
                else:
                    query.append((name, _parameter_text(value)))
        if rng.random() < 0.05:
            query.append((self.json.string(16), self.json.string(32)))
        headers = self.auth()
        body: bytes | aiohttp.FormData | None = None
        described = ""
        content = op.operation.get("requestBody", {}).get("content", {})
        if "application/json" in content and rng.random() < 0.9:
            roll = rng.random()
            if roll < 0.8:
                document = self.json.value(content["application/json"]["schema"])
                if op.path.startswith("/identity/token") and not _login_is_safe(document):
                    document = {"username": "nobody", "password": "x"}
                raw = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
            elif roll < 0.9:
                raw = mutate(rng, json.dumps(self.json.anything()).encode(), [])
            else:
                raw = rng.randbytes(rng.randint(0, 64))
            body = raw
            headers["Content-Type"] = rng.choice(
                ("application/json",) * 8 + ("text/plain", "application/json; charset=latin-1")
            )
            described = raw[:300].decode("utf-8", "replace")
        elif "multipart/form-data" in content:
            form = aiohttp.FormData()
            magic = rng.choice((b"\x89PNG\r\n\x1a\n", b"%PDF-", b"GIF89a", b"", b"BM"))
            form.add_field(
                rng.choice(("file", "file", "other")),
                magic + rng.randbytes(rng.randint(0, 2000)),
                filename=re.sub(r"[\x00-\x1f\x7f]", "", self.json.string(20)) or "f",
                content_type="application/octet-stream",
            )
            body = form
            described = "multipart"
        pairs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
        url = URL(f"{self.base}{path}" + (f"?{pairs}" if pairs else ""), encoded=True)
        return HttpRequest(op, url, headers, body, described)


class Conformance:
    """The documented statuses, content types and (with jsonschema) body schemas."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        try:  # a test dependency: without it, statuses and content types are still checked
            jsonschema = importlib.import_module("jsonschema")
        except ImportError:
            self.validator: Callable[[dict[str, Any]], Any] | None = None
        else:
            self.validator = jsonschema.Draft202012Validator
        self._cache: dict[tuple[str, str, str, str], Any] = {}

    def validate(self, op: Operation, status: int, content_type: str, body: bytes) -> str | None:
        """What is wrong with the answer, or None."""
        responses = op.operation["responses"]
        documented = responses.get(str(status))
        if documented is None:
            return f"undocumented status {status} (documented: {', '.join(responses)})"
        media = documented.get("content", {})
        if not media:
            return None
        if content_type not in media:
            return f"undocumented content type {content_type!r} for {status}"
        if "json" not in content_type or self.validator is None:
            return None
        key = (op.method, op.path, str(status), content_type)
        validator = self._cache.get(key)
        if validator is None:
            schema = {**media[content_type]["schema"], "components": self.doc["components"]}
            validator = self._cache[key] = self.validator(schema)
        try:
            parsed = json.loads(body)
        except ValueError:
            return "body is not JSON"
        error = next(iter(validator.iter_errors(parsed)), None)
        return None if error is None else f"body not as documented: {error.message[:300]}"


async def run_http(
    lane: Lane, base: str, rng: random.Random, names: list[str], deadline: float
) -> None:
    connector = aiohttp.TCPConnector(limit=HTTP_CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(f"{base}{OPENAPI_PATH}") as resp:
            doc = await resp.json()  # the document the node under test serves
        inputs = HttpInputs(rng, doc, names, base)
        conformance = Conformance(doc)
        if conformance.validator is None:
            lane.outcomes["bodies not validated (no jsonschema)"] += 1
        login = {"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}
        async with session.post(f"{base}/identity/token", json=login) as resp:
            inputs.token = str((await resp.json())["data"]["token"])

        async def one(_: bytes) -> None:
            request = inputs.next()
            shown = f"{request.operation.method} {request.url} {request.described}"
            sent = time.monotonic()
            try:
                async with session.request(
                    request.operation.method,
                    request.url,
                    headers=request.headers,
                    data=request.body,
                    allow_redirects=False,
                ) as resp:
                    body = await resp.read()
                    status, content_type = resp.status, resp.content_type
            except (aiohttp.ClientError, TimeoutError) as exc:
                lane.fail("no answer (HTTP)", shown, repr(exc))
                return
            lane.took(time.monotonic() - sent)
            lane.outcomes[str(status)] += 1
            if status >= 500:
                lane.fail(f"server error {status}", shown, body[:500].decode("utf-8", "replace"))
                return
            problem = conformance.validate(request.operation, status, content_type, body)
            if problem is not None:
                lane.fail(problem, shown, body[:500].decode("utf-8", "replace"))

        await _pump(lane, lambda: b"", one, deadline, window=HTTP_CONNECTIONS)


# --- the run ------------------------------------------------------------------------------


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
