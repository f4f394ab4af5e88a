"""What every lane of the fuzzing run (``python -m loadtest.fuzz``) shares: the
tally of a lane, the mutations its inputs are made of, the judge that counts what the
oracle saw, the pump that keeps a window of inputs in flight, and the requests awaiting
answers matched by id — over UDP, or pipelined on a persistent TCP connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec

from .demo_node import HOST
from .oracle import WrongAnswer

_P = ParamSpec("_P")
WINDOW = 64
"""Requests outstanding per socket."""
ANSWER_TIMEOUT = 10.0
"""An answer owed and not come by then is a failure (a hang)."""
SLOW_SECONDS = 1.0
MAX_SAMPLES = 20
"""Failures kept (with their input) per lane; all are counted."""


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


class Inputs:
    """One protocol's inputs, drawn from ``rng``: 15% random bytes (up to
    ``NOISE_BYTES``), 35% fresh requests (``fresh``), 50% mutants of ``seeds`` (the
    requests the subclass made first)."""

    NOISE_BYTES = 120
    rng: random.Random
    seeds: list[bytes]

    def fresh(self) -> bytes:
        """A request as a client would make it."""
        raise NotImplementedError

    def next(self) -> bytes:
        roll = self.rng.random()
        if roll < 0.15:
            return self.rng.randbytes(self.rng.randint(0, self.NOISE_BYTES))
        if roll < 0.5:
            return self.fresh()
        return mutate(self.rng, self.rng.choice(self.seeds), self.seeds)


# --- judging and sending ----------------------------------------------------------------


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

    async def wait(self, lane: Lane, key: int, future: asyncio.Future[bytes]) -> bytes | None:
        """The answer ``future`` (request ``key``) brings within ``ANSWER_TIMEOUT``, its
        time tallied in ``lane``; None when none came (the request no longer awaited)."""
        try:
            sent = time.monotonic()
            raw = await asyncio.wait_for(future, ANSWER_TIMEOUT)
        except TimeoutError:
            self.waiting.pop(key, None)
            return None
        lane.took(time.monotonic() - sent)
        return raw

    async def exchange_datagram(
        self,
        lane: Lane,
        transport: asyncio.DatagramTransport,
        attempt: Callable[[], tuple[int, bytes]],
    ) -> tuple[int, bytes, bytes] | None:
        """Send a datagram that ``attempt`` makes (its request id and bytes) and await
        its answer, sending a new one once if none came (a datagram may be lost): the
        id and bytes answered and the answer; None, a failure of the lane, when both
        went unanswered."""
        for retry in (False, True):
            key, data = attempt()
            future = self.expect(key)
            transport.sendto(data)
            raw = await self.wait(lane, key, future)
            if raw is not None:
                return key, data, raw
            if not retry:
                lane.retried += 1
        lane.fail("no answer (UDP)", data)
        return None


async def pump(
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
