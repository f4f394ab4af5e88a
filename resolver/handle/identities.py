"""The stored values of identities that prove themselves over the native protocol.

Every login and every challenge answer checks a proof against the identity's
``HS_PUBKEY`` or ``HS_SECKEY`` values. Reading the record from the database
each time cost a login about as much as the signature check itself, while the
same identities log in again and again. So records are kept here — bounded,
least recently used first out — and evicted by the same committed changes that
evict the resolver's answers (this process's writes at once, other processes'
through the change feed): a key replaced or removed stops proving anything as
soon as the change is seen, exactly as a resolution stops returning it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from registry import store
from registry.models import HandleValue
from registry.services.base import ChangeEvent, Services

from ..cache import AnswerCache

IDENTITIES_KEPT = 4096
"""Identities' records kept for their next proof."""
KEPT_SECONDS = 300.0
"""An unchanged record is read again after this long all the same."""
_VALUES = "identity-values"
"""The cache slot of a record's values (one slot per identity)."""

Stale = Callable[[Sequence[ChangeEvent]], "set[str] | None"]
"""The name keys a batch of changes makes stale; None: any name."""


class IdentityRecords:
    """Reads identities' values through a bounded cache kept fresh by changes.

    Without ``stale`` (nothing tells it of changes) nothing is kept: every
    proof reads the database."""

    def __init__(
        self, services: Services, *, stale: Stale | None = None, kept: int = IDENTITIES_KEPT
    ) -> None:
        self.services = services
        self.stale = stale
        self.cache = AnswerCache(max_entries=kept if stale is not None else 0)

    async def values(self, name_key: str) -> tuple[HandleValue, ...]:
        """The values stored under ``name_key`` (none if no such identifier)."""
        cache = self.cache
        cached: tuple[HandleValue, ...] | None = cache.get(name_key, _VALUES)
        if cached is not None:
            return cached
        # Read before the epoch moves on: a change that lands while the record
        # is read keeps what was read out of the cache.
        epoch = cache.epoch
        async with self.services.read() as conn:
            record = await store.get_identifier(conn, name_key)
        if record is None:
            return ()  # made-up names are not kept: they would push real ones out
        values = tuple(record.values)
        cache.put(name_key, _VALUES, values, KEPT_SECONDS, epoch=epoch)
        return values

    def on_changes(self, events: Sequence[ChangeEvent]) -> None:
        """Forget the records these committed changes touched (all, if they
        reshaped the namespace)."""
        stale = self.stale(events) if self.stale is not None else None
        if stale is None:
            self.cache.clear()
            return
        for key in stale:
            self.cache.invalidate(key)
