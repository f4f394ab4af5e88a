"""Where a name lives, and the record the node answers for it.

Stored identifiers answer as they are. Prefix handles (``0.NA/88.100``,
``0.NA/88.100.12``, or the bare ``88.100.12``) answer with the record the
node keeps for them, if any, completed from the prefix table: the
``HS_ADMIN`` of the node and of the enterprise, the ``HS_SITE`` where the
prefix is served, and descriptive values. The resolver and the
access checks of Handle writes read records through this one module.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from . import store
from .grammar import HandleName, ascii_upper, is_under, prefix_handle, prefix_parents
from .models import PERM_PUBLIC, Enterprise, HandleValue, Identifier, Prefix, SiteRoute
from .values import (
    ALL_ADMIN_PERMISSIONS,
    HS_ADMIN,
    HS_PUBKEY,
    HS_SITE,
    HS_SITE_PREFIX,
    INTERFACE_BOTH,
    INTERFACE_QUERY,
    PROTOCOL_HTTP,
    PROTOCOL_TCP,
    PROTOCOL_UDP,
    AdminRef,
    Interface,
    SiteInfo,
    SiteServer,
)

NODE_ADMIN_INDEX = 300
"""The node identity is ``300:0.NA/<node prefix>``; an enterprise's is ``300:0.NA/<its prefix>``."""
SITE_INDEX = 1
DESC_INDEX = 2
URL_INDEX = 3
ADMIN_INDEX = 100
OWNER_ADMIN_INDEX = 101
SITE_SM2_KEY_INDEX = 302
"""The node's SM2 site key (``site_sm2_key_file``) is the ``HS_PUBKEY`` here on
``0.NA/<node prefix>``, beside the HS_SITE, whose server key field holds the one key
CNRI clients check certified answers with (RSA or DSA)."""
PREFIX_RECORD_TTL = 3600
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


FOREIGN_REFRESH_SECONDS = 10.0


class Where(enum.Enum):
    HERE = "here"
    """A record this node answers for (it may be absent: ``record`` is None)."""
    ELSEWHERE = "elsewhere"
    """Served by an enterprise node: ``referral`` holds its ``HS_SITE``."""
    NOT_HERE = "not_here"
    """A prefix outside this node."""


@dataclass(frozen=True, slots=True)
class Located:
    name: HandleName
    where: Where
    record: Identifier | None = None
    prefix: Prefix | None = None
    enterprise: Enterprise | None = None
    referral: tuple[HandleValue, ...] = ()
    referral_handle: str = ""


def route_site(route: SiteRoute) -> SiteInfo:
    """The ``HS_SITE`` of an enterprise node, from its SNMS routing configuration."""
    interfaces = []
    if route.tcp_port:
        interfaces.append(Interface(INTERFACE_BOTH, PROTOCOL_TCP, route.tcp_port))
    if route.udp_port:
        interfaces.append(Interface(INTERFACE_QUERY, PROTOCOL_UDP, route.udp_port))
    if route.http_port:
        interfaces.append(Interface(INTERFACE_BOTH, PROTOCOL_HTTP, route.http_port))
    server = SiteServer(1, SiteServer.pack_address(route.ip), b"", tuple(interfaces))
    return SiteInfo(servers=(server,))


def _value(index: int, type_: str, data: bytes, now: int) -> HandleValue:
    return HandleValue(
        index=index,
        type=type_,
        data=data,
        timestamp=now,
        ttl=PREFIX_RECORD_TTL,
        permissions=PERM_PUBLIC,
    )


def _admin(index: int, handle: str, now: int) -> HandleValue:
    return _value(
        index, HS_ADMIN, AdminRef(handle, NODE_ADMIN_INDEX, ALL_ADMIN_PERMISSIONS).to_bytes(), now
    )


NODE_KEPT_INDEXES = frozenset({SITE_INDEX, DESC_INDEX, URL_INDEX, ADMIN_INDEX, OWNER_ADMIN_INDEX})
"""Indexes of a prefix record the node fills in from the prefix table; nobody
writes them through the Handle API (a stored value there would shadow the
node's own HS_ADMIN or a changed route)."""


def _merge(
    stored: Identifier | None, synthesized: list[HandleValue], name: HandleName, since: datetime
) -> Identifier:
    """The node's values at its indexes, stored ones (HS_SECKEY...) at the others."""
    values = {v.index: v for v in stored.values} if stored is not None else {}
    values.update({v.index: v for v in synthesized})
    return Identifier(
        id=stored.id if stored else 0,
        name=stored.name if stored else prefix_handle(name.handled_prefix),
        name_key=name.key,
        prefix_id=stored.prefix_id if stored else None,
        template_id=stored.template_id if stored else None,
        revision=stored.revision if stored else 0,
        created_at=stored.created_at if stored else since,
        updated_at=stored.updated_at if stored else since,
        values=tuple(values[i] for i in sorted(values)),
    )


class Directory(Protocol):
    """Where enterprise prefixes and their enterprises are looked up."""

    async def prefix(self, key: str) -> Prefix | None: ...

    async def enterprise(self, enterprise_id: int) -> Enterprise | None: ...

    async def foreign(self, key: str) -> store.ForeignRoute | None: ...


@dataclass(frozen=True, slots=True)
class StoreDirectory:
    """Straight from the database, inside the caller's transaction."""

    conn: AsyncConnection

    async def prefix(self, key: str) -> Prefix | None:
        return await store.get_prefix(self.conn, key)

    async def enterprise(self, enterprise_id: int) -> Enterprise | None:
        return await store.get_enterprise(self.conn, enterprise_id)

    async def foreign(self, key: str) -> store.ForeignRoute | None:
        return await store.get_foreign_route(self.conn, key)


class CachedDirectory:
    """All prefixes, enterprises and other nodes' routes in memory (they are few
    and change rarely): :meth:`forget` on any change to them, and the next
    lookup reloads. Routes are written by the sync worker, perhaps in another
    process and without a change event, so the whole is also reloaded when it
    is older than :data:`FOREIGN_REFRESH_SECONDS`."""

    def __init__(self) -> None:
        self._prefixes: dict[str, Prefix] = {}
        self._enterprises: dict[int, Enterprise] = {}
        self._foreign: dict[str, store.ForeignRoute] = {}
        self._generation = 0
        self._loaded: int | None = None
        self._loaded_at = 0.0
        self._loading = asyncio.Lock()

    def forget(self) -> None:
        self._generation += 1

    async def load(
        self, connect: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]
    ) -> None:
        """Make sure the directory reflects every change announced so far.

        ``connect`` opens a transaction of its own (not from the lookup's pool,
        so a burst of first lookups cannot exhaust it waiting for each other).
        """
        if self._fresh():
            return
        async with self._loading:
            generation = self._generation
            if self._fresh():
                return
            started = time.monotonic()
            async with connect() as conn:
                prefixes = await store.all_prefixes(conn)
                enterprises = await store.all_enterprises(conn)
                foreign = await store.foreign_routes(conn)
            self._prefixes = {p.prefix_key: p for p in prefixes}
            self._enterprises = {e.id: e for e in enterprises}
            self._foreign = {ascii_upper(r.prefix): r for r in foreign}
            # A change announced while loading leaves it stale: reload next time.
            self._loaded, self._loaded_at = generation, started

    def _fresh(self) -> bool:
        age = time.monotonic() - self._loaded_at
        return self._loaded == self._generation and age < FOREIGN_REFRESH_SECONDS

    async def prefix(self, key: str) -> Prefix | None:
        return self._prefixes.get(key)

    def prefixes(self) -> list[Prefix]:
        """Every prefix as of the last :meth:`load`."""
        return list(self._prefixes.values())

    async def enterprise(self, enterprise_id: int) -> Enterprise | None:
        return self._enterprises.get(enterprise_id)

    async def foreign(self, key: str) -> store.ForeignRoute | None:
        return self._foreign.get(key)


async def _foreign(directory: Directory, name: HandleName, served: str) -> Located:
    """Another node's name: a referral to where the top-level node's route table
    says it is served, or "not here" when no route is known."""
    for candidate in prefix_parents(served):
        route = await directory.foreign(ascii_upper(candidate))
        if route is not None:
            site_type = HS_SITE_PREFIX if name.is_prefix_handle else HS_SITE
            return Located(
                name,
                Where.ELSEWHERE,
                referral=(_value(SITE_INDEX, site_type, route.site, 0),),
                referral_handle=prefix_handle(route.prefix),
            )
    return Located(name, Where.NOT_HERE)


async def _longest_known_prefix(directory: Directory, prefix: str) -> Prefix | None:
    for candidate in prefix_parents(prefix):
        found = await directory.prefix(ascii_upper(candidate))
        if found is not None:
            return found
    return None


async def locate(
    conn: AsyncConnection,
    name: HandleName,
    *,
    node_prefix: str,
    site: SiteInfo | None,
    directory: Directory | None = None,
    site_sm2_key: bytes = b"",
) -> Located:
    """Decide where ``name`` lives and load its record if it lives here
    (``site_sm2_key``: the HS_PUBKEY data of the node's SM2 site key, if any)."""
    directory = directory or StoreDirectory(conn)
    served = name.handled_prefix
    if not is_under(served, node_prefix):
        return await _foreign(directory, name, served)
    now = 0
    if ascii_upper(served) == ascii_upper(node_prefix):
        stored = await store.get_identifier(conn, name.key) if name.is_prefix_handle else None
        if not name.is_prefix_handle:
            # A handle directly under the node prefix (88.100/x) is a stored record.
            return Located(name, Where.HERE, await store.get_identifier(conn, name.key))
        synthesized = [
            _value(DESC_INDEX, "DESC", f"idnode secondary node {node_prefix}".encode(), now)
        ]
        if site is not None:
            synthesized.append(_value(SITE_INDEX, HS_SITE, site.to_bytes(), now))
        if site_sm2_key:
            synthesized.append(_value(SITE_SM2_KEY_INDEX, HS_PUBKEY, site_sm2_key, now))
        return Located(name, Where.HERE, _merge(stored, synthesized, name, EPOCH))
    prefix = await _longest_known_prefix(directory, served)
    if prefix is None:
        return Located(name, Where.HERE)  # under our prefix, but nobody's: not found
    enterprise = await directory.enterprise(prefix.enterprise_id)
    exact = ascii_upper(served) == prefix.prefix_key
    if not prefix.hosted and prefix.route is not None and not (exact and name.is_prefix_handle):
        # A derived prefix handle gets a prefix referral (HS_SITE.PREFIX), a handle a
        # service referral (HS_SITE), as the Global Handle Registry answers them.
        site_type = HS_SITE_PREFIX if name.is_prefix_handle else HS_SITE
        site_value = _value(SITE_INDEX, site_type, route_site(prefix.route).to_bytes(), now)
        return Located(
            name,
            Where.ELSEWHERE,
            prefix=prefix,
            enterprise=enterprise,
            referral=(site_value,),
            referral_handle=prefix_handle(prefix.prefix),
        )
    if name.is_prefix_handle and exact:
        synthesized = [
            _admin(ADMIN_INDEX, prefix_handle(node_prefix), now),
            _admin(OWNER_ADMIN_INDEX, prefix_handle(prefix.prefix), now),
        ]
        if enterprise is not None:
            synthesized.append(_value(DESC_INDEX, "DESC", enterprise.org_name.encode(), now))
            if enterprise.website:
                synthesized.append(_value(URL_INDEX, "URL", enterprise.website.encode(), now))
        if prefix.route is not None and not prefix.hosted:
            synthesized.append(
                _value(SITE_INDEX, HS_SITE, route_site(prefix.route).to_bytes(), now)
            )
        elif site is not None and prefix.hosted:
            synthesized.append(_value(SITE_INDEX, HS_SITE, site.to_bytes(), now))
        stored = await store.get_identifier(conn, name.key)
        return Located(
            name,
            Where.HERE,
            _merge(stored, synthesized, name, prefix.created_at),
            prefix=prefix,
            enterprise=enterprise,
        )
    record = await store.get_identifier(conn, name.key)
    return Located(name, Where.HERE, record, prefix=prefix, enterprise=enterprise)
