"""Response rate limiting for UDP: a token bucket per client address.

Spoofed queries can make a DNS server send large answers to a victim; RRL caps
what one address receives. Beyond its budget a response is dropped, except
every ``slip``-th, which goes out as a bare truncated answer (TC): a real
client then asks again over TCP, where spoofing is impossible, while the
victim of a spoofed flood gets a packet no larger than the query. IPv6
clients are counted per /64, since one host can hold a whole /64.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MAX_CLIENTS = 100_000


class Verdict(enum.Enum):
    SEND = "send"
    DROP = "drop"
    SLIP = "slip"


@dataclass(frozen=True)
class RateLimit:
    rate: float = 200.0
    """Responses a second per client; 0 turns limiting off."""
    burst: float = 400.0
    slip: int = 2
    """Every this many limited responses, one goes out truncated (0: none)."""
    exempt: Sequence[str] = ("127.0.0.0/8", "::1/128")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    limited: int = 0


_EXEMPT = ""


@dataclass
class ResponseRateLimiter:
    limit: RateLimit
    clock: Callable[[], float] = time.monotonic
    dropped: int = 0
    slipped: int = 0
    _buckets: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)
    """By client, least recently seen first."""
    _clients: dict[str, str] = field(default_factory=dict)
    """Address → its client: itself, its /64 for IPv6, or ``_EXEMPT``."""
    _networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in self.limit.exempt]

    def reconfigure(self, limit: RateLimit) -> None:
        """New limits (a reload): buckets keep their tokens, clients are re-sorted."""
        self.limit = limit
        self._networks = [ipaddress.ip_network(n, strict=False) for n in limit.exempt]
        self._clients.clear()

    def check(self, address: str) -> Verdict:
        if not self.limit.rate:
            return Verdict.SEND
        client = self._clients.get(address)
        if client is None:
            client = self._client_of(address)
        if client == _EXEMPT:
            return Verdict.SEND
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= MAX_CLIENTS:
                self._buckets.popitem(last=False)  # the client not seen for longest
            bucket = self._buckets[client] = _Bucket(self.limit.burst, now)
        else:
            self._buckets.move_to_end(client)
            bucket.tokens = min(
                self.limit.burst, bucket.tokens + (now - bucket.updated) * self.limit.rate
            )
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Verdict.SEND
        bucket.limited += 1
        if self.limit.slip and bucket.limited % self.limit.slip == 0:
            self.slipped += 1
            return Verdict.SLIP
        self.dropped += 1
        return Verdict.DROP

    def _client_of(self, address: str) -> str:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            client = address
        else:
            if any(ip in network for network in self._networks):
                client = _EXEMPT
            elif isinstance(ip, ipaddress.IPv6Address):
                client = str(ipaddress.ip_network(f"{ip}/64", strict=False))
            else:
                client = address
        if len(self._clients) >= MAX_CLIENTS:
            self._clients.clear()  # a cache of a pure function: clearing only costs time
        self._clients[address] = client
        return client
