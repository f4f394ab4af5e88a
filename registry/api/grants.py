"""``/snms/api/data-grant``: data permissions (数据权限 / 授权企业).

The owner of a prefix (or a node administrator) lets another enterprise read
the restricted values of the prefix's records — of one template version or of
all, of some item types or of all (:mod:`registry.services.grants`):

- ``GET ?prefix=P`` the grants on P; ``GET ?received=true`` those given to the
  caller's enterprise; ``GET`` every grant the caller gave or received;
- ``POST {"prefix", "granteePrefix" | "granteeEntId", "templateVersion"?,
  "items"?}`` grants (the same prefix, grantee and template version again:
  its items are replaced);
- ``DELETE ?id=N`` (or a body ``{"id"}``, or ``{"prefix", "granteePrefix" |
  "granteeEntId", "templateVersion"?}``) revokes, at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..errors import InvalidRequest
from ..services import Actor
from ..services.grants import GrantSpec, GrantView
from ..templates import MAX_VERSION_CHARS
from . import fields as f
from .envelope import REGISTRY, authenticated, json_body, success

routes = web.RouteTableDef()
PATH = "/snms/api/data-grant"


def grant_json(view: GrantView, format_time: Any) -> dict[str, Any]:
    grant = view.grant
    return {
        "id": grant.id,
        "prefix": grant.prefix,
        "granteeEntId": grant.grantee_enterprise_id,
        "granteeOrgName": grant.grantee_name,
        "granteePrefixes": list(view.grantee_prefixes),
        "templateVersion": grant.template_version or None,
        "items": list(grant.items),
        "createDate": format_time(grant.created_at),
        "updateDate": format_time(grant.updated_at),
    }


def _items(body: Mapping[str, Any]) -> tuple[str, ...]:
    raw = body.get("items")
    if raw is None:
        return ()
    items = f.require_list(raw, "items")
    result = []
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidRequest(f"items[{position}] 应为字符串 (an item's idType)")
        result.append(item)
    return tuple(result)


def parse_spec(body: Mapping[str, Any], *, with_items: bool = True) -> GrantSpec:
    return GrantSpec(
        prefix=f.text(body, "prefix", required=True, max_len=64),
        grantee_prefix=f.optional_text(body, "granteePrefix", max_len=64),
        grantee_enterprise_id=f.integer(body, "granteeEntId", minimum=1),
        template_version=f.text(body, "templateVersion", max_len=MAX_VERSION_CHARS),
        items=_items(body) if with_items else (),
    )


@routes.get(PATH)
@authenticated
async def list_grants(request: web.Request, actor: Actor) -> web.Response:
    registry = request.app[REGISTRY]
    prefix = f.optional_text(request.query, "prefix", max_len=64)
    received = bool(f.boolean(request.query, "received", default=False))
    views = await registry.grants.list_grants(actor, prefix=prefix, received=received)
    return success([grant_json(v, registry.services.format_time) for v in views])


@routes.post(PATH)
@authenticated
async def add_grant(request: web.Request, actor: Actor) -> web.Response:
    registry = request.app[REGISTRY]
    spec = parse_spec(f.require_object(await json_body(request)))
    view, _created = await registry.grants.grant(actor, spec)
    return success(grant_json(view, registry.services.format_time))


@routes.delete(PATH)
@authenticated
async def remove_grant(request: web.Request, actor: Actor) -> web.Response:
    source: Mapping[str, Any] = request.query
    if not source:
        source = f.require_object(await json_body(request))
    grant_id = f.integer(source, "id", minimum=1)
    registry = request.app[REGISTRY]
    if grant_id is not None:
        revoked = await registry.grants.revoke(actor, grant_id=grant_id)
    else:
        revoked = await registry.grants.revoke(actor, spec=parse_spec(source, with_items=False))
    return success({"id": revoked.id})
