"""A bounded, TTL-aware LRU cache of encoded answers, evicted by name.

Entries are keyed by ``(name key, variant)``: the variant says which answer
for that name it is (protocol, filters, the spelling the client used...).
Invalidating a name drops every variant of it at once.

Short-lived answers ("not found" is kept a few seconds) live apart, in
insertion order — which, as they share one lifetime, is their expiry order —
and are dropped as they expire: a stream of made-up names neither pushes real
answers out nor makes the cache grow.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    invalidations: int = 0


@dataclass(slots=True)
class _Entry:
    payload: Any
    expires: float


SHORT_TTL = 5.0
"""Answers kept at most this long go to the short-lived store."""
MAX_SHORT = 10_000


@dataclass
class AnswerCache:
    max_entries: int = 100_000
    clock: Callable[[], float] = time.monotonic
    stats: CacheStats = field(default_factory=CacheStats)
    _entries: OrderedDict[tuple[str, Hashable], _Entry] = field(default_factory=OrderedDict)
    _short: OrderedDict[tuple[str, Hashable], _Entry] = field(default_factory=OrderedDict)
    _variants: dict[str, set[Hashable]] = field(default_factory=dict)
    epoch: int = 0
    """Moves on every invalidation: an answer computed across one is not stored,
    since the change may have landed after it was read."""
    cleared: int = 0
    """Moves only when everything is dropped (prefixes or routes changed)."""

    def __len__(self) -> int:
        return len(self._entries) + len(self._short)

    def get(self, key: str, variant: Hashable) -> Any | None:
        slot = (key, variant)
        entry = self._entries.get(slot)
        if entry is None:
            entry = self._short.get(slot)
            if entry is None:
                self.stats.misses += 1
                return None
        if entry.expires <= self.clock():
            self._drop(slot)
            self.stats.misses += 1
            return None
        if slot in self._entries:
            self._entries.move_to_end(slot)
        self.stats.hits += 1
        return entry.payload

    def put(
        self,
        key: str,
        variant: Hashable,
        payload: Any,
        ttl: float,
        *,
        epoch: int | None = None,
        cleared: int | None = None,
    ) -> None:
        """Store an answer; with ``epoch`` (read before computing it), only if no
        invalidation happened meanwhile; with ``cleared``, only if the whole
        cache was not dropped meanwhile (for answers that no single name's
        change can make stale, such as another node's)."""
        if ttl <= 0 or self.max_entries <= 0:
            return
        if (epoch is not None and epoch != self.epoch) or (
            cleared is not None and cleared != self.cleared
        ):
            return
        slot = (key, variant)
        now = self.clock()
        self._drop(slot)  # it moves to the store its lifetime belongs in
        if ttl <= SHORT_TTL:
            self._short[slot] = _Entry(payload, now + ttl)
            self._expire_short(now)
        else:
            self._entries[slot] = _Entry(payload, now + ttl)
        self._variants.setdefault(key, set()).add(variant)
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.stats.evictions += 1

    def _expire_short(self, now: float) -> None:
        """Drop short-lived answers from the oldest while they have expired (or
        while there are too many: a flood is evicted, not kept)."""
        while self._short:
            oldest, entry = next(iter(self._short.items()))
            if entry.expires > now and len(self._short) <= MAX_SHORT:
                return
            self._drop(oldest)
            if entry.expires > now:
                self.stats.evictions += 1

    def invalidate(self, key: str) -> None:
        for variant in self._variants.pop(key, ()):
            self._entries.pop((key, variant), None)
            self._short.pop((key, variant), None)
        self.epoch += 1
        self.stats.invalidations += 1

    def clear(self) -> None:
        self._entries.clear()
        self._short.clear()
        self._variants.clear()
        self.epoch += 1
        self.cleared += 1
        self.stats.invalidations += 1

    def _drop(self, slot: tuple[str, Hashable]) -> None:
        self._entries.pop(slot, None)
        self._short.pop(slot, None)
        key, variant = slot
        variants = self._variants.get(key)
        if variants is not None:
            variants.discard(variant)
            if not variants:
                del self._variants[key]
