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


@dataclass
class _Bucket:
    tokens: float
    updated: float
    limited: int = 0


@dataclass
class ResponseRateLimiter:
    limit: RateLimit
    clock: Callable[[], float] = time.monotonic
    dropped: int = 0
    slipped: int = 0
    _buckets: dict[str, _Bucket | None] = field(default_factory=dict)
    """By client (address, or IPv6 /64); ``None`` for exempt clients."""
    _networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in self.limit.exempt]

    def check(self, address: str) -> Verdict:
        if not self.limit.rate:
            return Verdict.SEND
        now = self.clock()
        bucket = self._buckets.get(address, _missing)
        if bucket is _missing:
            bucket = self._new_bucket(address, now)
        if bucket is None:
            return Verdict.SEND
        assert isinstance(bucket, _Bucket)
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

    def _new_bucket(self, address: str, now: float) -> _Bucket | None:
        if len(self._buckets) >= MAX_CLIENTS:
            self._forget_full_buckets(now)
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            ip = None
        exempt = ip is not None and any(ip in network for network in self._networks)
        bucket = None if exempt else _Bucket(self.limit.burst, now)
        key = address
        if isinstance(ip, ipaddress.IPv6Address) and not exempt:
            key = str(ipaddress.ip_network(f"{ip}/64", strict=False))
            shared = self._buckets.get(key)
            if shared is not None:
                bucket = shared
            self._buckets[key] = bucket
        self._buckets[address] = bucket
        return bucket

    def _forget_full_buckets(self, now: float) -> None:
        """Clients idle long enough to have a full bucket again cost nothing to forget."""
        refill = self.limit.burst / self.limit.rate
        for key in [k for k, b in self._buckets.items() if b is None or now - b.updated > refill]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_CLIENTS:
            self._buckets.clear()  # all busy at once: start over rather than grow


_missing = _Bucket(0.0, 0.0)
