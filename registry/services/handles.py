"""Handle-protocol operations on records: the semantics HANDLE.NET gives them.

Create (with or without overwrite), add or modify values, remove values,
delete, list — each checked against the caller's ``HS_ADMIN`` rights — plus
``HS_SECKEY`` authentication of Handle identities. The REST API and the
native protocol's front end both use it, and only translate.
"""

from __future__ import annotations

import hmac
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from .. import store
from ..errors import (
    AlreadyExists,
    Forbidden,
    InvalidName,
    InvalidValue,
    NotFound,
    NotServedHere,
    Unauthenticated,
    ValueAlreadyExists,
    ValuesNotFound,
)
from ..grammar import (
    GrammarError,
    HandleName,
    LimitExceeded,
    check_data,
    check_index,
    check_type,
    check_value_count,
    normalize_prefix,
)
from ..models import TEMPLATE_VERSION_INDEX, HandleValue, Identifier, ProxyState, Template
from ..permissions import (
    FULL_ACCESS,
    NO_ACCESS,
    HandleIdentity,
    ReadAccess,
    identity_rights,
    principal_rights,
    required_bits,
)
from ..records import NODE_ADMIN_INDEX, NODE_KEPT_INDEXES, Located, Where, locate
from ..secrets import is_sealed_value, open_value, seal_value
from ..templates import TemplateError, check_handle_values
from ..values import (
    ADD_HANDLE,
    DELETE_HANDLE,
    HS_ADMIN,
    HS_SECKEY,
    HS_VLIST,
    LIST_HANDLES,
    READ_VALUE,
    SITE_TYPES,
    AdminRef,
    SiteInfo,
    ValueFormatError,
    decode_vlist,
)
from .base import Actor, Change, Services
from .grants import Grants
from .identifiers import write_record

MAX_LIST = 100_000
"""A list without paging returns at most this many handles."""
_AUTH_FAILED = "Authentication failed"


@dataclass(frozen=True, slots=True)
class WriteResult:
    handle: str
    overwritten: bool
    """True when existing data was replaced (REST answers 200 instead of 201)."""


@dataclass(frozen=True, slots=True)
class HandleList:
    prefix: str
    total: int
    handles: list[str]


def check_values(values: Sequence[HandleValue]) -> None:
    """Structural checks every stored value passes, whatever path wrote it."""
    try:
        check_value_count(len(values))
        seen: set[int] = set()
        for value in values:
            check_index(value.index)
            if value.index in seen:
                raise ValueAlreadyExists(f"index {value.index} appears twice")
            if is_sealed_value(value.data):
                raise InvalidValue(f"value {value.index}: data may not look like a sealed secret")
            seen.add(value.index)
            check_type(value.type)
            check_data(value.data)
            if value.ttl_type not in (0, 1) or not 0 <= value.ttl < 2**32:
                raise InvalidValue(f"value {value.index}: invalid TTL")
            if not 0 <= value.permissions <= 0x0F:
                raise InvalidValue(f"value {value.index}: invalid permissions")
            if len(value.references) > 256:
                raise InvalidValue(f"value {value.index}: too many references")
            _check_layout(value)
    except LimitExceeded as exc:
        raise InvalidValue(str(exc)) from None


def _check_layout(value: HandleValue) -> None:
    kind = value.type.upper()
    try:
        if kind == HS_ADMIN:
            AdminRef.from_bytes(value.data)
        elif kind == HS_VLIST:
            decode_vlist(value.data)
        elif kind in SITE_TYPES:
            SiteInfo.from_bytes(value.data)
    except ValueFormatError as exc:
        raise InvalidValue(f"value {value.index}: {exc}") from None


class Handles:
    def __init__(self, services: Services, grants: Grants | None = None) -> None:
        self.s = services
        self.grants = grants or Grants(services)
        self._compare_key = os.urandom(32)
        self._decoy = HandleValue(
            0, HS_SECKEY, seal_value(services.node_key, os.urandom(16), name_key="decoy", index=0)
        )

    # --- where and who ------------------------------------------------------

    def parse(self, name: str) -> HandleName:
        try:
            return self.s.grammar.parse(name, bare_prefix=True)
        except GrammarError as exc:
            raise InvalidName(str(exc)) from None

    async def locate(self, conn: AsyncConnection, name: HandleName) -> Located:
        return await locate(
            conn,
            name,
            node_prefix=self.s.node_prefix,
            site=self.s.site,
            site_sm2_key=self.s.site_sm2_key,
        )

    async def rights(self, conn: AsyncConnection, actor: Actor, located: Located) -> int:
        """The HS_ADMIN permission bits ``actor`` holds over ``located``'s record."""
        if actor.principal is not None:
            scope = located.prefix.prefix_key if located.prefix else self.s.node_prefix_key
            return principal_rights(actor.principal, scope)
        if actor.identity is None:
            return 0

        async def load(key: str) -> tuple[HandleValue, ...] | None:
            found = await self.locate(conn, self.parse(key))
            return found.record.values if found.record else None

        sources = [located.record.values] if located.record else []
        prefix_name = self.parse(f"0.NA/{located.name.handled_prefix}")
        if prefix_name.key != located.name.key:
            prefix_record = (await self.locate(conn, prefix_name)).record
            if prefix_record is not None:
                sources.append(prefix_record.values)
        granted = 0
        for values in sources:
            granted |= await identity_rights(actor.identity, values, self.s.grammar, load)
        return granted

    async def may_read_restricted(
        self, conn: AsyncConnection, actor: Actor, located: Located
    ) -> bool:
        return not actor.anonymous and bool(await self.rights(conn, actor, located) & READ_VALUE)

    async def read_access(
        self, conn: AsyncConnection, actor: Actor, located: Located
    ) -> ReadAccess:
        """What ``actor`` may read of ``located``'s non-public values: everything as
        one of its administrators, else what grants to its enterprise allow."""
        if actor.anonymous or located.record is None:
            return NO_ACCESS
        if await self.may_read_restricted(conn, actor, located):
            return FULL_ACCESS
        return await self.grants.read_access(conn, actor, located)

    async def authenticate(
        self, handle: str, index: int, secret: bytes, *, remote: str = ""
    ) -> HandleIdentity:
        """Prove ``index:handle`` by the ``HS_SECKEY`` stored at that index (0: any)."""
        try:
            name = self.s.grammar.parse(handle, bare_prefix=True)
        except GrammarError:
            self.s.auth_failed("handle_secret")
            raise Unauthenticated(_AUTH_FAILED) from None
        account = f"{index}:{name.key}"
        self.s.refuse_if_locked(account, remote, "handle_secret")
        async with self.s.read() as conn:
            record = await store.get_identifier(conn, name.key)
        candidates = [
            v
            for v in (record.values if record else ())
            if v.type.upper() == HS_SECKEY and index in (0, v.index)
        ]
        # The same work whether or not there is a secret to check (no timing oracle),
        # and MACs compared rather than secrets (no length oracle).
        offered = hmac.digest(self._compare_key, secret, "sha256")
        matched = False
        for value in candidates or [self._decoy]:
            clear = open_value(self.s.node_key, value.data, name_key=name.key, index=value.index)
            expected = hmac.digest(self._compare_key, clear or b"", "sha256")
            matched |= hmac.compare_digest(offered, expected) and bool(candidates)
        if not matched:
            self.s.auth_failed("handle_secret")
            self.s.lockout.failed(account, remote)
            raise Unauthenticated(_AUTH_FAILED)
        self.s.lockout.succeeded(account)
        return HandleIdentity(handle=handle, index=index, key=name.key)

    async def _writable(self, change: Change, name: HandleName) -> Located:
        located = await self.locate(change.conn, name)
        if located.where is Where.NOT_HERE:
            raise NotServedHere(f"prefix {name.handled_prefix} is not served by this node")
        if located.where is Where.ELSEWHERE:
            raise NotServedHere(
                f"prefix {located.prefix.prefix if located.prefix else name.handled_prefix} "
                "is served by its enterprise node"
            )
        if not name.is_prefix_handle and located.prefix is not None and not located.prefix.writable:
            raise Forbidden(f"prefix {located.prefix.prefix} is not enabled and hosted here")
        return located

    @staticmethod
    def _check_kept(name: HandleName, indexes: Iterable[int]) -> None:
        if not name.is_prefix_handle:
            return
        for index in indexes:
            if index in NODE_KEPT_INDEXES:
                raise InvalidValue(
                    f"index {index} of a prefix record is kept by the node "
                    f"(indexes {sorted(NODE_KEPT_INDEXES)} are not writable)"
                )

    async def _require(self, change: Change, located: Located, bits: int) -> None:
        if change.actor.anonymous:
            raise Unauthenticated("authentication required")
        held = await self.rights(change.conn, change.actor, located)
        if held & bits != bits:
            raise Forbidden(f"insufficient permissions on {located.name.text}")

    def _stamp(
        self,
        change: Change,
        name: HandleName,
        values: Sequence[HandleValue],
        previous: dict[int, HandleValue],
    ) -> list[HandleValue]:
        """Server-side timestamps (kept for unchanged values) and sealed secrets."""
        now = int(change.now.timestamp())
        result = []
        for value in values:
            old = previous.get(value.index)
            if old is not None and (old.same_content(value) or self._same_secret(name, old, value)):
                result.append(old)
                continue
            if value.type.upper() == HS_SECKEY:
                sealed = seal_value(
                    self.s.node_key, value.data, name_key=name.key, index=value.index
                )
                value = replace(value, data=sealed)
            result.append(replace(value, timestamp=now))
        return sorted(result, key=lambda v: v.index)

    def _same_secret(self, name: HandleName, old: HandleValue, new: HandleValue) -> bool:
        """A rewritten HS_SECKEY equal to the stored (sealed) one is no change."""
        if old.type.upper() != HS_SECKEY or new.type != old.type:
            return False
        clear = open_value(self.s.node_key, old.data, name_key=name.key, index=old.index)
        return clear is not None and replace(old, data=clear).same_content(new)

    async def _template(self, change: Change, record: Identifier | None) -> Template | None:
        if record is None or record.template_id is None:
            return None
        return await store.get_template_by_id(change.conn, record.template_id)

    def _check_template(self, template: Template | None, values: Sequence[HandleValue]) -> None:
        if template is None:
            return
        try:
            check_handle_values(template.items, template.version, TEMPLATE_VERSION_INDEX, values)
        except TemplateError as exc:
            raise InvalidValue(str(exc)) from None

    async def _save(
        self,
        change: Change,
        located: Located,
        values: list[HandleValue],
        template: Template | None,
        action: str,
    ) -> None:
        name = located.name
        stored = await store.get_identifier(change.conn, name.key)
        values = await self.s.values_to_store(change, stored.name if stored else name.text, values)
        prefix_id = None
        if stored is None and located.prefix is not None and not name.is_prefix_handle:
            # A new identifier under an enterprise's prefix counts against its quota.
            prefix_id = located.prefix.id
            await self.s.require_identifier_room(change.conn, located.prefix.enterprise_id)
        await write_record(
            self.s,
            change,
            name,
            stored,
            values,
            prefix_id=prefix_id,
            template_id=template.id if template else None,
            template_version=template.version if template else None,
            action=action,
        )

    # --- operations ---------------------------------------------------------

    async def create(
        self,
        actor: Actor,
        name_text: str,
        values: Sequence[HandleValue],
        *,
        overwrite: bool,
        mint_suffix: bool = False,
    ) -> WriteResult:
        """Create a record, or replace it whole when ``overwrite`` (op 100)."""
        if mint_suffix:
            name_text = f"{name_text}{uuid.uuid4()}"
        name = self.parse(name_text)
        check_values(values)
        self._check_kept(name, (v.index for v in values))
        async with self.s.change(actor) as change:
            located = await self._writable(change, name)
            existing = await store.get_identifier(change.conn, name.key)  # stored values only
            if existing is not None and not overwrite:
                raise AlreadyExists(f"handle {name.text} already exists")
            under_node = name.handled_prefix.upper() == self.s.node_prefix_key
            if located.prefix is None and not name.is_prefix_handle and not under_node:
                raise NotFound(f"prefix {name.handled_prefix} is not allocated")
            if existing is None:
                needed = ADD_HANDLE
            else:
                # Replacing a record is adding, modifying and removing values: each
                # needs its own right, and HS_ADMIN values need the admin rights.
                current = {v.index: v for v in existing.values}
                kept = {v.index for v in values}
                needed = required_bits(current, values) | required_bits(
                    current, [], removed=[i for i in current if i not in kept]
                )
            await self._require(change, located, needed)
            template = await self._template(change, existing)
            previous = {v.index: v for v in existing.values} if existing else {}
            stamped = self._stamp(change, name, values, previous)
            self._check_template(template, stamped)
            await self._save(
                change,
                located,
                stamped,
                template,
                "identifier.updated" if existing else "identifier.created",
            )
        return WriteResult(name.text, overwritten=existing is not None)

    async def set_values(
        self, actor: Actor, name_text: str, values: Sequence[HandleValue], *, overwrite: bool
    ) -> WriteResult:
        """Add values, or replace them at their indexes when ``overwrite`` (op 102/104)."""
        name = self.parse(name_text)
        check_values(values)
        self._check_kept(name, (v.index for v in values))
        async with self.s.change(actor) as change:
            located = await self._writable(change, name)
            record = located.record
            if record is None:
                raise NotFound(f"handle {name.text} not found")
            current = {v.index: v for v in record.values}  # what clients see
            stored = await store.get_identifier(change.conn, name.key)
            # Values the node fills in (a prefix record's HS_SITE, say) are never stored.
            stored_values = {v.index: v for v in stored.values} if stored else {}
            replaced = [v for v in values if v.index in current]
            if replaced and not overwrite:
                raise ValueAlreadyExists(
                    f"value {replaced[0].index} already exists; set overwrite=true"
                )
            await self._require(change, located, required_bits(current, values))
            merged = {**stored_values, **{v.index: v for v in values}}
            stamped = self._stamp(change, name, list(merged.values()), stored_values)
            self._check_value_total(stamped)
            template = await self._template(change, stored)
            self._check_template(template, stamped)
            await self._save(change, located, stamped, template, "identifier.updated")
        return WriteResult(name.text, overwritten=bool(replaced))

    async def modify_values(
        self, actor: Actor, name_text: str, values: Sequence[HandleValue]
    ) -> WriteResult:
        """Replace existing values (op 104): every index must already be there."""
        name = self.parse(name_text)
        async with self.s.read() as conn:
            located = await self.locate(conn, name)
        present = {v.index for v in located.record.values} if located.record else set()
        missing = [v.index for v in values if v.index not in present]
        if located.record is not None and missing:
            raise ValuesNotFound(f"no value at index {missing[0]} to modify")
        return await self.set_values(actor, name_text, values, overwrite=True)

    async def remove_values(self, actor: Actor, name_text: str, indexes: Sequence[int]) -> None:
        """Remove the values at ``indexes`` (op 103)."""
        name = self.parse(name_text)
        self._check_kept(name, indexes)
        async with self.s.change(actor) as change:
            located = await self._writable(change, name)
            record = located.record
            if record is None or not record.id:
                raise NotFound(f"handle {name.text} not found")
            current = {v.index: v for v in record.values}
            stored = await store.get_identifier(change.conn, name.key)
            assert stored is not None
            stored_indexes = {v.index for v in stored.values}
            missing = [i for i in indexes if i not in stored_indexes]
            if missing:
                raise ValuesNotFound(f"no value at index {missing[0]}")
            await self._require(change, located, required_bits(current, [], removed=indexes))
            kept = [v for v in stored.values if v.index not in set(indexes)]
            template = await self._template(change, stored)
            self._check_template(template, kept)
            await self._save(
                change, replace(located, record=stored), kept, template, "identifier.updated"
            )

    async def delete(self, actor: Actor, name_text: str) -> None:
        """Delete a record (op 101)."""
        name = self.parse(name_text)
        async with self.s.change(actor) as change:
            located = await self._writable(change, name)
            stored = await store.get_identifier(change.conn, name.key)
            if stored is None:
                raise NotFound(f"handle {name.text} not found")
            await self._require(change, located, DELETE_HANDLE)
            await store.delete_identifier(change.conn, stored.id)
            await change.record("identifier.deleted", stored.name, {"handle": stored.name})

    async def list_handles(
        self, actor: Actor, prefix_text: str, *, offset: int, limit: int | None
    ) -> HandleList:
        """Names under an enterprise prefix (op 105); ``limit`` 0 counts only."""
        text = prefix_text if prefix_text.upper().startswith("0.NA/") else f"0.NA/{prefix_text}"
        name = self.parse(text)
        async with self.s.read() as conn:
            located = await self.locate(conn, name)
            if located.where is Where.NOT_HERE:
                raise NotServedHere(f"prefix {name.handled_prefix} is not served by this node")
            if actor.anonymous:
                raise Unauthenticated("authentication required")
            if not await self.rights(conn, actor, located) & LIST_HANDLES:
                raise Forbidden(f"insufficient permissions to list {name.handled_prefix}")
            size = MAX_LIST if limit is None else min(limit, MAX_LIST)
            prefix = located.prefix
            wanted = name.handled_prefix.upper()
            if wanted == self.s.node_prefix_key:
                # Records directly under the node prefix (88.100/x) belong to no enterprise.
                total, names = await store.node_level_names(conn, wanted, offset=offset, limit=size)
            elif prefix is not None and prefix.prefix_key == wanted:
                total = await store.count_identifiers(conn, prefix.id)
                names = await store.identifier_names(conn, prefix.id, offset=offset, limit=size)
            else:
                total, names = 0, []
        return HandleList(name.text, total, names)

    async def reverse_lookup(
        self,
        actor: Actor,
        conditions: Sequence[tuple[str, str, bool]],
        *,
        prefix: str | None = None,
        offset: int,
        limit: int,
    ) -> list[str]:
        """Handles whose values match every condition. Node administrators search
        all values; everyone else public ones, and the restricted ones it may read:
        of the prefixes it administers, and those granted to its enterprise."""
        if actor.anonymous:
            raise Unauthenticated("authentication required")
        if not conditions:
            return []
        admin = self.is_node_admin(actor)
        async with self.s.read() as conn:
            prefix_ids = None
            if prefix:
                found = await store.get_prefix(conn, prefix.strip().upper())
                prefix_ids = [found.id] if found else []
            scopes = [] if admin else await self.grants.search_scopes(conn, actor)
            return await store.reverse_lookup(
                conn,
                conditions,
                public_only=not admin,
                prefix_ids=prefix_ids,
                offset=offset,
                limit=limit,
                scopes=scopes,
            )

    @property
    def _node_identity_key(self) -> str:
        return f"0.NA/{self.s.node_prefix_key}"

    def is_node_admin(self, actor: Actor) -> bool:
        """A node administrator: a registry admin, or the node's own Handle identity,
        ``300:0.NA/<node prefix>``. Only that index: the record's other keys (the SM2
        site key, the issuer's key) are the node's machine keys, not administrators."""
        if actor.principal is not None:
            return actor.principal.is_admin
        identity = actor.identity
        return (
            identity is not None
            and identity.key == self._node_identity_key
            and identity.index == NODE_ADMIN_INDEX
        )

    async def home(self, actor: Actor, prefix_text: str, *, homed: bool) -> None:
        """Ops 300/301: start or stop serving an enterprise prefix's records here.

        Homing is hosting (SNMS ``proxyState`` 4); unhoming returns the prefix to
        "not hosted" and is refused while records live under it.
        """
        if not self.is_node_admin(actor):
            raise Forbidden("homing prefixes is for node administrators")
        text = prefix_text[5:] if prefix_text.upper().startswith("0.NA/") else prefix_text
        try:
            key = normalize_prefix(text)
        except GrammarError as exc:
            raise InvalidName(str(exc)) from None
        async with self.s.change(actor) as change:
            prefix = await store.get_prefix(change.conn, key)
            if prefix is None:
                raise NotFound(f"prefix {text} is not allocated on this node")
            if homed:
                await store.update_prefix(
                    change.conn,
                    prefix.id,
                    proxy_state=int(ProxyState.HOSTED),
                    proxy_server_id=self.s.proxy_server_id,
                    site_ip_type=None,
                    site_ip=None,
                    site_tcp_port=None,
                    site_udp_port=None,
                    site_http_port=None,
                )
            else:
                if await store.count_identifiers(change.conn, prefix.id):
                    raise Forbidden(f"records live under {prefix.prefix}; delete them first")
                await store.update_prefix(
                    change.conn, prefix.id, proxy_state=int(ProxyState.NOT_HOSTED)
                )
            await change.record(
                "prefix.configured",
                prefix.prefix,
                {"prefix": prefix.prefix, "hosted": homed, "via": "native"},
            )

    async def homed_prefixes(self) -> list[str]:
        """The node prefix and the enterprise prefixes whose records live here."""
        async with self.s.read() as conn:
            hosted = await store.hosted_prefixes(conn)
        return [self.s.node_prefix, *hosted]

    def _check_value_total(self, values: Sequence[HandleValue]) -> None:
        try:
            check_value_count(len(values))
        except LimitExceeded as exc:
            raise InvalidValue(str(exc)) from None
