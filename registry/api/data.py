"""``/identityv2/data``: register, read, update and delete identifiers."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..errors import InvalidRequest, RegistryError
from ..keytext import key_text
from ..models import HandleValue
from ..secrets import is_sealed_value
from ..services import Actor
from ..services.identifiers import (
    MAX_BATCH,
    MAX_SNMS_HANDLE_CHARS,
    IdentifierView,
    ItemResult,
    SnmsRecord,
)
from ..templates import MAX_VALUE_CHARS, RecordValue
from ..values import HS_PUBKEY
from . import fields as f
from .envelope import REGISTRY, authenticated, json_body, success

routes = web.RouteTableDef()


def parse_value(raw: Any, position: int) -> RecordValue:
    item = f.require_object(raw, f"value[{position}]")
    data = item.get("data")
    if isinstance(data, str):  # tolerate a bare string, as the Handle REST API does
        value, fmt = data, "string"
    else:
        data_obj = f.require_object(data, f"value[{position}].data")
        fmt = f.text(data_obj, "format", default="string", max_len=16)
        value = f.text(data_obj, "value", max_len=MAX_VALUE_CHARS)
    if fmt != "string":
        raise InvalidRequest(f"value[{position}].data.format 仅支持 string")
    return RecordValue(
        index=f.required_integer(item, "index", minimum=1, maximum=2**31 - 1),
        type=f.text(item, "type", required=True, max_len=128),
        value=value,
        auth=f.text(item, "auth", max_len=16),
    )


def parse_record(raw: Any) -> SnmsRecord:
    body = f.require_object(raw)
    values = f.require_list(body.get("value", []), "value")
    return SnmsRecord(
        handle=f.text(body, "handle", required=True, max_len=MAX_SNMS_HANDLE_CHARS),
        template_version=f.text(body, "templateVersion", required=True, max_len=128),
        values=tuple(parse_value(v, i) for i, v in enumerate(values)),
    )


def _handle_of(raw: Any) -> str:
    if isinstance(raw, Mapping) and isinstance(raw.get("handle"), str):
        return str(raw["handle"])
    return raw if isinstance(raw, str) else ""


def _value_json(value: HandleValue) -> dict[str, Any]:
    # An HS_PUBKEY shows its key as PEM, whatever record holds it: the text a
    # client wrote (and may write back), not the record's length-prefixed bytes.
    pem = key_text(value.data) if value.type.upper() == HS_PUBKEY else None
    if pem is not None:
        data = {"format": "string", "value": pem}
    else:
        try:
            data = {"format": "string", "value": value.data.decode("utf-8")}
        except UnicodeDecodeError:
            data = {"format": "base64", "value": base64.b64encode(value.data).decode()}
    return {
        "index": value.index,
        "type": value.type,
        "auth": "public" if value.public else "restricted",
        "data": data,
    }


def detail_json(view: IdentifierView, asked: str) -> dict[str, Any]:
    identifier = view.identifier
    return {
        "code": "200",
        "prefix": view.prefix.prefix if view.prefix else asked.partition("/")[0],
        "handle": asked,
        "templateVersion": view.template.version if view.template else "",
        # Sealed secrets (HS_SECKEY) are for proving identity, never for display.
        "value": [_value_json(v) for v in identifier.values if not is_sealed_value(v.data)],
    }


def _batch_items(body: Any) -> list[Any]:
    if isinstance(body, Mapping) and "handles" in body:
        body = body["handles"]
    items = f.require_list(body)
    if not items:
        raise InvalidRequest("批量操作至少需要一条数据 (empty batch)")
    if len(items) > MAX_BATCH:
        raise InvalidRequest(f"批量操作不能超过{MAX_BATCH}条 (at most {MAX_BATCH} items)")
    return items


def _merge(raw_items: list[Any], parsed: list[Any], results: list[ItemResult]) -> list[ItemResult]:
    """Put the service's results and the parse failures back in request order."""
    done = iter(results)
    return [
        next(done)
        if not isinstance(p, RegistryError)
        else ItemResult(_handle_of(raw), False, str(p))
        for raw, p in zip(raw_items, parsed, strict=True)
    ]


def _parse_each(raw_items: list[Any], parse: Any) -> list[Any]:
    parsed: list[Any] = []
    for raw in raw_items:
        try:
            parsed.append(parse(raw))
        except RegistryError as exc:
            parsed.append(exc)
    return parsed


@routes.get("/identityv2/data/detail")
@authenticated
async def detail(request: web.Request, actor: Actor) -> web.Response:
    handle = request.query.get("handle", "")
    if not handle:
        raise InvalidRequest("缺少必要的请求参数: handle")
    view = await request.app[REGISTRY].identifiers.detail(actor, handle)
    return success(detail_json(view, handle))


@routes.post("/identityv2/data")
@authenticated
async def create(request: web.Request, actor: Actor) -> web.Response:
    record = parse_record(await json_body(request))
    await request.app[REGISTRY].identifiers.create(actor, record)
    return success(True)


@routes.put("/identityv2/data")
@authenticated
async def update(request: web.Request, actor: Actor) -> web.Response:
    record = parse_record(await json_body(request))
    await request.app[REGISTRY].identifiers.update(actor, record)
    return success(True)


@routes.delete("/identityv2/data")
@authenticated
async def delete(request: web.Request, actor: Actor) -> web.Response:
    handle = request.query.get("handle", "")
    if not handle:
        handle = f.text(
            f.require_object(await json_body(request)),
            "handle",
            required=True,
            max_len=MAX_SNMS_HANDLE_CHARS,
        )
    await request.app[REGISTRY].identifiers.delete(actor, handle)
    return success(True)


async def _batch_write(request: web.Request, actor: Actor, *, create: bool) -> web.Response:
    raw_items = _batch_items(await json_body(request))
    parsed = _parse_each(raw_items, parse_record)
    records = [p for p in parsed if isinstance(p, SnmsRecord)]
    service = request.app[REGISTRY].identifiers
    run = service.batch_create if create else service.batch_update
    results = _merge(raw_items, parsed, await run(actor, records))
    return success([{"handle": r.handle, "msg": r.message} for r in results])


@routes.post("/identityv2/data/batchCreate")
@authenticated
async def batch_create(request: web.Request, actor: Actor) -> web.Response:
    return await _batch_write(request, actor, create=True)


@routes.put("/identityv2/data/batchUpdate")
@authenticated
async def batch_update(request: web.Request, actor: Actor) -> web.Response:
    return await _batch_write(request, actor, create=False)


def _handle_string(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise InvalidRequest("handle 应为非空字符串 (expected a handle string)")
    return raw


@routes.delete("/identityv2/data/batchDelete")
@authenticated
async def batch_delete(request: web.Request, actor: Actor) -> web.Response:
    raw_items = _batch_items(await json_body(request))
    parsed = _parse_each(raw_items, _handle_string)
    names = [p for p in parsed if isinstance(p, str)]
    results = _merge(
        raw_items, parsed, await request.app[REGISTRY].identifiers.batch_delete(actor, names)
    )
    return success(
        [{"handle": r.handle, "code": 1 if r.ok else -2, "msg": r.message} for r in results]
    )
