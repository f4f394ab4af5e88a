"""Metadata templates of enterprise prefixes (``/snms/api/v5/template``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .. import store
from ..errors import AlreadyExists, Forbidden, InvalidRequest, NotFound
from ..grammar import GrammarError, normalize_prefix
from ..models import Prefix, Template, TemplateItem
from ..templates import (
    ItemChange,
    TemplateError,
    assign_indexes,
    check_items,
    check_version,
    merge_update,
)
from .base import Actor, Services

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
    pairs = [
        (
            TemplateItem(
                name=c.name,
                id_type=c.id_type,
                id_index=c.id_index or 0,
                required=c.required,
                state=1 if c.state is None else c.state,
                value_type=c.value_type,
                min_length=c.min_length,
                max_length=c.max_length,
                public=True if c.public is None else c.public,
            ),
            c.id_index is not None,
        )
        for c in changes
    ]
    return check_items(sorted(assign_indexes(pairs), key=lambda i: i.id_index))


class Templates:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def _managed_prefix(
        self, conn: AsyncConnection, actor: Actor, prefix_text: str
    ) -> Prefix:
        principal = actor.require()
        try:
            key = normalize_prefix(prefix_text.strip())
        except GrammarError as exc:
            raise InvalidRequest(f"前缀格式错误: {exc}") from None
        prefix = await store.get_prefix(conn, key)
        if prefix is None:
            raise NotFound(f"前缀{prefix_text}不存在 (no such prefix)")
        if not principal.may_manage(prefix.prefix_key):
            raise Forbidden("没有权限 (not your prefix)")
        return prefix

    async def get(self, actor: Actor, prefix_text: str, version: str | None) -> list[Template]:
        async with self.s.read() as conn:
            prefix = await self._managed_prefix(conn, actor, prefix_text)
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
            prefix = await self._managed_prefix(change.conn, actor, spec.prefix)
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
            prefix = await self._managed_prefix(change.conn, actor, spec.prefix)
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
            prefix = await self._managed_prefix(change.conn, actor, prefix_text)
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
