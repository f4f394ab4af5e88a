"""Closing idle connections, for every TCP front end."""

from __future__ import annotations

import asyncio
from typing import Protocol


class IdleConnection(Protocol):
    last_seen: float
    """Loop time at which the connection last heard something."""

    def close_if_idle(self) -> None: ...


class IdleSweeper:
    """One timer for all connections of a listener: each connection only notes
    when it last heard something (a per-connection timer costs more than the
    answer it guards)."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.connections: set[IdleConnection] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, connection: IdleConnection) -> None:
        self.connections.add(connection)
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(self.idle / 4, self._sweep)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        limit = loop.time() - self.idle
        for connection in [p for p in self.connections if p.last_seen < limit]:
            connection.close_if_idle()
        self._handle = loop.call_later(self.idle / 4, self._sweep) if self.connections else None

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
