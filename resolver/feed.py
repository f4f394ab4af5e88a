"""The change feed: committed registry changes reach every node process.

Each process follows the outbox by sequence number and hands new events to
the resolver, which evicts the answers they made stale. PostgreSQL pushes a
NOTIFY at every commit so the feed wakes at once; SQLite (and PostgreSQL, as
a safety net) are polled. On SQLite the poll first asks ``PRAGMA data_version``
on a connection of its own — a few microseconds in the event loop, where a
read through the pool costs a millisecond of it — and reads the outbox only
when another connection has committed since.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from registry import store
from registry.services.base import ChangeEvent

log = logging.getLogger("idnode.feed")

POLL_INTERVAL = 0.25
PG_POLL_INTERVAL = 1.0
FULL_POLL_INTERVAL = 5.0
"""Read the outbox at least this often, whatever the cheap checks say."""


class ChangeFeed:
    def __init__(
        self,
        engine: AsyncEngine,
        on_events: Callable[[Sequence[ChangeEvent]], None],
        *,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self.on_events = on_events
        self.settle = settle
        """Awaited before changes are handed on: the read replica catching up."""
        self.last_seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listen: AsyncConnection | None = None
        self._probe: sqlite3.Connection | None = None
        self._data_version = -1

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def start(self) -> None:
        async with self.engine.connect() as conn:
            self.last_seq = await store.last_change(conn)
        if self.postgres:
            await self._start_listening()
        else:
            self._probe = _version_probe(self.engine.url.database)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _start_listening(self) -> None:
        self._listen = await self.engine.connect()
        raw: Any = (await self._listen.get_raw_connection()).driver_connection
        await raw.add_listener(store.CHANGE_CHANNEL, lambda *_: self._wake.set())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listen is not None:
            await self._listen.close()
        if self._probe is not None:
            self._probe.close()

    async def poll(self) -> int:
        """Deliver every change committed since the last poll; return how many."""
        delivered = 0
        while True:
            async with self.engine.connect() as conn:
                rows = await store.read_changes(conn, self.last_seq)
            if not rows:
                return delivered
            self.last_seq = rows[-1][0]
            if self.settle is not None:
                await self.settle()
            self.on_events([ChangeEvent(seq, event, subject) for seq, event, subject in rows])
            delivered += len(rows)

    def _unchanged(self) -> bool:
        """Whether SQLite says no other connection committed since the last look."""
        if self._probe is None:
            return False
        try:
            version = int(self._probe.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            return False
        unchanged = version == self._data_version
        self._data_version = version
        return unchanged

    async def _run(self) -> None:
        interval = PG_POLL_INTERVAL if self.postgres else POLL_INTERVAL
        last_full = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            now = time.monotonic()
            if self._unchanged() and now - last_full < FULL_POLL_INTERVAL:
                continue
            last_full = now
            try:
                await self.poll()
            except Exception as exc:  # the database may be briefly away: keep following
                log.warning("change feed poll failed: %s", exc)


def _version_probe(database: str | None) -> sqlite3.Connection | None:
    """A read-only connection of our own to a SQLite file, for ``data_version``."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    try:
        uri = Path(database).resolve().as_uri() + "?mode=ro"
        return sqlite3.connect(uri, uri=True, check_same_thread=False)
    except (OSError, ValueError, sqlite3.Error):
        return None
