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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from metrics.clients import EXEMPT, ClientKeys

from ..limits import TokenBuckets

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
class ResponseRateLimiter:
    limit: RateLimit
    clock: Callable[[], float] = time.monotonic
    dropped: int = 0
    slipped: int = 0
    _keys: ClientKeys = field(init=False)
    _buckets: TokenBuckets = field(init=False)

    def __post_init__(self) -> None:
        self._keys = ClientKeys(self.limit.exempt)
        self._buckets = TokenBuckets(self.limit.rate, self.limit.burst, self.clock, MAX_CLIENTS)

    def reconfigure(self, limit: RateLimit) -> None:
        """New limits (a reload): buckets keep their tokens, clients are re-sorted."""
        self.limit = limit
        self._keys = ClientKeys(limit.exempt)
        self._buckets.reconfigure(limit.rate, limit.burst)

    def check(self, address: str) -> Verdict:
        if not self.limit.rate:
            return Verdict.SEND
        client = self._keys.key(address)
        if client == EXEMPT:
            return Verdict.SEND
        allowed, bucket = self._buckets.take(client)
        if allowed:
            return Verdict.SEND
        if self.limit.slip and bucket.limited % self.limit.slip == 0:
            self.slipped += 1
            return Verdict.SLIP
        self.dropped += 1
        return Verdict.DROP
