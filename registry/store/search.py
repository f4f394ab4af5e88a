"""Reverse lookup: records found by the text of their values (``search_text``,
stored beside each value as it is written)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import schema as t
from ..models import ADMIN_READ, PUBLIC_READ
from ..secrets import is_sealed_value

SEARCH_TEXT_CHARS = 512


def search_text(data: bytes) -> str | None:
    """What reverse lookup matches: short UTF-8 text; never a sealed secret."""
    if is_sealed_value(data) or len(data) > SEARCH_TEXT_CHARS * 4:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if len(text) <= SEARCH_TEXT_CHARS and "\x00" not in text else None


@dataclass(frozen=True, slots=True)
class SearchScope:
    """Restricted values a search may match beside the public ones: those of the
    records under ``prefix_id`` — of template ``template_version`` only, when set —
    whose type (in upper case) is in ``types`` (None: any type but ``HS_*``)."""

    prefix_id: int
    template_version: str = ""
    types: frozenset[str] | None = None

    def covers(self, value_type: str) -> bool:
        kind = value_type.upper()
        if self.types is not None:
            return kind in self.types
        return not kind.startswith("HS_")


def _in_scope(scope: SearchScope) -> ColumnElement[bool]:
    i = t.identifiers.c
    clause = i.prefix_id == scope.prefix_id
    if scope.template_version:
        versions = select(t.templates.c.id).where(
            t.templates.c.prefix_id == scope.prefix_id,
            t.templates.c.version == scope.template_version,
        )
        clause = and_(clause, i.template_id.in_(versions))
    return clause


async def reverse_lookup(
    conn: AsyncConnection,
    conditions: Sequence[tuple[str, str, bool]],
    *,
    public_only: bool,
    prefix_ids: Sequence[int] | None,
    offset: int,
    limit: int,
    scopes: Sequence[SearchScope] = (),
) -> list[str]:
    """Names having, for every ``(type, text, wildcard)``, a value of that type whose
    text equals ``text`` (or matches it, ``*`` being any run of characters).
    ``public_only``: only public values match, and restricted ones in ``scopes``."""
    v = t.identifier_values
    query = select(t.identifiers.c.name).order_by(t.identifiers.c.name_key)
    for value_type, text, wildcard in conditions:
        match = v.c.search_text.like(text, escape="\\") if wildcard else v.c.search_text == text
        inner = select(v.c.identifier_id).where(v.c.type == value_type, match)
        if public_only:
            public = v.c.permissions.op("&")(PUBLIC_READ) != 0
            covering = [_in_scope(s) for s in scopes if s.covers(value_type)]
            if covering:
                readable = v.c.permissions.op("&")(ADMIN_READ) != 0
                inner = inner.select_from(
                    v.join(t.identifiers, t.identifiers.c.id == v.c.identifier_id)
                ).where(or_(public, and_(readable, or_(*covering))))
            else:
                inner = inner.where(public)
        query = query.where(t.identifiers.c.id.in_(inner))
    if prefix_ids is not None:
        query = query.where(t.identifiers.c.prefix_id.in_(prefix_ids))
    rows = await conn.execute(query.offset(offset).limit(limit))
    return list(rows.scalars())
