"""Data permissions (数据权限 / 授权企业): an enterprise lets named others read
restricted data.

A value is public or restricted (Handle permission bits, set from the SNMS
``auth`` of the value or its template item's default). Restricted values are
read by the record's administrators (:meth:`Handles.rights`: node
administrators, the owning enterprise, ``HS_ADMIN`` identities). A *grant*
adds one more reader: the owner of prefix P (or a node administrator) grants
enterprise E the restricted values of P's records — of one template version,
or of every template — and of some value types only, or of every data value
(a supplier lets its customer read batch data). ``HS_*`` values (secret keys,
administrator lists) are never granted.

E's callers are its users (SNMS token, access key) and its Handle identities:
the prefix records of its prefixes (``300:0.NA/<E's prefix>``), which only E
and the node administer. Every decision reads the grants table (answers for
authenticated callers are never cached), so a revocation holds at the next
request; every grant and revocation is in the audit log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from .. import store
from ..errors import Forbidden, InvalidRequest, NotFound
from ..grammar import GrammarError, normalize_prefix
from ..models import DataGrant, Enterprise, EnterpriseStatus, Prefix, Principal
from ..permissions import NO_ACCESS, ReadAccess
from ..records import NODE_ADMIN_INDEX, Located
from ..templates import MAX_VERSION_CHARS
from .base import Actor, Services

MAX_ITEMS = 64
MAX_ITEM_CHARS = 128


@dataclass(frozen=True, slots=True)
class GrantSpec:
    """A grant as asked for: the granting prefix, the grantee (by one of its
    prefixes or by its enterprise id), and the scope."""

    prefix: str
    grantee_prefix: str | None = None
    grantee_enterprise_id: int | None = None
    template_version: str = ""
    """Only records of this template version; empty: of every template."""
    items: tuple[str, ...] = ()
    """Only values of these types (template items' ``idType``); empty: every data value."""


@dataclass(frozen=True, slots=True)
class GrantView:
    grant: DataGrant
    grantee_prefixes: tuple[str, ...]


def _prefix_key(text: str, what: str) -> str:
    try:
        return normalize_prefix(text.strip())
    except GrammarError as exc:
        raise InvalidRequest(f"{what}格式错误 ({exc})") from None


def check_items(items: Sequence[str]) -> tuple[str, ...]:
    """Item types, each once (case-insensitively), none of the Handle system's own."""
    if len(items) > MAX_ITEMS:
        raise InvalidRequest(f"items 最多{MAX_ITEMS}项 (at most {MAX_ITEMS} item types)")
    kept: dict[str, str] = {}
    for item in items:
        if not item.strip() or len(item) > MAX_ITEM_CHARS:
            raise InvalidRequest(f"items 每项长度应为1~{MAX_ITEM_CHARS} (item type length)")
        if item.upper().startswith("HS_"):
            raise InvalidRequest(
                f"{item}: HS_* 值不能授权 (Handle system values are never granted)"
            )
        kept.setdefault(item.upper(), item)
    return tuple(kept.values())


class Grants:
    def __init__(self, services: Services) -> None:
        self.s = services

    # --- administration -------------------------------------------------------

    async def _managed_prefix(
        self, conn: AsyncConnection, principal: Principal, text: str
    ) -> Prefix:
        prefix = await store.get_prefix(conn, _prefix_key(text, "前缀"))
        if prefix is None:
            raise NotFound(f"前缀{text}不存在 (no such prefix)")
        if not principal.may_manage(prefix.prefix_key):
            raise Forbidden(f"没有权限，前缀{prefix.prefix}不属于本企业 (not your prefix)")
        return prefix

    async def _grantee(self, conn: AsyncConnection, spec: GrantSpec) -> Enterprise:
        if spec.grantee_prefix is None and spec.grantee_enterprise_id is None:
            raise InvalidRequest("缺少必要的请求参数: granteePrefix 或 granteeEntId")
        enterprise_id = spec.grantee_enterprise_id
        if spec.grantee_prefix is not None:
            found = await store.get_prefix(conn, _prefix_key(spec.grantee_prefix, "granteePrefix"))
            if found is None:
                raise NotFound(
                    f"被授权企业前缀{spec.grantee_prefix}不存在 (no enterprise has that prefix)"
                )
            if enterprise_id is not None and enterprise_id != found.enterprise_id:
                raise InvalidRequest("granteePrefix 与 granteeEntId 不是同一企业 (they disagree)")
            enterprise_id = found.enterprise_id
        assert enterprise_id is not None
        enterprise = await store.get_enterprise(conn, enterprise_id)
        if enterprise is None:
            raise NotFound(f"被授权企业{enterprise_id}不存在 (no such enterprise)")
        return enterprise

    async def _views(self, conn: AsyncConnection, grants: Sequence[DataGrant]) -> list[GrantView]:
        prefixes: dict[int, tuple[str, ...]] = {}
        for grant in grants:
            if grant.grantee_enterprise_id not in prefixes:
                owned = await store.prefixes_of_enterprise(conn, grant.grantee_enterprise_id)
                prefixes[grant.grantee_enterprise_id] = tuple(p.prefix for p in owned)
        return [GrantView(g, prefixes[g.grantee_enterprise_id]) for g in grants]

    async def list_grants(
        self, actor: Actor, *, prefix: str | None = None, received: bool = False
    ) -> list[GrantView]:
        """Grants on ``prefix`` (its owner's or an administrator's view); with
        ``received``, those given to the caller's enterprise; else every grant
        the caller gave or received (an administrator: every grant)."""
        principal = actor.require()
        async with self.s.read() as conn:
            if prefix is not None:
                found = await self._managed_prefix(conn, principal, prefix)
                grants = await store.grants(conn, prefix_ids=[found.id])
            elif received:
                enterprise = principal.enterprise_id
                grants = [] if enterprise is None else await store.grants_to(conn, enterprise)
            elif principal.is_admin:
                grants = await store.grants(conn)
            else:
                owned = [
                    p.id
                    for p in await store.prefixes_of_enterprise(conn, principal.enterprise_id or 0)
                ]
                grants = await store.grants(
                    conn, prefix_ids=owned, grantee_enterprise_id=principal.enterprise_id or 0
                )
            return await self._views(conn, grants)

    async def grant(self, actor: Actor, spec: GrantSpec) -> tuple[GrantView, bool]:
        """Grant (or re-scope: the same prefix, grantee and template version keep one
        grant, whose items are replaced). True when the grant is new."""
        principal = actor.require()
        items = check_items(spec.items)
        if len(spec.template_version) > MAX_VERSION_CHARS:
            raise InvalidRequest(f"templateVersion 长度不能超过{MAX_VERSION_CHARS}")
        async with self.s.change(actor) as change:
            conn = change.conn
            prefix = await self._managed_prefix(conn, principal, spec.prefix)
            grantee = await self._grantee(conn, spec)
            if grantee.id == prefix.enterprise_id:
                raise InvalidRequest(
                    "不能授权给前缀所属企业自己 (the owner reads its data already)"
                )
            if grantee.status is not EnterpriseStatus.ACTIVE:
                raise InvalidRequest(f"企业{grantee.org_name}已停用 (enterprise disabled)")
            if spec.template_version:
                template = await store.get_template(conn, prefix.id, spec.template_version)
                if template is None:
                    raise NotFound(
                        f"前缀{prefix.prefix}没有模板{spec.template_version} (no such template)"
                    )
                known = {item.id_type.upper() for item in template.items}
                for item in items:
                    if item.upper() not in known:
                        raise InvalidRequest(
                            f"模板{template.version}没有数据项{item} (no such item in the template)"
                        )
            existing = await store.find_grant(conn, prefix.id, grantee.id, spec.template_version)
            if existing is None:
                grant_id = await store.insert_grant(
                    conn,
                    prefix_id=prefix.id,
                    grantee_enterprise_id=grantee.id,
                    template_version=spec.template_version,
                    items=items,
                )
            else:
                grant_id = existing.id
                await store.update_grant_items(conn, grant_id, items)
            grant = await store.get_grant(conn, grant_id)
            assert grant is not None
            await change.audit(
                "grant.created" if existing is None else "grant.updated",
                prefix.prefix,
                _audit_detail(grant),
            )
            [view] = await self._views(conn, [grant])
        return view, existing is None

    async def revoke(
        self, actor: Actor, *, grant_id: int | None = None, spec: GrantSpec | None = None
    ) -> DataGrant:
        """Remove a grant, named by its id or by prefix, grantee and template version."""
        principal = actor.require()
        async with self.s.change(actor) as change:
            conn = change.conn
            if grant_id is not None:
                grant = await store.get_grant(conn, grant_id)
                if grant is None:
                    raise NotFound(f"授权{grant_id}不存在 (no such grant)")
                await self._managed_prefix(conn, principal, grant.prefix)
            elif spec is not None:
                prefix = await self._managed_prefix(conn, principal, spec.prefix)
                grantee = await self._grantee(conn, spec)
                grant = await store.find_grant(conn, prefix.id, grantee.id, spec.template_version)
                if grant is None:
                    raise NotFound(
                        f"前缀{prefix.prefix}没有授权给{grantee.org_name}的记录 (no such grant)"
                    )
            else:
                raise InvalidRequest("缺少必要的请求参数: id 或 prefix 与 granteePrefix")
            await store.delete_grant(conn, grant.id)
            await change.audit("grant.revoked", grant.prefix, _audit_detail(grant))
        return grant

    # --- access decisions -------------------------------------------------------

    async def enterprise_of(self, conn: AsyncConnection, actor: Actor) -> int | None:
        """The enterprise a caller acts for: an enterprise user's, or the owner of the
        prefix whose prefix record proved a Handle identity (``300:0.NA/88.100.2``)."""
        if actor.principal is not None:
            return None if actor.principal.is_admin else actor.principal.enterprise_id
        if actor.identity is None:
            return None
        try:
            name = self.s.grammar.parse(actor.identity.key, bare_prefix=True)
            key = normalize_prefix(name.handled_prefix)
        except GrammarError:
            return None
        if not name.is_prefix_handle:
            return None
        prefix = await store.get_prefix(conn, key)
        if prefix is None:
            return None
        enterprise = await store.get_enterprise(conn, prefix.enterprise_id)
        if enterprise is None or enterprise.status is not EnterpriseStatus.ACTIVE:
            return None
        return enterprise.id

    async def read_access(
        self, conn: AsyncConnection, actor: Actor, located: Located
    ) -> ReadAccess:
        """What grants let ``actor`` read of ``located``'s restricted values."""
        prefix, record = located.prefix, located.record
        if prefix is None or record is None or actor.anonymous:
            return NO_ACCESS
        enterprise = await self.enterprise_of(conn, actor)
        if enterprise is None or enterprise == prefix.enterprise_id:
            return NO_ACCESS
        grants = await store.grants_to(conn, enterprise, prefix.id)
        if any(g.template_version for g in grants):
            version = (
                await store.template_version_of(conn, record.template_id)
                if record.template_id is not None
                else None
            )
            grants = [g for g in grants if not g.template_version or g.template_version == version]
        if not grants:
            return NO_ACCESS
        if any(not g.items for g in grants):
            return ReadAccess(granted=True)
        return ReadAccess(
            granted=True, types=frozenset(item.upper() for g in grants for item in g.items)
        )

    async def search_scopes(self, conn: AsyncConnection, actor: Actor) -> list[store.SearchScope]:
        """The restricted values a reverse lookup by ``actor`` may match on: those of
        the prefixes it administers, and those granted to its enterprise."""
        scopes: list[store.SearchScope] = []
        if actor.principal is not None:
            for key in sorted(actor.principal.prefix_keys):
                found = await store.get_prefix(conn, key)
                if found is not None:
                    scopes.append(store.SearchScope(found.id))
        elif actor.identity is not None:
            try:
                name = self.s.grammar.parse(actor.identity.key, bare_prefix=True)
                own = (
                    await store.get_prefix(conn, normalize_prefix(name.handled_prefix))
                    if name.is_prefix_handle
                    else None
                )
            except GrammarError:
                own = None
            if own is not None and actor.identity.index == NODE_ADMIN_INDEX:
                # Its prefix record names 300:0.NA/<prefix> administrator of the records below.
                scopes.append(store.SearchScope(own.id))
        enterprise = await self.enterprise_of(conn, actor)
        if enterprise is not None:
            for grant in await store.grants_to(conn, enterprise):
                types = frozenset(i.upper() for i in grant.items) if grant.items else None
                scopes.append(store.SearchScope(grant.prefix_id, grant.template_version, types))
        return scopes


def _audit_detail(grant: DataGrant) -> dict[str, object]:
    return {
        "grant": grant.id,
        "prefix": grant.prefix,
        "grantee": grant.grantee_enterprise_id,
        "granteeName": grant.grantee_name,
        "templateVersion": grant.template_version,
        "items": list(grant.items),
    }
