"""Resolution: name in, values or a verdict out — no transport here.

Every front end (Handle REST, the redirect proxy, HRLS reverse lookup, the
native protocol, DNS with its OID branch) asks the same :class:`Resolver`.
Anonymous answers are cached already encoded, per front end, in one
:class:`~resolver.cache.AnswerCache`; committed changes evict them (in this
process at once, in others through the change feed), and every entry also
expires with the shortest TTL of its values.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from metrics.tally import NO_PREFIX, TALLY
from registry import store
from registry.db import Reads, read_with
from registry.errors import InvalidName
from registry.grammar import GrammarError, HandleName, is_under
from registry.models import TTL_ABSOLUTE, Enterprise, HandleValue, Prefix
from registry.permissions import NO_ACCESS, ReadAccess
from registry.records import CachedDirectory, Located, Where, locate
from registry.secrets import is_sealed_value, open_value
from registry.services import Actor, Registry
from registry.services.base import ChangeEvent
from registry.values import HS_SECKEY

from .cache import AnswerCache

log = logging.getLogger("idnode.resolver")
T = TypeVar("T")

NEGATIVE_TTL = 5.0
"""How long "not found" is remembered (writes evict it sooner)."""
MAX_TTL = 3600.0
"""No answer is served from cache longer than this, whatever its values say."""
RECURSED_MAX_TTL = 300.0
"""Another node's answer, fetched by recursion, is reused at most this long."""
FOREIGN_REFERRAL_TTL = 30.0
"""A referral made from another node's route is reused at most this long: the
sync worker may change the route in another process, without a change event."""


class Status(enum.Enum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    VALUES_NOT_FOUND = "values_not_found"
    """The record exists; none of its values passed the filters and permissions."""
    REFERRAL = "referral"
    """Served by another node (an enterprise node): see ``referral``."""
    NOT_HERE = "not_here"
    """The prefix belongs to no node this one serves or knows."""
    UNREACHABLE = "unreachable"
    """Recursion was asked and allowed, but the node serving the name did not answer usably."""


@dataclass(frozen=True, slots=True)
class Query:
    indexes: tuple[int, ...] = ()
    types: tuple[str, ...] = ()

    def matches(self, value: HandleValue) -> bool:
        """HANDLE.NET filter rules: index OR type; types case-insensitive, a
        type also matches its subtypes (``URL`` matches ``URL.mirror``)."""
        if not self.indexes and not self.types:
            return True
        if value.index in self.indexes:
            return True
        vtype = value.type.upper()
        for wanted in self.types:
            wanted = wanted.upper()
            base = wanted.rstrip(".")
            if vtype == wanted or vtype.startswith(base + "."):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Resolution:
    status: Status
    name: HandleName
    values: tuple[HandleValue, ...] = ()
    referral: tuple[HandleValue, ...] = ()
    referral_handle: str = ""
    prefix: Prefix | None = None
    enterprise: Enterprise | None = None
    recursed: bool = False
    """Answered by another node, asked on the client's behalf."""

    @property
    def outcome(self) -> str:
        """How this answer counts in ``idnode_resolutions_total``."""
        return _OUTCOMES[self.status]

    @property
    def account_prefix(self) -> str:
        """The enterprise prefix this resolution counts for in the daily statistics."""
        return self.prefix.prefix if self.prefix is not None else NO_PREFIX

    def ttl(self, now: float | None = None) -> float:
        """How long this answer may be reused."""
        if self.status in (Status.NOT_FOUND, Status.VALUES_NOT_FOUND, Status.UNREACHABLE):
            return NEGATIVE_TTL
        cap = MAX_TTL
        if self.recursed:
            cap = RECURSED_MAX_TTL
        elif self.status is Status.REFERRAL and self.prefix is None:
            cap = FOREIGN_REFERRAL_TTL  # no prefix of ours: another node's route
        values = self.values or self.referral
        if not values:
            return cap
        wall = time.time() if now is None else now
        ttls = [(v.ttl - wall) if v.ttl_type == TTL_ABSOLUTE else float(v.ttl) for v in values]
        return max(0.0, min(cap, *ttls))


_OUTCOMES = {
    Status.FOUND: "found",
    Status.NOT_FOUND: "not_found",
    Status.VALUES_NOT_FOUND: "not_found",
    Status.REFERRAL: "referral",
    Status.NOT_HERE: "refused",
    Status.UNREACHABLE: "error",
}


class RecursionBusy(Exception):
    """Too many recursive resolutions in progress: the client should try later."""


class Recursion(Protocol):
    """Resolves a referral at the site it names (the native front end's
    :class:`~resolver.handle.recursion.Recursor` does, over the native protocol);
    raises :class:`RecursionBusy` beyond its bound on concurrent walks."""

    async def resolve(
        self, referral: Resolution, query: Query, *, depth: int = 0
    ) -> Resolution: ...


class Resolver:
    """Resolves names against the registry, caching anonymous answers."""

    def __init__(
        self,
        registry: Registry,
        *,
        cache_entries: int = 100_000,
        read_engine: Reads | None = None,
        recursion: Recursion | None = None,
    ) -> None:
        self.registry = registry
        self.services = registry.services
        self.grammar = registry.services.grammar
        """How names are spelt and compared on this node."""
        self.recursion = recursion
        """Set when the node allows recursion; None: referrals are answered as such."""
        self.cache = AnswerCache(max_entries=cache_entries)
        TALLY.watch("answers", self.cache)
        self.db = read_engine or registry.engine
        self.directory = CachedDirectory()
        self.followers: list[Callable[[Sequence[ChangeEvent]], None]] = []
        """Others with caches to keep fresh; they see every change the resolver sees."""
        self.services.listeners.append(self.on_changes)

    # --- resolution ---------------------------------------------------------

    def parse(self, name: str | bytes) -> HandleName:
        """Names as resolvers accept them: ``P/S``, ``0.NA/P`` or a bare prefix."""
        try:
            return self.grammar.parse(name, bare_prefix=True)
        except GrammarError as exc:
            raise InvalidName(str(exc)) from None

    async def resolve(
        self,
        name: HandleName,
        query: Query = Query(),
        caller: Actor | None = None,
        *,
        recurse: bool = False,
        depth: int = 0,
    ) -> Resolution:
        """Resolve without the answer cache (authenticated callers, and tests).
        ``recurse``: answer a name served elsewhere by asking there, when the
        node allows recursion; ``depth``: recursion hops made before this node."""
        resolution = await self._resolve_here(name, query, caller)
        if recurse and self.recursion is not None and resolution.status is Status.REFERRAL:
            return await self.recursion.resolve(resolution, query, depth=depth)
        return resolution

    async def _resolve_here(
        self, name: HandleName, query: Query, caller: Actor | None
    ) -> Resolution:
        handles = self.registry.handles
        services = self.services
        await self.directory.load(services.read)

        async def look(conn: AsyncConnection) -> tuple[Located, ReadAccess]:
            located = await locate(
                conn,
                name,
                node_prefix=services.node_prefix,
                site=services.site,
                directory=self.directory,
                site_sm2_key=services.site_sm2_key,
            )
            access = NO_ACCESS
            if caller is not None and located.record is not None:
                access = await handles.read_access(conn, caller, located)
            return located, access

        located, access = await read_with(self.db, look)
        return self._verdict(located, query, access)

    async def answer(
        self,
        name: HandleName,
        query: Query,
        variant: Hashable,
        encode: Callable[[Resolution], T],
        *,
        recurse: bool = False,
    ) -> T:
        """The encoded anonymous answer: from cache, or resolved, encoded and cached."""
        # Answers echo the name as it was asked: the spelling is part of the slot.
        slot = (variant, name.text, query, recurse)
        return await self.answer_slot(name, query, slot, encode, recurse=recurse)

    async def answer_slot(
        self,
        name: HandleName,
        query: Query,
        slot: Hashable,
        encode: Callable[[Resolution], T],
        *,
        recurse: bool = False,
        depth: int = 0,
    ) -> T:
        """:meth:`answer` for a front end whose ``slot`` already tells apart every
        answer of this name (the native protocol keys on the request's bytes,
        which hold its recursion flag and count)."""
        cached = self.cache.get(name.key, slot)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        epoch, cleared = self.cache.epoch, self.cache.cleared
        resolution = await self.resolve(name, query, recurse=recurse, depth=depth)
        payload = encode(resolution)
        if resolution.recursed:
            # Seconds may pass while another node answers, with writes here to
            # other names meanwhile; only a change of routes makes it stale.
            self.cache.put(name.key, slot, payload, resolution.ttl(), cleared=cleared)
        else:
            self.cache.put(name.key, slot, payload, resolution.ttl(), epoch=epoch)
        return payload

    # --- the shape of the namespace (for front ends that walk it, like DNS) --

    async def prefix_tree_has(self, prefix: str) -> bool:
        """Whether ``prefix`` is the node's prefix, an allocated one, or above one."""
        await self.directory.load(self.services.read)
        known = [p.prefix_key for p in self.directory.prefixes()]
        known.append(self.services.node_prefix_key)
        return any(is_under(k, prefix) for k in known)

    async def names_at_dns_path(self, path: str) -> list[str]:
        """The identifiers whose DNS name has this path (see :mod:`registry.dnsnames`)."""
        return await read_with(self.db, lambda conn: store.names_at_dns_path(conn, path))

    async def has_dns_path_below(self, path: str) -> bool:
        """Whether some identifier's DNS name lies below the name with this path."""
        return await read_with(self.db, lambda conn: store.any_dns_path_below(conn, path))

    async def last_change(self) -> int:
        return await read_with(self.db, store.last_change)

    def _verdict(self, located: Located, query: Query, access: ReadAccess) -> Resolution:
        name = located.name
        if located.where is Where.NOT_HERE:
            return Resolution(Status.NOT_HERE, name)
        if located.where is Where.ELSEWHERE:
            return Resolution(
                Status.REFERRAL,
                name,
                referral=located.referral,
                referral_handle=located.referral_handle,
                prefix=located.prefix,
                enterprise=located.enterprise,
            )
        if located.record is None:
            return Resolution(
                Status.NOT_FOUND, name, prefix=located.prefix, enterprise=located.enterprise
            )
        visible = self._visible(located.record.name_key, located.record.values, query, access)
        status = Status.FOUND if visible else Status.VALUES_NOT_FOUND
        return Resolution(
            status, name, visible, prefix=located.prefix, enterprise=located.enterprise
        )

    def _visible(
        self, name_key: str, values: Iterable[HandleValue], query: Query, access: ReadAccess
    ) -> tuple[HandleValue, ...]:
        key = self.services.node_key
        result = []
        for value in values:
            if not query.matches(value):
                continue
            if is_sealed_value(value.data):
                # Only an HS_SECKEY in its own place opens, and only for those who may
                # read it; a sealed blob planted elsewhere stays shut.
                if not access.full or value.type.upper() != HS_SECKEY:
                    continue
                clear = open_value(key, value.data, name_key=name_key, index=value.index)
                if clear is None:
                    continue
                value = replace(value, data=clear)
            elif not access.may_read(value):
                continue
            result.append(value)
        return tuple(result)

    # --- invalidation -------------------------------------------------------

    def stale(self, events: Sequence[ChangeEvent]) -> set[str] | None:
        """The name keys whose answers these changes make stale; None: any answer."""
        keys: set[str] = set()
        for change in events:
            if change.event.startswith(("identifier.", "identity.")):
                try:
                    keys.add(self.parse(change.subject).key)
                except InvalidName:
                    return None
            elif not change.event.startswith("template."):  # templates change no value
                # Prefixes, routes, enterprises: they shape whole subtrees of answers.
                return None
        return keys

    def on_changes(self, events: Sequence[ChangeEvent]) -> None:
        """Evict what committed changes made stale (from this process or the feed)."""
        stale = self.stale(events)
        if stale is None:
            self.directory.forget()
            self.cache.clear()
        else:
            for key in stale:
                self.cache.invalidate(key)
        for follower in self.followers:
            follower(events)
