"""Templates of a prefix with their items, read and written together."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from ..models import Template, TemplateItem
from .rows import insert_returning_id, record_of, utcnow


def _item(row: Row[Any]) -> TemplateItem:
    return record_of(TemplateItem, row, required=bool(row.required), public=bool(row.public))


async def _template_items(
    conn: AsyncConnection, template_ids: Sequence[int]
) -> dict[int, list[TemplateItem]]:
    items: dict[int, list[TemplateItem]] = {tid: [] for tid in template_ids}
    if not template_ids:
        return items
    rows = await conn.execute(
        select(t.template_items)
        .where(t.template_items.c.template_id.in_(template_ids))
        .order_by(t.template_items.c.id_index)
    )
    for row in rows:
        items[row.template_id].append(_item(row))
    return items


async def _templates(conn: AsyncConnection, where: ColumnElement[bool]) -> list[Template]:
    rows = (
        await conn.execute(
            select(t.templates, t.prefixes.c.prefix)
            .select_from(t.templates.join(t.prefixes, t.templates.c.prefix_id == t.prefixes.c.id))
            .where(where)
            .order_by(t.templates.c.id)
        )
    ).all()
    items = await _template_items(conn, [row.id for row in rows])
    return [record_of(Template, row, items=tuple(items[row.id])) for row in rows]


async def get_template(conn: AsyncConnection, prefix_id: int, version: str) -> Template | None:
    found = await _templates(
        conn, and_(t.templates.c.prefix_id == prefix_id, t.templates.c.version == version)
    )
    return found[0] if found else None


async def get_template_by_id(conn: AsyncConnection, template_id: int) -> Template | None:
    found = await _templates(conn, t.templates.c.id == template_id)
    return found[0] if found else None


async def templates_of_prefix(conn: AsyncConnection, prefix_id: int) -> list[Template]:
    return await _templates(conn, t.templates.c.prefix_id == prefix_id)


async def template_version_of(conn: AsyncConnection, template_id: int) -> str | None:
    row = await conn.execute(select(t.templates.c.version).where(t.templates.c.id == template_id))
    version = row.scalar_one_or_none()
    return None if version is None else str(version)


async def insert_template(
    conn: AsyncConnection, values: dict[str, Any], items: Iterable[TemplateItem]
) -> int:
    now = utcnow()
    template_id = await insert_returning_id(
        conn, t.templates, **values, created_at=now, updated_at=now
    )
    await _insert_items(conn, template_id, items)
    return template_id


_DEFINITION = ("name", "required", "state", "value_type", "min_length", "max_length", "public")
"""The columns of an item's row that a rewrite may change: its type and index stay."""


def _definition(item: TemplateItem) -> dict[str, Any]:
    return {column: getattr(item, column) for column in _DEFINITION}


async def _insert_items(
    conn: AsyncConnection, template_id: int, items: Iterable[TemplateItem]
) -> None:
    rows = [
        {
            "template_id": template_id,
            "id_type": item.id_type,
            "id_index": item.id_index,
            **_definition(item),
        }
        for item in items
    ]
    if rows:
        await conn.execute(insert(t.template_items), rows)


async def replace_template(
    conn: AsyncConnection, template_id: int, values: dict[str, Any], items: Iterable[TemplateItem]
) -> None:
    """Rewrite a template's fields and items, keeping each item's row id."""
    await conn.execute(
        update(t.templates)
        .where(t.templates.c.id == template_id)
        .values(**values, updated_at=utcnow())
    )
    new_items: list[TemplateItem] = []
    for item in items:
        if item.id is None:
            new_items.append(item)
            continue
        await conn.execute(
            update(t.template_items)
            .where(t.template_items.c.id == item.id)
            .values(**_definition(item))
        )
    await _insert_items(conn, template_id, new_items)


async def delete_template(conn: AsyncConnection, template_id: int) -> None:
    await conn.execute(delete(t.templates).where(t.templates.c.id == template_id))


async def template_in_use(conn: AsyncConnection, template_id: int) -> bool:
    query = select(t.identifiers.c.id).where(t.identifiers.c.template_id == template_id).limit(1)
    return (await conn.execute(query)).first() is not None
