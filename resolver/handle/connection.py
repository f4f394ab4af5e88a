"""What the native listeners and whatever answers them share about one client.

Kept apart from the node's service so that other servers of the protocol (the
mock top-level node) answer the same listeners without importing the node's.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.permissions import HandleIdentity


@dataclass
class Connection:
    """What one TCP connection has proven (UDP requests have no such state)."""

    tcp: bool
    remote: str = ""
    identity: HandleIdentity | None = None
    login_attempted: bool = False
    challenges: int = 0
    """Challenges issued on this connection and not yet answered or expired."""
