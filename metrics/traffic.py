"""Who asks, and how often for nothing: per-client request and not-found counts.

Each process counts per client address (IPv6 per /64) in a table for the
current minute, bounded in size (past ``MAX_CLIENTS`` the newcomers share one
overflow row), and at the end of the minute reads it: the busiest clients, and
the clients that look like they enumerate the namespace — many names asked,
most of them unknown. Those are logged (address, counts) and counted in
``idnode_scanning_clients``, which an alert watches; the top client's share of
the traffic goes to ``idnode_top_client_share``. Each process of the node has
one table, made from its settings and handed to its front ends, which call
:meth:`ClientTraffic.see` as they answer (a dictionary update); the process's
accounting loop calls :meth:`ClientTraffic.roll` every second.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import instruments as m
from .clients import ClientKeys

log = logging.getLogger("idnode.traffic")

MAX_CLIENTS = 50_000
OVERFLOW = "(others)"
WINDOW_SECONDS = 60.0
TOP = 10


@dataclass(slots=True)
class Seen:
    requests: int = 0
    not_found: int = 0

    @property
    def not_found_ratio(self) -> float:
        return self.not_found / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class ClientCount:
    client: str
    requests: int
    not_found: int


@dataclass
class Window:
    """What one minute showed."""

    started: float
    requests: int
    clients: int
    top: list[ClientCount]
    scanning: list[ClientCount]


@dataclass
class ClientTraffic:
    scan_min_not_found: int = 300
    """Unknown names one client must ask in a minute to count as scanning..."""
    scan_ratio: float = 0.5
    """...when they are at least this share of what it asked."""
    window: float = WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    last: Window | None = None
    _keys: ClientKeys = field(default_factory=ClientKeys)
    _seen: dict[str, Seen] = field(default_factory=dict)
    _started: float = field(default=-1.0)

    def reconfigure(self, *, scan_min_not_found: int, window: float) -> None:
        """A new reading (a reload), from the next minute on; the counts so far stay."""
        self.scan_min_not_found, self.window = scan_min_not_found, window

    def see(self, address: str, *, not_found: bool) -> None:
        """One answer to ``address``; ``not_found``: the name asked does not exist."""
        key = self._keys.key(address)
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) >= MAX_CLIENTS:
                key = OVERFLOW
            seen = self._seen.setdefault(key, Seen())
        seen.requests += 1
        if not_found:
            seen.not_found += 1

    def roll(self) -> Window | None:
        """Close the minute if it is over: its reading (also in :attr:`last`)."""
        now = self.clock()
        if self._started < 0:
            self._started = now
            return None
        if now - self._started < self.window:
            return None
        window = self._read(self._started)
        self._seen = {}
        self._started = now
        self.last = window
        self._publish(window)
        return window

    def _read(self, started: float) -> Window:
        counts = [
            ClientCount(client, seen.requests, seen.not_found)
            for client, seen in self._seen.items()
            if client != OVERFLOW
        ]
        scanning = [
            c
            for c in counts
            if c.not_found >= self.scan_min_not_found
            and c.not_found >= self.scan_ratio * c.requests
        ]
        return Window(
            started=started,
            requests=sum(seen.requests for seen in self._seen.values()),
            clients=len(self._seen),
            top=heapq.nlargest(TOP, counts, key=lambda c: c.requests),
            scanning=sorted(scanning, key=lambda c: -c.not_found),
        )

    def _publish(self, window: Window) -> None:
        m.SCANNING_CLIENTS.set(len(window.scanning))
        m.CLIENTS_SEEN.set(window.clients)
        top = window.top[0].requests if window.top else 0
        m.TOP_CLIENT_SHARE.set(top / window.requests if window.requests else 0.0)
        for client in window.scanning:
            log.warning(
                "client %s looks like it enumerates names: %d of its %d requests this "
                "minute asked for names that do not exist",
                client.client,
                client.not_found,
                client.requests,
                extra={
                    "fields": {
                        "client": client.client,
                        "requests": client.requests,
                        "not_found": client.not_found,
                    }
                },
            )


def handle_not_found(answer: bytes) -> bool:
    """Whether a native Handle answer (its first datagram) says HANDLE_NOT_FOUND."""
    return answer[24:28] == b"\x00\x00\x00\x64"  # envelope 20 bytes, opcode 4, then the RC


def dns_not_found(answer: bytes) -> bool:
    """Whether a DNS answer says NXDOMAIN."""
    return len(answer) > 3 and answer[3] & 0x0F == 3
