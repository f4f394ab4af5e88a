"""Registry operations: each checks the caller, validates, and writes one
transaction with its audit entry and outbox event."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ..grammar import Grammar
from ..secrets import NodeKey
from .accounts import Accounts
from .attachments import Attachments
from .base import SYSTEM_ACTOR, Actor, PageRequest, PageResult, Services
from .enterprises import Enterprises
from .identifiers import Identifiers
from .templates import Templates

__all__ = ["SYSTEM_ACTOR", "Actor", "PageRequest", "PageResult", "Registry"]


class Registry:
    """The registry's services over one database engine."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        node_prefix: str,
        node_key: NodeKey,
        grammar: Grammar | None = None,
    ) -> None:
        self.services = Services(
            engine, node_prefix=node_prefix, node_key=node_key, grammar=grammar
        )
        self.accounts = Accounts(self.services)
        self.enterprises = Enterprises(self.services, self.accounts)
        self.templates = Templates(self.services)
        self.identifiers = Identifiers(self.services)
        self.attachments = Attachments(self.services)

    @property
    def engine(self) -> AsyncEngine:
        return self.services.engine

    @property
    def node_prefix(self) -> str:
        return self.services.node_prefix

    async def ensure_node_prefix(self) -> None:
        """Record the node's own prefix; refuse a database made for another node."""
        from .. import store
        from ..errors import InvalidRequest

        s = self.services
        async with s.change(SYSTEM_ACTOR) as change:
            keys = await store.node_prefix_keys(change.conn)
            if not keys:
                await store.insert_node_prefix(
                    change.conn, s.node_prefix, s.node_prefix_key, "secondary node prefix"
                )
                await change.record("node.prefix", s.node_prefix, {"prefix": s.node_prefix})
            elif s.node_prefix_key not in keys:
                raise InvalidRequest(
                    f"this database belongs to node prefix {', '.join(keys)}, not {s.node_prefix}"
                )

    async def verify_audit(self) -> list[str]:
        """Problems found in the audit hash chain; empty when it is intact."""
        from .. import store
        from ..audit import GENESIS_HASH, verify_chain

        async with self.services.read() as conn:
            entries = await store.read_audit(conn)
            head = await store.read_head(conn)
        problems = [f"entry {p.seq}: {p.reason}" for p in verify_chain(entries)]
        last_seq, last_hash = (entries[-1].seq, entries[-1].hash) if entries else (0, GENESIS_HASH)
        if (last_seq, last_hash) != (head.audit_seq, head.audit_hash):
            problems.append(
                f"log ends at entry {last_seq} but the head records entry {head.audit_seq}: "
                "entries were removed or replaced"
            )
        return problems
