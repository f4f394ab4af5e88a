"""Request limits shared by every front end (pure bookkeeping, no I/O).

* **Clients**: a token bucket per client address (IPv6 counted per /64, since one
  host can hold a whole /64) and a count per calendar day; exempt networks (the
  node's own monitoring, loopback by default) are never limited.
* **Enterprises**: a token bucket per authenticated enterprise, whatever
  addresses its programs call from.

A front end asks before it answers and turns a refusal into its protocol's
words: HTTP 429 with ``Retry-After``, native Handle RC 3 (too busy) or IDIS 603
(daily request limit), DNS REFUSED. Memory is bounded: the least recently seen
keys are forgotten first (a forgotten client starts again with a full bucket,
which errs on the side of answering).
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from metrics.clients import EXEMPT, ClientKeys
from registry.errors import retry_after_header

MAX_KEYS = 100_000


@dataclass(slots=True)
class Bucket:
    tokens: float
    updated: float
    limited: int = 0
    """Requests refused since the bucket was made (RRL's slip counts these)."""


@dataclass
class TokenBuckets:
    """A token bucket per key: ``rate`` a second, up to ``burst`` at once."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    max_keys: int = MAX_KEYS
    _buckets: OrderedDict[str, Bucket] = field(default_factory=OrderedDict)
    """By key, least recently seen first."""

    def take(self, key: str) -> tuple[bool, Bucket]:
        """Spend a token of ``key``'s bucket if it has one; and the bucket."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)  # the key not seen for longest
            bucket = self._buckets[key] = Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True, bucket
        bucket.limited += 1
        return False, bucket

    def wait(self, bucket: Bucket) -> float:
        """Seconds until ``bucket`` holds a token again."""
        return max(0.0, (1.0 - bucket.tokens) / self.rate) if self.rate else 0.0

    def reconfigure(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        for bucket in self._buckets.values():
            bucket.tokens = min(bucket.tokens, burst)


class Limit(enum.Enum):
    RATE = "rate"
    DAILY = "daily"


@dataclass(frozen=True, slots=True)
class Refusal:
    limit: Limit
    retry_after: float
    """Seconds until the caller may try again."""

    @property
    def retry_after_header(self) -> str:
        return retry_after_header(self.retry_after)


@dataclass(frozen=True)
class Limits:
    """The configured limits; 0 turns one off."""

    client_rate: float = 0.0
    client_burst: float = 0.0
    client_daily: int = 0
    enterprise_rate: float = 0.0
    enterprise_burst: float = 0.0
    exempt: Sequence[str] = ("127.0.0.0/8", "::1/128")


class Guard:
    """Limits of one process: ask :meth:`client` with the caller's address for
    every request, :meth:`enterprise` once the caller is authenticated."""

    def __init__(
        self,
        limits: Limits,
        *,
        zone: tzinfo | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.zone = zone
        self.clock = clock
        self.wall = wall
        self.limits = limits
        self.keys = ClientKeys(limits.exempt)
        self.clients = TokenBuckets(limits.client_rate, limits.client_burst, clock)
        self.enterprises = TokenBuckets(limits.enterprise_rate, limits.enterprise_burst, clock)
        self._day = ""
        self._day_ends = 0.0
        self._today: OrderedDict[str, int] = OrderedDict()
        self.refused: dict[Limit, int] = dict.fromkeys(Limit, 0)

    def reconfigure(self, limits: Limits) -> None:
        """New limits (a reload): counts and buckets carry over."""
        self.limits = limits
        self.keys = ClientKeys(limits.exempt)
        self.clients.reconfigure(limits.client_rate, limits.client_burst)
        self.enterprises.reconfigure(limits.enterprise_rate, limits.enterprise_burst)

    @property
    def active(self) -> bool:
        return bool(self.limits.client_rate or self.limits.client_daily)

    def client(self, address: str) -> Refusal | None:
        """None to answer the client at ``address``; else why not, and for how long."""
        limits = self.limits
        if not (limits.client_rate or limits.client_daily):
            return None
        key = self.keys.key(address)
        if key == EXEMPT:
            return None
        if limits.client_daily:
            refusal = self._count_day(key)
            if refusal is not None:
                return refusal
        if limits.client_rate:
            allowed, bucket = self.clients.take(key)
            if not allowed:
                self.refused[Limit.RATE] += 1
                return Refusal(Limit.RATE, self.clients.wait(bucket))
        return None

    def enterprise(self, enterprise: str) -> Refusal | None:
        """None to answer a caller authenticated as ``enterprise``; else why not."""
        if not self.limits.enterprise_rate:
            return None
        allowed, bucket = self.enterprises.take(enterprise)
        if allowed:
            return None
        self.refused[Limit.RATE] += 1
        return Refusal(Limit.RATE, self.enterprises.wait(bucket))

    def _count_day(self, key: str) -> Refusal | None:
        now = self.wall()
        if now >= self._day_ends:
            self._start_day(now)
        count = self._today.get(key, 0) + 1
        if count > self.limits.client_daily:
            self.refused[Limit.DAILY] += 1
            self._today.move_to_end(key)
            return Refusal(Limit.DAILY, self._day_ends - now)
        if key not in self._today and len(self._today) >= MAX_KEYS:
            self._today.popitem(last=False)
        self._today[key] = count
        self._today.move_to_end(key)
        return None

    def _start_day(self, now: float) -> None:
        moment = datetime.fromtimestamp(now, self.zone)
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        self._day = midnight.date().isoformat()
        self._day_ends = (midnight + timedelta(days=1)).timestamp()
        self._today.clear()
