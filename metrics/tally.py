"""Counting resolutions on the hot path, in plain integers.

A cached answer costs the node a few microseconds; a Prometheus counter in
multiprocess mode costs one or two more per increment (a locked write to a
memory-mapped file), a histogram observation twice that. So the front ends
count into a :class:`Tally` — a dictionary increment and a bucket index — and
:meth:`Tally.fold`, called every second, moves the counts into the
instruments in a handful of writes, and keeps the daily counts (per
enterprise prefix and protocol) until the node persists them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from . import instruments as m

NO_PREFIX = ""
"""The daily count's prefix for resolutions of no enterprise (the node's own
records, unknown prefixes, other nodes' names)."""


@dataclass(slots=True)
class DailyCount:
    resolutions: int = 0
    found: int = 0
    """Resolutions that returned values: an enterprise with any is "served"."""


DailyCounts = dict[tuple[str, str, str], DailyCount]
"""By (day, enterprise prefix, protocol); the day as ``YYYY-MM-DD``."""


class CacheStats(Protocol):
    hits: int
    misses: int
    evictions: int


class WatchedCache(Protocol):
    """What :meth:`Tally.watch` reads of an answer cache."""

    @property
    def stats(self) -> CacheStats: ...

    def __len__(self) -> int: ...


@dataclass
class Tally:
    _counts: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(protocol, outcome, prefix) → resolutions since the last fold."""
    _buckets: dict[str, list[int]] = field(
        default_factory=lambda: {p: [0] * (len(m.LATENCY_BUCKETS) + 1) for p in m.PROTOCOLS}
    )
    _seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(m.PROTOCOLS, 0.0))
    _daily: DailyCounts = field(default_factory=dict)
    _caches: dict[str, tuple[WatchedCache, list[int]]] = field(default_factory=dict)

    def count(self, protocol: str, outcome: str, prefix: str, seconds: float) -> None:
        """One resolution answered (the hot path: keep it this small)."""
        key = (protocol, outcome, prefix)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        # Prometheus buckets are "less than or equal to": the first bound >= seconds.
        self._buckets[protocol][bisect_left(m.LATENCY_BUCKETS, seconds)] += 1
        self._seconds[protocol] += seconds

    def watch(self, name: str, cache: WatchedCache) -> None:
        """Export this cache's hits, misses, evictions and size as ``cache=name``."""
        stats = cache.stats
        self._caches[name] = (cache, [stats.hits, stats.misses, stats.evictions])

    def fold(self, day: str) -> None:
        """Move what was counted since the last fold into the instruments; the
        daily counts go to ``day`` (folds come every second, so a resolution
        lands on the day it was answered but for the last second's)."""
        counts, self._counts = self._counts, {}
        by_outcome: dict[tuple[str, str], int] = {}
        daily = self._daily
        for (protocol, outcome, prefix), n in counts.items():
            by_outcome[protocol, outcome] = by_outcome.get((protocol, outcome), 0) + n
            entry = daily.get((day, prefix, protocol))
            if entry is None:
                entry = daily[day, prefix, protocol] = DailyCount()
            entry.resolutions += n
            if outcome == "found":
                entry.found += n
        for (protocol, outcome), n in by_outcome.items():
            m.RESOLUTIONS.labels(protocol, outcome).inc(n)
        for protocol, buckets in self._buckets.items():
            if any(buckets):
                add_observations(
                    m.RESOLUTION_SECONDS.labels(protocol), buckets, self._seconds[protocol]
                )
                self._buckets[protocol] = [0] * len(buckets)
                self._seconds[protocol] = 0.0
        for name, (cache, seen) in self._caches.items():
            stats = cache.stats
            now = [stats.hits, stats.misses, stats.evictions]
            for counter, before, after in zip(
                (m.CACHE_HITS, m.CACHE_MISSES, m.CACHE_EVICTIONS), seen, now, strict=True
            ):
                if after > before:
                    counter.labels(name).inc(after - before)
            seen[:] = now
            m.CACHE_ENTRIES.labels(name).set(len(cache))

    def take_daily(self) -> DailyCounts:
        """The daily counts folded so far, to be persisted; the tally starts anew."""
        daily, self._daily = self._daily, {}
        return daily

    def give_back(self, daily: Mapping[tuple[str, str, str], DailyCount]) -> None:
        """Counts that could not be persisted: kept for the next attempt."""
        for key, count in daily.items():
            entry = self._daily.get(key)
            if entry is None:
                entry = self._daily[key] = DailyCount()
            entry.resolutions += count.resolutions
            entry.found += count.found


def add_observations(child: object, buckets: list[int], seconds: float) -> None:
    """Add many observations to a histogram child at once: ``buckets[i]`` of them
    in its i-th bucket (not cumulative), ``seconds`` to its sum — what as many
    ``observe`` calls would do, in one write per bucket. prometheus-client has no
    public call for it; tests/test_metrics.py checks this against ``observe``."""
    values = child._buckets  # type: ignore[attr-defined]
    for i, n in enumerate(buckets):
        if n:
            values[i].inc(n)
    child._sum.inc(seconds)  # type: ignore[attr-defined]


TALLY = Tally()
"""The process's tally: front ends count into it, the node folds it."""
