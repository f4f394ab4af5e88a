"""What every registry service shares: the caller, the clock, transactions.

A registry change is written with :meth:`Services.change`: one database
transaction that locks the sequence head first, then carries the data
rows, their audit entry and their outbox event, and commits before the
caller is answered. Batch operations use :meth:`Change.item` savepoints so
each item is atomic on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import zoneinfo
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .. import dnsnames, store
from ..db import read_transaction, write_transaction
from ..errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    LockedOut,
    NotFound,
    RegisterCountLimit,
)
from ..grammar import (
    Grammar,
    GrammarError,
    HandleName,
    InvalidPrefix,
    is_enterprise_prefix,
    normalize_prefix,
)
from ..lockout import LoginLockout
from ..models import HandleValue, Prefix, Principal
from ..permissions import HandleIdentity
from ..secrets import NodeKey
from ..values import SiteInfo

SYSTEM = "system"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change, and from where: recorded in the audit log."""

    principal: Principal | None
    remote: str = ""
    identity: HandleIdentity | None = None
    """A Handle identity (``300:0.NA/88.100``) proven by its secret, for Handle writes."""

    @property
    def name(self) -> str:
        if self.identity is not None:
            return f"handle:{self.identity}"
        if self.principal is None:
            return SYSTEM
        return f"{self.principal.via}:{self.principal.username}"

    @property
    def anonymous(self) -> bool:
        return self.principal is None and self.identity is None

    def require(self) -> Principal:
        if self.principal is None:
            raise Forbidden("没有权限 (not authenticated)")
        return self.principal

    def require_admin(self) -> Principal:
        principal = self.require()
        if not principal.is_admin:
            raise Forbidden("没有权限，仅节点管理员可操作 (node administrators only)")
        return principal


SYSTEM_ACTOR = Actor(principal=None, remote="local")


@dataclass(frozen=True, slots=True)
class PageRequest:
    """1-based page, as SNMS clients send ``currentPage``."""

    current: int = 1
    size: int = 10

    MAX_SIZE = 1000

    def __post_init__(self) -> None:
        if self.current < 1:
            raise InvalidRequest("currentPage 应从1开始 (currentPage starts at 1)")
        if not 1 <= self.size <= self.MAX_SIZE:
            raise InvalidRequest(f"pageSize 应为1~{self.MAX_SIZE}")

    @property
    def offset(self) -> int:
        return (self.current - 1) * self.size


@dataclass(frozen=True, slots=True)
class PageResult(Generic[T]):
    items: list[T]
    total: int
    request: PageRequest

    @property
    def total_pages(self) -> int:
        return (self.total + self.request.size - 1) // self.request.size


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One committed change: the outbox sequence number, what, and to whom."""

    seq: int
    event: str
    subject: str


ChangeListener = Callable[[Sequence[ChangeEvent]], None]

RecordWriteHook = Callable[["Change", str, Sequence[HandleValue]], Awaitable[list[HandleValue]]]
"""Given a record's name and the values about to be stored, in the writing
transaction: the values to store instead (the trust service re-signs here)."""

Admission = Callable[[str, str], None]
"""Spends one request of a budget — ``enterprise:<id>`` or ``identity:<handle>``
(see :func:`enterprise_key`) — asked by a protocol (``http``, ``handle_tcp``);
raises TooManyRequests when the budget is spent."""


class Change:
    """One write transaction: data rows plus their audit entries and events."""

    def __init__(
        self, conn: AsyncConnection, head: store.Head, actor: Actor, now: datetime
    ) -> None:
        self.conn = conn
        self.head = head
        self.actor = actor
        self.now = now
        self.events: list[ChangeEvent] = []
        """What this transaction changed, announced to listeners once committed."""
        self._lookups: dict[Hashable, Any] = {}

    async def lookup(self, key: Hashable, load: Callable[[], Awaitable[Any]]) -> Any:
        """Read once per transaction: for rows the transaction itself does not change
        (a batch of identifiers re-reads the same prefix and template otherwise)."""
        if key not in self._lookups:
            self._lookups[key] = await load()
        return self._lookups[key]

    async def audit(self, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
        """An audit entry alone (account changes: nothing to send upward)."""
        await self._append([store.Entry(action, target, {}, detail or {})], outbox=False)

    async def emit(self, event: str, subject: str, payload: dict[str, Any]) -> None:
        """An outbox event alone (the sync worker re-sending what the top-level node lacks)."""
        await self._append([store.Entry(event, subject, payload, {})], audit=False)

    async def record(
        self,
        action: str,
        target: str,
        payload: dict[str, Any],
        audit_detail: dict[str, Any] | None = None,
    ) -> None:
        """Audit a change and queue it for the top-level node, together."""
        detail = audit_detail if audit_detail is not None else payload
        await self._append([store.Entry(action, target, payload, detail)])

    async def record_many(self, entries: Sequence[store.Entry]) -> None:
        """:meth:`record` for many changes at once (batch registration)."""
        await self._append(entries)

    async def _append(
        self, entries: Sequence[store.Entry], *, audit: bool = True, outbox: bool = True
    ) -> None:
        seqs = await store.append_entries(
            self.conn,
            self.head,
            entries,
            actor=self.actor.name,
            remote=self.actor.remote,
            at=self.now,
            audit=audit,
            outbox=outbox,
        )
        if outbox:
            self.events.extend(
                ChangeEvent(seq, entry.action, entry.target)
                for seq, entry in zip(seqs, entries, strict=True)
            )

    @contextlib.asynccontextmanager
    async def item(self) -> AsyncIterator[None]:
        """A savepoint: on error, this item's rows and sequence numbers vanish."""
        saved = dataclasses.replace(self.head)
        events_before = len(self.events)
        savepoint = await self.conn.begin_nested()
        try:
            yield
        except BaseException:
            await savepoint.rollback()
            del self.events[events_before:]
            self.head.audit_seq, self.head.audit_hash, self.head.outbox_seq = (
                saved.audit_seq,
                saved.audit_hash,
                saved.outbox_seq,
            )
            raise
        else:
            await savepoint.commit()


def _china_time() -> tzinfo:
    try:
        return zoneinfo.ZoneInfo("Asia/Shanghai")
    except zoneinfo.ZoneInfoNotFoundError:
        from datetime import timezone

        return timezone(timedelta(hours=8), "CST")


class Services:
    """Shared context of the registry services."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        node_prefix: str,
        node_key: NodeKey,
        grammar: Grammar | None = None,
        proxy_server_id: int = 1,
        display_tz: tzinfo | None = None,
        clock: Callable[[], datetime] | None = None,
        lockout: LoginLockout | None = None,
        admission: Admission | None = None,
        identifier_limit: int = 0,
        prefix_limit: int = 0,
    ) -> None:
        if not is_enterprise_prefix(node_prefix):
            raise InvalidPrefix(
                f"node prefix {node_prefix!r} must be dotted digits of at most 64 characters"
            )
        self.engine = engine
        self.proxy_server_id = proxy_server_id
        """This node's id as an SNMS hosting server (系统管理-托管配置)."""
        self.node_prefix = node_prefix
        self.node_prefix_key = normalize_prefix(node_prefix)
        self.node_key = node_key
        self.grammar = grammar or Grammar()
        self.tz = display_tz or _china_time()
        self._clock = clock or (lambda: datetime.now(UTC))
        # Writers queue here, not in the connection pool: every write
        # transaction takes the database's sequence head anyway, and a writer
        # waiting for it must not hold a connection that readers need.
        self._write_turn = asyncio.Lock()
        self.site: SiteInfo | None = None
        """This node's own ``HS_SITE``, set by whoever knows the served interfaces."""
        self.site_sm2_key = b""
        """The ``HS_PUBKEY`` data of this node's SM2 site key, published beside its
        HS_SITE (records.SITE_SM2_KEY_INDEX); empty: it has none."""
        self.listeners: list[ChangeListener] = []
        """Called (in this process) right after a change commits, e.g. to evict
        cached answers before the writer's client can ask again."""
        self.auth_listeners: list[Callable[[str], None]] = []
        """Called with the kind of credential whenever one fails to check out:
        ``password`` (a login or an access key), ``handle_secret``, ``token``,
        ``proof`` (a native challenge answer)."""
        self.lockout = lockout or LoginLockout()
        """Brute-force lockout of passwords and secrets."""
        self.admission = admission
        """Spends an authenticated caller's enterprise budget (see :meth:`admit`);
        None: enterprises are not limited."""
        self.identifier_limit = identifier_limit
        """Identifiers one enterprise may hold (IDIS RC 604 beyond); 0: no limit."""
        self.prefix_limit = prefix_limit
        """Enterprise prefixes the node may allocate (IDIS RC 605 beyond); 0: no limit."""
        self.before_record_write: RecordWriteHook | None = None
        """Sees every changed record's values before they are stored (see
        :meth:`values_to_store`); set by the trust service to re-sign signed records."""

    def now(self) -> datetime:
        return self._clock()

    def reconfigure(self, *, identifier_limit: int, prefix_limit: int) -> None:
        """New registration limits (a reload); what is registered stays."""
        self.identifier_limit, self.prefix_limit = identifier_limit, prefix_limit

    def admit(self, actor: Actor, protocol: str) -> None:
        """Asked with every authenticated caller and the protocol it came by:
        TooManyRequests when the caller's enterprise is over its rate."""
        if self.admission is None:
            return
        key = enterprise_key(actor, self.node_prefix_key)
        if key is not None:
            self.admission(key, protocol)

    def refuse_if_locked(self, account: str, remote: str, credential: str) -> None:
        """LockedOut (counted as an auth failure) while ``account`` or the address is
        locked: a guesser gets no verdict, right or wrong, until the lock ends."""
        locked = self.lockout.locked_for(account, remote)
        if locked:
            self.auth_failed(credential)
            raise LockedOut(locked)

    async def identifier_room(self, conn: AsyncConnection, enterprise_id: int) -> int | None:
        """How many more identifiers the enterprise may register (None: no limit)."""
        if not self.identifier_limit:
            return None
        held = await store.count_enterprise_identifiers(conn, enterprise_id)
        return max(0, self.identifier_limit - held)

    async def require_identifier_room(self, conn: AsyncConnection, enterprise_id: int) -> None:
        room = await self.identifier_room(conn, enterprise_id)
        if room is not None and room < 1:
            raise RegisterCountLimit(registration_limit_text(self.identifier_limit))

    async def values_to_store(
        self, change: Change, record_name: str, values: Sequence[HandleValue]
    ) -> list[HandleValue]:
        """What a changed record is stored with, in its writing transaction: its
        values, re-signed when it carries a signature the node keeps fresh."""
        if self.before_record_write is None:
            return list(values)
        return await self.before_record_write(change, record_name, values)

    def auth_failed(self, credential: str) -> None:
        for listener in self.auth_listeners:
            listener(credential)

    @contextlib.asynccontextmanager
    async def change(self, actor: Actor) -> AsyncIterator[Change]:
        try:
            async with self._write_turn, write_transaction(self.engine) as conn:
                head = await store.lock_head(conn)
                change = Change(conn, head, actor, self.now())
                yield change
                await store.save_head(conn, head)
                if change.events:
                    await store.notify_changes(conn, head.outbox_seq)
        except IntegrityError as exc:
            # Checks run before every insert; a unique violation here means a
            # concurrent writer won the race. Nothing was committed.
            raise AlreadyExists(
                f"记录已存在 (conflicting concurrent write: {_first_line(exc)})"
            ) from None
        if change.events:
            for listener in self.listeners:
                listener(change.events)

    def read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return read_transaction(self.engine)

    def dns_path(self, name: HandleName) -> str | None:
        """Where the identifier sits in the DNS zone (see :mod:`registry.dnsnames`)."""
        return dnsnames.dns_path(name, suffix_case_sensitive=self.grammar.suffix_case_sensitive)

    def parse_name(self, name: str) -> HandleName:
        try:
            return self.grammar.parse(name)
        except GrammarError as exc:
            raise InvalidRequest(f"标识格式错误: {exc}") from None

    def format_time(self, value: datetime) -> str:
        """SNMS timestamps: ``yyyy-MM-dd HH:mm:ss`` in the node's local time."""
        return value.astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def parse_time(self, text: str, field: str) -> datetime:
        for layout in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            try:
                local = datetime.strptime(text.strip(), layout)
                return local.replace(tzinfo=self.tz).astimezone(UTC)
            except (ValueError, OverflowError):  # OverflowError: year 1 in UTC-8
                continue
        raise InvalidRequest(f"{field} 格式应为 yyyy-MM-dd HH:mm:ss (got {text!r})")

    def local_date(self, offset_days: int = 0) -> str:
        return (self.now().astimezone(self.tz) + timedelta(days=offset_days)).strftime("%Y-%m-%d")


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def prefix_key(prefix_text: str) -> str:
    """The key of the enterprise prefix a caller wrote; InvalidRequest when it is none."""
    try:
        return normalize_prefix(prefix_text.strip())
    except GrammarError as exc:
        raise InvalidRequest(f"前缀格式错误: {exc}") from None


async def managed_prefix(
    conn: AsyncConnection, principal: Principal, prefix_text: str, *, key: str | None = None
) -> Prefix:
    """The allocated prefix a caller wrote, which ``principal`` must manage:
    InvalidRequest when the text is no prefix, NotFound when none such is allocated,
    Forbidden when it is another enterprise's. ``key``: the text's key, when the
    caller has checked it already (before opening its transaction)."""
    prefix = await store.get_prefix(conn, prefix_key(prefix_text) if key is None else key)
    if prefix is None:
        raise NotFound(f"前缀{prefix_text}不存在 (no such prefix)")
    if not principal.may_manage(prefix.prefix_key):
        raise Forbidden("没有权限 (not your prefix)")
    return prefix


def registration_limit_text(limit: int) -> str:
    return f"企业标识注册数量已达上限{limit} (registration count limit {limit} reached)"


def enterprise_key(actor: Actor, node_prefix_key: str) -> str | None:
    """Whose budget an authenticated caller spends: its enterprise's (its users and
    access keys share one), a Handle identity's own; None for node administrators
    (users, and identities of the node's own prefix handle) and anonymous callers
    (those are limited per address only)."""
    principal = actor.principal
    if principal is not None:
        if principal.is_admin or principal.enterprise_id is None:
            return None
        return f"enterprise:{principal.enterprise_id}"
    identity = actor.identity
    if identity is not None and identity.key.upper() != f"0.NA/{node_prefix_key}".upper():
        return f"identity:{identity.key}"
    return None
