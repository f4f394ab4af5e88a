"""The native protocol's lanes of the fuzzing run: the generated inputs (random
bytes, real requests and their mutants), the codec lane in this process, and the
node's Handle port over UDP and pipelined TCP.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from dataclasses import replace
from typing import Any

from registry.models import HandleValue
from resolver.handle import codec as c
from resolver.handle import credentials as cred

from .demo_node import HOST
from .fuzz_lanes import Inputs, Lane, Outstanding, TcpStream, judge, pump
from .oracle import check_decoders, check_native_answer, native_answer_owed, read_native

MAX_UDP_DATAGRAM = 512

OPCODES = (
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
"""Every operation the native protocol names: what fuzzed requests ask for."""
_OPCODES = (c.OC_RESOLUTION, c.OC_RESOLUTION, *OPCODES)
"""The same, resolutions three times as often (as in real traffic)."""
_FLAGS = (0, c.FLAG_RRDG, c.FLAG_CERT, c.FLAG_RECU, c.FLAG_PUBL, c.FLAG_AUTH, c.FLAG_CONT)
_TYPES = (b"URL", b"EMAIL", b"HS_SITE", b"HS_ADMIN", b"HS_SECKEY", b"\xff\xfe", b"")


class NativeInputs(Inputs):
    """Native-protocol inputs: 15% random bytes, 35% real requests, 50% their mutants."""

    NOISE_BYTES = 300

    def __init__(self, rng: random.Random, names: list[str]) -> None:
        self.rng = rng
        self.names = [n.encode() for n in names]
        self.seeds = [self.fresh() for _ in range(256)]

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

    def fresh(self) -> bytes:
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

        def attempt() -> tuple[int, bytes]:  # each datagram sent under a new request id
            request_id = next(ids)
            return request_id, c.with_request_id(data, request_id)

        got = await protocol.outstanding.exchange_datagram(lane, transport, attempt)
        if got is None:
            return
        request_id, sent, raw = got
        if request is not None:
            request = replace(request, envelope=replace(request.envelope, request_id=request_id))
        judge(lane, sent, check_native_answer, sent, request, raw)

    try:
        await pump(lane, lambda: native_framed(inputs.next(), 0, udp=True), one, deadline)
    finally:
        transport.close()


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
        raw = await stream.outstanding.wait(lane, request_id, future)
        if raw is None:
            lane.fail("no answer (TCP)", data)
            return
        judge(lane, data, check_native_answer, data, request, raw)

    try:
        await pump(lane, inputs.next, one, deadline)
    finally:
        for stream in streams:
            lane.outcomes["connections lost"] += stream.lost
            await stream.close()
