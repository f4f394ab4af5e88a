"""Registry operations: each checks the caller, validates, and writes one
transaction with its audit entry and outbox event."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from .. import store
from ..errors import InvalidRequest
from .accounts import Accounts
from .attachments import Attachments
from .base import SYSTEM_ACTOR, Actor, PageRequest, PageResult, Services
from .enterprises import Enterprises
from .grants import Grants
from .handles import Handles
from .identifiers import Identifiers
from .templates import Templates
from .trust import NodeIssuer, Trust

__all__ = [
    "SYSTEM_ACTOR",
    "Actor",
    "NodeIssuer",
    "PageRequest",
    "PageResult",
    "Registry",
    "Services",
]

SUFFIX_CASE_SETTING = "suffix_case"
NODE_KEY_SETTING = "node_key_check"


class Registry:
    """The registry's services, all over one shared context (its database engine,
    node prefix and key, lockout, admission and limits: see :class:`Services`)."""

    def __init__(self, services: Services, issuer: NodeIssuer | None = None) -> None:
        """``issuer``: the node's key and identity as an issuer of trust; None: it
        issues no certificates and signs no records."""
        self.services = services
        self.accounts = Accounts(self.services)
        self.templates = Templates(self.services)
        self.identifiers = Identifiers(self.services)
        self.attachments = Attachments(self.services)
        self.grants = Grants(self.services)
        self.handles = Handles(self.services, self.grants)
        self.trust = Trust(self.services, self.handles, issuer)
        self.enterprises = Enterprises(self.services, self.accounts, self.trust)

    @property
    def engine(self) -> AsyncEngine:
        return self.services.engine

    @property
    def node_prefix(self) -> str:
        return self.services.node_prefix

    async def ensure_node(self) -> None:
        """Fix the settings that give stored names their meaning on first use, and
        refuse a database made for another node prefix or another case rule."""
        s = self.services
        case_rule = "sensitive" if s.grammar.suffix_case_sensitive else "insensitive"
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
            settings = await store.read_settings(change.conn)
            key_check = s.node_key.derive("idnode node key check").hex()[:32]
            stored_check = settings.get(NODE_KEY_SETTING)
            if stored_check is None:
                await store.insert_setting(change.conn, NODE_KEY_SETTING, key_check)
            elif stored_check != key_check:
                raise InvalidRequest(
                    "this database was set up with a different node key; every process "
                    "serving it must use that key file (key_file / IDNODE_KEY_FILE)"
                )
            stored = settings.get(SUFFIX_CASE_SETTING)
            if stored is None:
                await store.insert_setting(change.conn, SUFFIX_CASE_SETTING, case_rule)
            elif stored != case_rule:
                raise InvalidRequest(
                    f"this database stores suffixes case-{stored}; the configuration says "
                    f"case-{case_rule} (suffix_case_sensitive), which would split records"
                )

    async def verify_audit(self) -> list[str]:
        """Problems found in the audit hash chain; empty when it is intact."""
        from ..audit import GENESIS_HASH, verify_chain

        async with self.services.read() as conn:
            # The head first: entries committed after it are someone else's
            # newer writes, not evidence of tampering, and are left for next time.
            head = await store.read_head(conn)
            entries = await store.read_audit(conn, up_to=head.audit_seq)
        problems = [f"entry {p.seq}: {p.reason}" for p in verify_chain(entries)]
        last_seq, last_hash = (entries[-1].seq, entries[-1].hash) if entries else (0, GENESIS_HASH)
        if (last_seq, last_hash) != (head.audit_seq, head.audit_hash):
            problems.append(
                f"log ends at entry {last_seq} but the head records entry {head.audit_seq}: "
                "entries were removed or replaced"
            )
        return problems
