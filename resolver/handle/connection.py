"""What the native listeners and whatever answers them share about one client.

Kept apart from the node's service so that other servers of the protocol (the
mock top-level node) answer the same listeners without importing the node's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from registry.permissions import HandleIdentity

if TYPE_CHECKING:
    from .sessions import Session


@dataclass(eq=False)
class Connection:
    """What one TCP connection has proven (UDP requests have no such state)."""

    tcp: bool
    remote: str = ""
    identity: HandleIdentity | None = None
    login_attempted: bool = False
    challenges: int = 0
    """Challenges issued on this connection and not yet answered or expired."""
    sessions: dict[int, Session] = field(default_factory=dict)
    """Sessions that live on this connection alone (IDIS encrypted transport), by id."""
