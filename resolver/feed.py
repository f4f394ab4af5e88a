"""The change feed: committed registry changes reach every node process.

Each process follows the outbox by sequence number and hands new events to
the engine, which evicts the answers they made stale. PostgreSQL pushes a
NOTIFY at every commit so the feed wakes at once; SQLite (and PostgreSQL, as
a safety net) are polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from registry import store
from registry.services.base import ChangeEvent

log = logging.getLogger("idnode.feed")

POLL_INTERVAL = 0.25
PG_POLL_INTERVAL = 1.0


class ChangeFeed:
    def __init__(
        self, engine: AsyncEngine, on_events: Callable[[Sequence[ChangeEvent]], None]
    ) -> None:
        self.engine = engine
        self.on_events = on_events
        self.last_seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listen: AsyncConnection | None = None

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def start(self) -> None:
        async with self.engine.connect() as conn:
            self.last_seq = await store.last_change(conn)
        if self.postgres:
            await self._start_listening()
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

    async def poll(self) -> int:
        """Deliver every change committed since the last poll; return how many."""
        delivered = 0
        while True:
            async with self.engine.connect() as conn:
                rows = await store.read_changes(conn, self.last_seq)
            if not rows:
                return delivered
            self.last_seq = rows[-1][0]
            self.on_events([ChangeEvent(seq, event, subject) for seq, event, subject in rows])
            delivered += len(rows)

    async def _run(self) -> None:
        interval = PG_POLL_INTERVAL if self.postgres else POLL_INTERVAL
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                await self.poll()
            except Exception as exc:  # the database may be briefly away: keep following
                log.warning("change feed poll failed: %s", exc)
