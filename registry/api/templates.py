"""``/snms/api/v5/template`` (and the v3 path): metadata templates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..errors import InvalidRequest
from ..models import Template
from ..services import Actor
from ..services.templates import TemplateSpec
from ..templates import ItemChange
from . import fields as f
from .envelope import REGISTRY, authenticated, json_body, success

routes = web.RouteTableDef()
PATHS = ("/snms/api/v5/template", "/snms/api/v3/template")


def parse_item(raw: Any, position: int) -> ItemChange:
    item = f.require_object(raw, f"items[{position}]")
    metadata = item.get("metadata") or {}
    metadata = f.require_object(metadata, f"items[{position}].metadata")
    value_type = f.text(metadata, "type", default="string", max_len=16)
    return ItemChange(
        name=f.text(item, "name", required=True, max_len=128),
        id_type=f.text(item, "idType", required=True, max_len=128),
        id_index=f.integer(item, "idIndex", minimum=1, maximum=2**31 - 1),
        required=bool(f.boolean(item, "required", default=False)),
        state=f.integer(item, "state"),
        value_type=value_type,
        min_length=f.integer(metadata, "minLength"),
        max_length=f.integer(metadata, "maxLength"),
        public=f.boolean(item, "public"),
    )


def parse_spec(raw: Any) -> TemplateSpec:
    body = f.require_object(raw)
    items = f.require_list(body.get("items"), "items")
    return TemplateSpec(
        prefix=f.text(body, "prefix", required=True, max_len=64),
        version=f.text(body, "version", required=True, max_len=128),
        items=tuple(parse_item(item, i) for i, item in enumerate(items)),
        industry_category=f.text(body, "industryCategory", max_len=8),
        industry_specific=f.text(body, "industrySpecific", max_len=8),
        industry_trade=f.text(body, "industryTrade", max_len=8),
        industry_subclass=f.text(body, "industrySubclass", max_len=8),
        carrier_type=f.integer(body, "type") or 2,
        description=f.text(body, "description", max_len=1024),
    )


def template_json(template: Template) -> dict[str, Any]:
    return {
        "id": template.id,
        "prefix": template.prefix,
        "name": "",
        "handle": template.handle,
        "version": template.version,
        "industryCategory": template.industry_category,
        "industrySpecific": template.industry_specific,
        "industryTrade": template.industry_trade,
        "industrySubclass": template.industry_subclass,
        "type": template.carrier_type,
        "description": template.description,
        "items": [
            {
                "name": item.name,
                "idType": item.id_type,
                "idIndex": item.id_index,
                "metadataId": item.id,
                "metadata": {
                    "type": item.value_type,
                    "minLength": item.min_length,
                    "maxLength": item.max_length,
                },
                "required": item.required,
                "state": item.state,
                "public": item.public,
            }
            for item in template.items
        ],
    }


def _prefix_and_version(
    source: Mapping[str, Any], *, version_required: bool
) -> tuple[str, str | None]:
    prefix = f.text(source, "prefix", required=True, max_len=64)
    version = f.text(source, "version", required=version_required, max_len=128) or None
    return prefix, version


@authenticated
async def get_template(request: web.Request, actor: Actor) -> web.Response:
    """With ``version``: that template; without: every template of the prefix."""
    prefix, version = _prefix_and_version(request.query, version_required=False)
    found = await request.app[REGISTRY].templates.get(actor, prefix, version)
    if version is not None:
        return success(template_json(found[0]))
    return success([template_json(t) for t in found])


@authenticated
async def create_template(request: web.Request, actor: Actor) -> web.Response:
    spec = parse_spec(await json_body(request))
    await request.app[REGISTRY].templates.create(actor, spec)
    return success(True)


@authenticated
async def update_template(request: web.Request, actor: Actor) -> web.Response:
    spec = parse_spec(await json_body(request))
    await request.app[REGISTRY].templates.update(actor, spec)
    return success(True)


@authenticated
async def delete_template(request: web.Request, actor: Actor) -> web.Response:
    source: Mapping[str, Any] = request.query
    if "prefix" not in source:
        source = f.require_object(await json_body(request))
    prefix, version = _prefix_and_version(source, version_required=True)
    if version is None:
        raise InvalidRequest("缺少必要的请求参数: version")
    await request.app[REGISTRY].templates.delete(actor, prefix, version)
    return success(True)


for _path in PATHS:
    routes.get(_path)(get_template)
    routes.post(_path)(create_template)
    routes.put(_path)(update_template)
    routes.delete(_path)(delete_template)
