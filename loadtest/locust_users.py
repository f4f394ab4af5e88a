"""What the locustfiles share: the protocol clients at their targets, and a base
user that times a request and reports it through Locust's request event.
No runnable user class lives here (Locust would run every user class a
locustfile imports)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from locust import User

from loadtest.mix import endpoint
from loadtest.protocols import DnsClient, HandleTcpClient, HandleUdpClient, NoAnswer


class WrongAnswer(Exception):
    """An answer, but not the one this name must get."""


def dns_client() -> DnsClient:
    return DnsClient(*endpoint("IDNODE_DNS", "127.0.0.1:5353"))


def handle_udp() -> HandleUdpClient:
    return HandleUdpClient(*endpoint("IDNODE_HANDLE", "127.0.0.1:2641"))


def handle_tcp() -> HandleTcpClient:
    return HandleTcpClient(*endpoint("IDNODE_HANDLE", "127.0.0.1:2641"))


@dataclass
class Timing:
    size: int = 0


@contextlib.contextmanager
def report(user: User, request_type: str, name: str) -> Iterator[Timing]:
    """Time the block and report it as a request of ``user``: a failure if it
    raised NoAnswer or WrongAnswer."""
    timing = Timing()
    started = time.perf_counter()
    error: Exception | None = None
    try:
        yield timing
    except (NoAnswer, WrongAnswer) as exc:
        error = exc
    user.environment.events.request.fire(
        request_type=request_type,
        name=name,
        response_time=(time.perf_counter() - started) * 1000,
        response_length=timing.size,
        exception=error,
        context={},
    )


class ProtocolUser(User):
    abstract = True

    def timed(self, request_type: str, name: str) -> contextlib.AbstractContextManager[Timing]:
        return report(self, request_type, name)
