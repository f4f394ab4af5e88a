"""Metadata templates of enterprise prefixes (``/snms/api/v5/template``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import store
from ..errors import AlreadyExists, InvalidRequest, NotFound
from ..models import Template, TemplateItem
from ..templates import (
    ItemChange,
    TemplateError,
    assign_indexes,
    check_items,
    check_version,
    merge_update,
)
from .base import Actor, Services, managed_prefix

TEMPLATE_SUFFIX_PREFIX = "META_"
MAX_DESCRIPTION = 1024


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    prefix: str
    version: str
    items: tuple[ItemChange, ...]
    industry_category: str = ""
    industry_specific: str = ""
    industry_trade: str = ""
    industry_subclass: str = ""
    carrier_type: int = 2
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        return {
            "industry_category": self.industry_category,
            "industry_specific": self.industry_specific,
            "industry_trade": self.industry_trade,
            "industry_subclass": self.industry_subclass,
            "carrier_type": self.carrier_type,
            "description": self.description,
        }


def _check_spec(spec: TemplateSpec) -> None:
    try:
        check_version(spec.version)
    except TemplateError as exc:
        raise InvalidRequest(str(exc)) from None
    if spec.carrier_type not in (1, 2):
        raise InvalidRequest("type 应为1(主动标识载体)或2(其他)")
    if len(spec.description) > MAX_DESCRIPTION:
        raise InvalidRequest(f"description 不能超过{MAX_DESCRIPTION}字")
    for code in (
        spec.industry_category,
        spec.industry_specific,
        spec.industry_trade,
        spec.industry_subclass,
    ):
        if len(code) > 8:
            raise InvalidRequest(f"行业代码{code!r}过长 (GB/T 4754 codes are at most 4 characters)")


def _new_items(changes: tuple[ItemChange, ...]) -> tuple[TemplateItem, ...]:
    pairs = [(c.new_item(c.id_index or 0), c.id_index is not None) for c in changes]
    return check_items(sorted(assign_indexes(pairs), key=lambda i: i.id_index))


class Templates:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def get(self, actor: Actor, prefix_text: str, version: str | None) -> list[Template]:
        async with self.s.read() as conn:
            prefix = await managed_prefix(conn, actor.require(), prefix_text)
            if version is None:
                return await store.templates_of_prefix(conn, prefix.id)
            template = await store.get_template(conn, prefix.id, version)
        if template is None:
            raise NotFound(f"模板{version}不存在 (no such template)")
        return [template]

    async def create(self, actor: Actor, spec: TemplateSpec) -> Template:
        _check_spec(spec)
        try:
            items = _new_items(spec.items)
        except TemplateError as exc:
            raise InvalidRequest(str(exc)) from None
        async with self.s.change(actor) as change:
            prefix = await managed_prefix(change.conn, actor.require(), spec.prefix)
            if await store.get_template(change.conn, prefix.id, spec.version) is not None:
                raise AlreadyExists(f"模板{spec.version}已存在 (template exists)")
            handle = f"{prefix.prefix}/{TEMPLATE_SUFFIX_PREFIX}{spec.version}"
            template_id = await store.insert_template(
                change.conn,
                {
                    "prefix_id": prefix.id,
                    "version": spec.version,
                    "handle": handle,
                    **spec.fields(),
                },
                items,
            )
            template = await store.get_template_by_id(change.conn, template_id)
            assert template is not None
            await change.record("template.created", handle, template_payload(template))
        return template

    async def update(self, actor: Actor, spec: TemplateSpec) -> Template:
        _check_spec(spec)
        async with self.s.change(actor) as change:
            prefix = await managed_prefix(change.conn, actor.require(), spec.prefix)
            current = await store.get_template(change.conn, prefix.id, spec.version)
            if current is None:
                raise NotFound(f"模板{spec.version}不存在 (no such template)")
            try:
                items = merge_update(current.items, spec.items)
            except TemplateError as exc:
                raise InvalidRequest(str(exc)) from None
            await store.replace_template(change.conn, current.id, spec.fields(), items)
            template = await store.get_template_by_id(change.conn, current.id)
            assert template is not None
            await change.record("template.updated", template.handle, template_payload(template))
        return template

    async def delete(self, actor: Actor, prefix_text: str, version: str) -> None:
        async with self.s.change(actor) as change:
            prefix = await managed_prefix(change.conn, actor.require(), prefix_text)
            template = await store.get_template(change.conn, prefix.id, version)
            if template is None:
                raise NotFound(f"模板{version}不存在 (no such template)")
            if await store.template_in_use(change.conn, template.id):
                raise InvalidRequest(f"模板{version}已被标识使用，不能删除 (template in use)")
            await store.delete_template(change.conn, template.id)
            await change.record(
                "template.deleted", template.handle, {"prefix": prefix.prefix, "version": version}
            )


def template_payload(template: Template) -> dict[str, Any]:
    return {
        "prefix": template.prefix,
        "version": template.version,
        "handle": template.handle,
        "items": [
            {
                "idIndex": i.id_index,
                "idType": i.id_type,
                "name": i.name,
                "required": i.required,
                "state": i.state,
                "public": i.public,
            }
            for i in template.items
        ],
    }
