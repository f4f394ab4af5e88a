"""Daily accounting and the node's own gauges.

Every process that answers resolutions folds its tally (metrics.tally) into
the Prometheus instruments every second and adds its daily counts to the
database every ``accounting_interval`` seconds, so a restart loses at most
that window. One process per node (``serve``) also reads back what all of
them stored — today's and yesterday's totals, the enterprises served — and
the registry's sizes, for the gauges that the daily requirements are watched
by.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, tzinfo

from sqlalchemy.ext.asyncio import AsyncEngine

from metrics import instruments as m
from metrics.tally import TALLY, Tally
from metrics.traffic import ClientTraffic
from registry import usage
from registry.db import read_transaction, write_transaction
from registry.errors import StorageUnavailable
from registry.services.base import ChangeEvent

log = logging.getLogger("idnode.accounting")

FOLD_SECONDS = 1.0
GAUGE_SECONDS = 5.0
SIZE_SECONDS = 30.0
SERVED_WINDOW_DAYS = 30


def day_of(moment: float, zone: tzinfo) -> date:
    """The calendar day ``moment`` (Unix time) falls on in ``zone``."""
    return datetime.fromtimestamp(moment, zone).date()


def day_start(day: date, zone: tzinfo) -> float:
    """When ``day`` began in ``zone``, as Unix time."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()


class Accounting:
    def __init__(
        self,
        db: AsyncEngine,
        zone: tzinfo,
        *,
        persist_seconds: float = 2.0,
        node_gauges: bool = True,
        tally: Tally = TALLY,
        traffic: ClientTraffic | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.zone = zone
        self.persist_seconds = persist_seconds
        self.node_gauges = node_gauges
        """Whether this process reads the node-wide figures back for the gauges."""
        self.tally = tally
        self.traffic = traffic
        """The process's traffic table, read at the end of each of its windows."""
        self.clock = clock

    def fold(self) -> None:
        self.tally.fold(day_of(self.clock(), self.zone).isoformat())
        if self.traffic is not None:
            self.traffic.roll()

    async def persist(self) -> bool:
        """Add the daily counts folded so far to the database; on failure keep
        them for the next attempt. Returns whether the database took them."""
        daily = self.tally.take_daily()
        if not daily:
            return True
        try:
            async with write_transaction(self.db) as conn:
                await usage.add(conn, daily)
        except StorageUnavailable as exc:
            self.tally.give_back(daily)
            log.warning("daily counts not persisted (kept for the next try): %s", exc)
            return False
        return True

    async def refresh_days(self) -> None:
        """Today's and yesterday's totals and the enterprises served, from the database."""
        today = day_of(self.clock(), self.zone)
        yesterday = today - timedelta(days=1)
        window_start = today - timedelta(days=SERVED_WINDOW_DAYS - 1)
        async with read_transaction(self.db) as conn:
            days = {
                d.day: d for d in await usage.days(conn, yesterday.isoformat(), today.isoformat())
            }
            served = await usage.enterprises_served(
                conn, window_start.isoformat(), today.isoformat()
            )
        now, before = days.get(today.isoformat()), days.get(yesterday.isoformat())
        m.RESOLUTIONS_TODAY.set(now.resolutions if now else 0)
        m.RESOLUTIONS_YESTERDAY.set(before.resolutions if before else 0)
        m.ENTERPRISES_SERVED_TODAY.set(now.enterprises_served if now else 0)
        m.ENTERPRISES_SERVED_30D.set(served)
        m.DAY_START.set(day_start(today, self.zone))

    async def refresh_sizes(self) -> None:
        async with read_transaction(self.db) as conn:
            sizes = await usage.sizes(conn)
        m.REGISTRY_ENTERPRISES.set(sizes.enterprises)
        m.REGISTRY_PREFIXES.set(sizes.prefixes)
        m.REGISTRY_IDENTIFIERS.set(sizes.identifiers)

    async def run(self, stop: asyncio.Event) -> None:
        """Fold every second, persist and refresh at their intervals, until ``stop``."""
        persisted = refreshed = sized = time.monotonic()
        if self.node_gauges:
            await self._refresh(sizes=True)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FOLD_SECONDS)
            self.fold()
            now = time.monotonic()
            if now - persisted >= self.persist_seconds:
                persisted = now
                await self.persist()
            if self.node_gauges and now - refreshed >= GAUGE_SECONDS:
                refreshed = now
                await self._refresh(sizes=now - sized >= SIZE_SECONDS)
                if now - sized >= SIZE_SECONDS:
                    sized = now

    async def _refresh(self, *, sizes: bool) -> None:
        try:
            await self.refresh_days()
            if sizes:
                await self.refresh_sizes()
        except StorageUnavailable as exc:
            log.warning("node gauges not refreshed: %s", exc)

    async def close(self) -> None:
        """The last fold and persist, when the process stops."""
        self.fold()
        await self.persist()
        if self.node_gauges:
            await self._refresh(sizes=False)


_OPERATIONS = {
    "identifier.created": "create",
    "identifier.updated": "update",
    "identifier.deleted": "delete",
}


def count_registrations(events: Sequence[ChangeEvent]) -> None:
    """Registry changes committed in this process, by operation (a change listener)."""
    for change in events:
        operation = _OPERATIONS.get(change.event)
        if operation is None:
            family = change.event.partition(".")[0]
            operation = family if family in ("enterprise", "prefix", "template") else "other"
        m.REGISTRATIONS.labels(operation).inc()


def count_auth_failure(credential: str) -> None:
    """A credential that did not check out (an auth listener of the registry)."""
    if credential in m.CREDENTIALS:
        m.AUTH_FAILURES.labels(credential).inc()
