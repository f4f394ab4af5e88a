"""Data access: rows in, domain records out, one function per query.

Every function takes the connection of a transaction opened by the caller
(``registry.db.write_transaction`` / ``read_transaction``), so several of
them compose into one atomic change. Business rules live in
``registry.service``; this module only knows tables.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy import text as sql
from sqlalchemy.engine import Row
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema as t
from .audit import canonical_json, entry_hash
from .models import (
    ADMIN_READ,
    PUBLIC_READ,
    AuditEntry,
    DataGrant,
    Enterprise,
    EnterpriseStatus,
    HandleValue,
    Identifier,
    Prefix,
    PrefixState,
    ProxyState,
    Role,
    SiteRoute,
    Template,
    TemplateItem,
    User,
)
from .secrets import is_sealed_value


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- writing many rows ---------------------------------------------------------

COPY_ROWS = 64
"""From this many rows, PostgreSQL gets them by COPY: several times faster than
INSERT for a batch registration (no statement to bind per row)."""


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Rows into ``table``: one INSERT, or COPY on PostgreSQL for many. Every row
    has the same keys, values as the columns take them (aware datetimes)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql" or len(rows) < COPY_ROWS:
        await conn.execute(insert(table), list(rows))
        return
    import asyncpg  # the PostgreSQL driver, only where it is in use

    columns = list(rows[0])
    pick = operator.itemgetter(*columns)
    records = (
        [pick(row) for row in rows] if len(columns) > 1 else [(row[columns[0]],) for row in rows]
    )
    raw: Any = (await conn.get_raw_connection()).driver_connection
    try:
        await raw.copy_records_to_table(table.name, records=records, columns=columns)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(f"COPY {table.name}", None, exc) from exc
    except (asyncpg.DataError, asyncpg.exceptions.DataError) as exc:
        raise DataError(f"COPY {table.name}", None, exc) from exc


# --- sequence head, audit log and outbox ------------------------------------


@dataclass(slots=True)
class Head:
    audit_seq: int
    audit_hash: str
    outbox_seq: int


async def lock_head(conn: AsyncConnection) -> Head:
    """Lock the sequence head for the rest of the transaction.

    Every write transaction calls this first, so writers queue here instead
    of deadlocking on each other's rows, and sequence numbers are handed out
    in commit order (SQLite already holds its write lock: ``BEGIN IMMEDIATE``).
    """
    query = select(t.registry_head).where(t.registry_head.c.id == 1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).one()
    return Head(row.audit_seq, row.audit_hash, row.outbox_seq)


async def save_head(conn: AsyncConnection, head: Head) -> None:
    await conn.execute(
        update(t.registry_head)
        .where(t.registry_head.c.id == 1)
        .values(audit_seq=head.audit_seq, audit_hash=head.audit_hash, outbox_seq=head.outbox_seq)
    )


@dataclass(frozen=True, slots=True)
class Entry:
    """One registry change as it is audited and sent upward."""

    action: str
    target: str
    payload: dict[str, Any]
    """What the outbox event carries."""
    detail: dict[str, Any]
    """What the audit entry records."""


async def append_entries(
    conn: AsyncConnection,
    head: Head,
    entries: Sequence[Entry],
    *,
    actor: str,
    remote: str,
    at: datetime,
    audit: bool = True,
    outbox: bool = True,
) -> list[int]:
    """Audit entries (hash-chained from ``head``) and outbox events for several
    changes, in two statements; returns the events' outbox sequence numbers."""
    audit_rows, outbox_rows, seqs = [], [], []
    for entry in entries:
        if audit:
            seq = head.audit_seq + 1
            detail_text = canonical_json(entry.detail)
            digest = entry_hash(
                seq=seq,
                at=at,
                actor=actor,
                action=entry.action,
                target=entry.target,
                detail=json.loads(detail_text),  # exactly what will be read back
                remote=remote,
                prev_hash=head.audit_hash,
            )
            audit_rows.append(
                {
                    "seq": seq,
                    "at": at,
                    "actor": actor,
                    "action": entry.action,
                    "target": entry.target,
                    "detail": detail_text,
                    "remote": remote,
                    "prev_hash": head.audit_hash,
                    "hash": digest,
                }
            )
            head.audit_seq, head.audit_hash = seq, digest
        if not outbox:
            continue
        head.outbox_seq += 1
        seqs.append(head.outbox_seq)
        outbox_rows.append(
            {
                "seq": head.outbox_seq,
                "created_at": at,
                "event": entry.action,
                "subject": entry.target,
                "payload": canonical_json(entry.payload),
                "attempts": 0,
                "parked": False,
            }
        )
    await insert_rows(conn, t.audit_log, audit_rows)
    await insert_rows(conn, t.outbox, outbox_rows)
    return seqs


CHANGE_CHANNEL = "idnode_changes"
"""PostgreSQL NOTIFY channel: a committed change's outbox sequence number."""


async def notify_changes(conn: AsyncConnection, seq: int) -> None:
    """Wake other processes' change feeds (PostgreSQL delivers it at commit)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(CHANGE_CHANNEL, str(seq))))


async def read_changes(
    conn: AsyncConnection, after: int, limit: int = 1000
) -> list[tuple[int, str, str]]:
    """``(seq, event, subject)`` of outbox events after ``after``: the change feed."""
    rows = await conn.execute(
        select(t.outbox.c.seq, t.outbox.c.event, t.outbox.c.subject)
        .where(t.outbox.c.seq > after)
        .order_by(t.outbox.c.seq)
        .limit(limit)
    )
    return [(row.seq, row.event, row.subject) for row in rows]


async def last_change(conn: AsyncConnection) -> int:
    return int(
        (await conn.execute(select(func.coalesce(func.max(t.outbox.c.seq), 0)))).scalar_one()
    )


async def read_audit(
    conn: AsyncConnection, *, after: int = 0, up_to: int | None = None, limit: int | None = None
) -> list[AuditEntry]:
    query = select(t.audit_log).where(t.audit_log.c.seq > after).order_by(t.audit_log.c.seq)
    if up_to is not None:
        query = query.where(t.audit_log.c.seq <= up_to)
    if limit is not None:
        query = query.limit(limit)
    return [
        AuditEntry(
            seq=row.seq,
            at=row.at,
            actor=row.actor,
            action=row.action,
            target=row.target,
            detail=json.loads(row.detail),
            remote=row.remote,
            prev_hash=row.prev_hash,
            hash=row.hash,
        )
        for row in await conn.execute(query)
    ]


async def read_head(conn: AsyncConnection) -> Head:
    row = (await conn.execute(select(t.registry_head).where(t.registry_head.c.id == 1))).one()
    return Head(row.audit_seq, row.audit_hash, row.outbox_seq)


async def outbox_events(
    conn: AsyncConnection, *, after: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(t.outbox).where(t.outbox.c.seq > after).order_by(t.outbox.c.seq).limit(limit)
    )
    return [
        {
            "seq": row.seq,
            "event": row.event,
            "subject": row.subject,
            "payload": json.loads(row.payload),
            "created_at": row.created_at,
            "delivered_at": row.delivered_at,
        }
        for row in rows
    ]


# --- node settings and prefixes ---------------------------------------------


async def read_settings(conn: AsyncConnection) -> dict[str, str]:
    rows = await conn.execute(select(t.node_settings.c.key, t.node_settings.c.value))
    return {row.key: row.value for row in rows}


async def insert_setting(conn: AsyncConnection, key: str, value: str) -> None:
    await conn.execute(insert(t.node_settings).values(key=key, value=value))


async def node_prefix_keys(conn: AsyncConnection) -> list[str]:
    return list((await conn.execute(select(t.node_prefixes.c.prefix_key))).scalars())


async def insert_node_prefix(
    conn: AsyncConnection, prefix: str, key: str, description: str
) -> None:
    await conn.execute(
        insert(t.node_prefixes).values(
            prefix=prefix, prefix_key=key, description=description, created_at=utcnow()
        )
    )


# --- enterprises ------------------------------------------------------------


def _enterprise(row: Row[Any]) -> Enterprise:
    return Enterprise(
        id=row.id,
        org_name=row.org_name,
        org_nature=row.org_nature,
        org_crt_type=row.org_crt_type,
        org_crt_code=row.org_crt_code,
        org_desc=row.org_desc,
        org_addr=row.org_addr,
        industry_category=row.industry_category,
        industry_specific=row.industry_specific,
        website=row.website,
        contact_name=row.contact_name,
        contact_phone=row.contact_phone,
        contact_email=row.contact_email,
        status=EnterpriseStatus(row.status),
        filing=json.loads(row.filing),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def insert_enterprise(conn: AsyncConnection, values: dict[str, Any]) -> int:
    now = utcnow()
    values = {**values, "created_at": now, "updated_at": now}
    values["filing"] = canonical_json(values.get("filing", {}))
    result = await conn.execute(
        insert(t.enterprises).values(**values).returning(t.enterprises.c.id)
    )
    return int(result.scalar_one())


async def get_enterprise(conn: AsyncConnection, enterprise_id: int) -> Enterprise | None:
    row = (
        await conn.execute(select(t.enterprises).where(t.enterprises.c.id == enterprise_id))
    ).first()
    return _enterprise(row) if row else None


async def find_enterprise_by_credit_code(
    conn: AsyncConnection, crt_type: int, code: str
) -> Enterprise | None:
    row = (
        await conn.execute(
            select(t.enterprises).where(
                t.enterprises.c.org_crt_type == crt_type, t.enterprises.c.org_crt_code == code
            )
        )
    ).first()
    return _enterprise(row) if row else None


async def page_enterprises(
    conn: AsyncConnection,
    *,
    name_like: str | None,
    start: datetime | None,
    end: datetime | None,
    only_id: int | None,
    offset: int,
    limit: int,
) -> tuple[list[Enterprise], int]:
    conditions: list[ColumnElement[bool]] = []
    if name_like:
        conditions.append(t.enterprises.c.org_name.contains(name_like, autoescape=True))
    if start:
        conditions.append(t.enterprises.c.created_at >= start)
    if end:
        conditions.append(t.enterprises.c.created_at <= end)
    if only_id is not None:
        conditions.append(t.enterprises.c.id == only_id)
    where = and_(*conditions) if conditions else None
    count_q = select(func.count()).select_from(t.enterprises)
    page_q = select(t.enterprises).order_by(t.enterprises.c.id).offset(offset).limit(limit)
    if where is not None:
        count_q, page_q = count_q.where(where), page_q.where(where)
    total = int((await conn.execute(count_q)).scalar_one())
    return [_enterprise(row) for row in await conn.execute(page_q)], total


async def count_enterprises(conn: AsyncConnection, status: EnterpriseStatus | None = None) -> int:
    query = select(func.count()).select_from(t.enterprises)
    if status is not None:
        query = query.where(t.enterprises.c.status == int(status))
    return int((await conn.execute(query)).scalar_one())


# --- enterprise prefixes ----------------------------------------------------


def _prefix(row: Row[Any]) -> Prefix:
    route = None
    if row.site_ip is not None:
        route = SiteRoute(
            ip_type=row.site_ip_type,
            ip=row.site_ip,
            tcp_port=row.site_tcp_port,
            udp_port=row.site_udp_port,
            http_port=row.site_http_port,
        )
    return Prefix(
        id=row.id,
        prefix=row.prefix,
        prefix_key=row.prefix_key,
        enterprise_id=row.enterprise_id,
        state=PrefixState(row.state),
        proxy_state=ProxyState(row.proxy_state),
        proxy_server_id=row.proxy_server_id,
        route=route,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def insert_prefix(
    conn: AsyncConnection,
    *,
    prefix: str,
    key: str,
    enterprise_id: int,
    state: PrefixState,
    proxy_state: ProxyState,
) -> int:
    now = utcnow()
    result = await conn.execute(
        insert(t.prefixes)
        .values(
            prefix=prefix,
            prefix_key=key,
            enterprise_id=enterprise_id,
            state=int(state),
            proxy_state=int(proxy_state),
            created_at=now,
            updated_at=now,
        )
        .returning(t.prefixes.c.id)
    )
    return int(result.scalar_one())


async def get_prefix(conn: AsyncConnection, key: str) -> Prefix | None:
    row = (await conn.execute(select(t.prefixes).where(t.prefixes.c.prefix_key == key))).first()
    return _prefix(row) if row else None


async def get_prefix_by_id(conn: AsyncConnection, prefix_id: int) -> Prefix | None:
    row = (await conn.execute(select(t.prefixes).where(t.prefixes.c.id == prefix_id))).first()
    return _prefix(row) if row else None


async def prefixes_of_enterprise(conn: AsyncConnection, enterprise_id: int) -> list[Prefix]:
    rows = await conn.execute(
        select(t.prefixes)
        .where(t.prefixes.c.enterprise_id == enterprise_id)
        .order_by(t.prefixes.c.id)
    )
    return [_prefix(row) for row in rows]


async def all_prefixes(conn: AsyncConnection) -> list[Prefix]:
    return [_prefix(row) for row in await conn.execute(select(t.prefixes))]


async def all_enterprises(conn: AsyncConnection) -> list[Enterprise]:
    return [_enterprise(row) for row in await conn.execute(select(t.enterprises))]


async def hosted_prefixes(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(
        select(t.prefixes.c.prefix)
        .where(t.prefixes.c.proxy_state == int(ProxyState.HOSTED))
        .order_by(t.prefixes.c.id)
    )
    return list(rows.scalars())


async def all_prefix_keys(conn: AsyncConnection) -> list[str]:
    return list((await conn.execute(select(t.prefixes.c.prefix_key))).scalars())


async def page_prefixes(
    conn: AsyncConnection,
    *,
    ent_name_like: str | None,
    prefix_like: str | None,
    start: datetime | None,
    end: datetime | None,
    enterprise_id: int | None,
    offset: int,
    limit: int,
) -> tuple[list[tuple[Prefix, str]], int]:
    joined = t.prefixes.join(t.enterprises, t.prefixes.c.enterprise_id == t.enterprises.c.id)
    conditions: list[ColumnElement[bool]] = []
    if ent_name_like:
        conditions.append(t.enterprises.c.org_name.contains(ent_name_like, autoescape=True))
    if prefix_like:
        conditions.append(t.prefixes.c.prefix.contains(prefix_like, autoescape=True))
    if start:
        conditions.append(t.prefixes.c.created_at >= start)
    if end:
        conditions.append(t.prefixes.c.created_at <= end)
    if enterprise_id is not None:
        conditions.append(t.prefixes.c.enterprise_id == enterprise_id)
    count_q = select(func.count()).select_from(joined)
    page_q = (
        select(t.prefixes, t.enterprises.c.org_name)
        .select_from(joined)
        .order_by(t.prefixes.c.id)
        .offset(offset)
        .limit(limit)
    )
    if conditions:
        count_q, page_q = count_q.where(and_(*conditions)), page_q.where(and_(*conditions))
    total = int((await conn.execute(count_q)).scalar_one())
    rows = await conn.execute(page_q)
    return [(_prefix(row), row.org_name) for row in rows], total


async def update_prefix(conn: AsyncConnection, prefix_id: int, **values: Any) -> None:
    await conn.execute(
        update(t.prefixes).where(t.prefixes.c.id == prefix_id).values(updated_at=utcnow(), **values)
    )


async def max_child_segment(conn: AsyncConnection, parent_key: str) -> int:
    """Highest numeric last segment among enterprise prefixes directly under ``parent``."""
    rows = await conn.execute(
        select(t.prefixes.c.prefix_key).where(t.prefixes.c.prefix_key.startswith(parent_key + "."))
    )
    highest = 0
    for key in rows.scalars():
        rest = key[len(parent_key) + 1 :]
        if rest.isascii() and rest.isdigit():
            highest = max(highest, int(rest))
    return highest


# --- templates --------------------------------------------------------------


def _item(row: Row[Any]) -> TemplateItem:
    return TemplateItem(
        id=row.id,
        name=row.name,
        id_type=row.id_type,
        id_index=row.id_index,
        required=bool(row.required),
        state=row.state,
        value_type=row.value_type,
        min_length=row.min_length,
        max_length=row.max_length,
        public=bool(row.public),
    )


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
    return [
        Template(
            id=row.id,
            prefix_id=row.prefix_id,
            prefix=row.prefix,
            version=row.version,
            handle=row.handle,
            industry_category=row.industry_category,
            industry_specific=row.industry_specific,
            industry_trade=row.industry_trade,
            industry_subclass=row.industry_subclass,
            carrier_type=row.carrier_type,
            description=row.description,
            items=tuple(items[row.id]),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


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


async def insert_template(
    conn: AsyncConnection, values: dict[str, Any], items: Iterable[TemplateItem]
) -> int:
    now = utcnow()
    result = await conn.execute(
        insert(t.templates)
        .values(**values, created_at=now, updated_at=now)
        .returning(t.templates.c.id)
    )
    template_id = int(result.scalar_one())
    await _insert_items(conn, template_id, items)
    return template_id


async def _insert_items(
    conn: AsyncConnection, template_id: int, items: Iterable[TemplateItem]
) -> None:
    rows = [
        {
            "template_id": template_id,
            "name": item.name,
            "id_type": item.id_type,
            "id_index": item.id_index,
            "required": item.required,
            "state": item.state,
            "value_type": item.value_type,
            "min_length": item.min_length,
            "max_length": item.max_length,
            "public": item.public,
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
            .values(
                name=item.name,
                required=item.required,
                state=item.state,
                value_type=item.value_type,
                min_length=item.min_length,
                max_length=item.max_length,
                public=item.public,
            )
        )
    await _insert_items(conn, template_id, new_items)


async def delete_template(conn: AsyncConnection, template_id: int) -> None:
    await conn.execute(delete(t.templates).where(t.templates.c.id == template_id))


async def template_in_use(conn: AsyncConnection, template_id: int) -> bool:
    query = select(t.identifiers.c.id).where(t.identifiers.c.template_id == template_id).limit(1)
    return (await conn.execute(query)).first() is not None


# --- identifiers ------------------------------------------------------------


def _value_row(identifier_id: int, value: HandleValue) -> dict[str, Any]:
    return {
        "identifier_id": identifier_id,
        "idx": value.index,
        "type": value.type,
        "data": value.data,
        "ttl_type": value.ttl_type,
        "ttl": value.ttl,
        "timestamp": value.timestamp,
        "permissions": value.permissions,
        "refs": json.dumps([list(ref) for ref in value.references]) if value.references else "[]",
        "search_text": search_text(value.data),
    }


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


_VALUE_COLUMNS = (
    t.identifier_values.c.idx,
    t.identifier_values.c.type,
    t.identifier_values.c.data,
    t.identifier_values.c.ttl_type,
    t.identifier_values.c.ttl,
    t.identifier_values.c.timestamp,
    t.identifier_values.c.permissions,
    t.identifier_values.c.refs,
)
_IDENTIFIER_WITH_VALUES = (
    select(
        t.identifiers.c.id,
        t.identifiers.c.name,
        t.identifiers.c.name_key,
        t.identifiers.c.prefix_id,
        t.identifiers.c.template_id,
        t.identifiers.c.revision,
        t.identifiers.c.created_at,
        t.identifiers.c.updated_at,
        *_VALUE_COLUMNS,
    )
    .select_from(
        t.identifiers.outerjoin(
            t.identifier_values, t.identifier_values.c.identifier_id == t.identifiers.c.id
        )
    )
    .order_by(t.identifier_values.c.idx)
)
_FIRST_VALUE_COLUMN = 8


async def get_identifier(conn: AsyncConnection, name_key: str) -> Identifier | None:
    """One record with its values, in a single round trip (the resolution hot path)."""
    rows = (
        await conn.execute(_IDENTIFIER_WITH_VALUES.where(t.identifiers.c.name_key == name_key))
    ).all()
    return _identifier_of(rows) if rows else None


LOOKUP_CHUNK = 500
"""Names per ``IN (...)`` list: well within every engine's limit of bound parameters."""


async def get_identifiers(conn: AsyncConnection, name_keys: Sequence[str]) -> dict[str, Identifier]:
    """The records of these names that exist, by name key, a few round trips in all."""
    found: dict[str, Identifier] = {}
    for start in range(0, len(name_keys), LOOKUP_CHUNK):
        chunk = name_keys[start : start + LOOKUP_CHUNK]
        query = _IDENTIFIER_WITH_VALUES.where(t.identifiers.c.name_key.in_(chunk))
        by_id: dict[int, list[Any]] = {}
        for row in (await conn.execute(query)).all():
            by_id.setdefault(row[0], []).append(row)
        for rows in by_id.values():
            identifier = _identifier_of(rows)
            found[identifier.name_key] = identifier
    return found


def _identifier_of(rows: Sequence[Any]) -> Identifier:
    """A record from its rows of ``_IDENTIFIER_WITH_VALUES`` (one per value)."""
    head = rows[0]
    return Identifier(
        id=head[0],
        name=head[1],
        name_key=head[2],
        prefix_id=head[3],
        template_id=head[4],
        revision=head[5],
        created_at=head[6],
        updated_at=head[7],
        values=tuple(
            _value_of(row[_FIRST_VALUE_COLUMN:])
            for row in rows
            if row[_FIRST_VALUE_COLUMN] is not None
        ),
    )


def _value_of(row: Sequence[Any]) -> HandleValue:
    """A value from its columns, in the order of ``_VALUE_COLUMNS``."""
    index, vtype, data, ttl_type, ttl, timestamp, permissions, refs = row
    return HandleValue(
        index=index,
        type=vtype,
        data=bytes(data),
        ttl_type=ttl_type,
        ttl=ttl,
        timestamp=timestamp,
        permissions=permissions,
        references=() if refs == "[]" else tuple((str(h), int(i)) for h, i in json.loads(refs)),
    )


async def names_at_dns_path(conn: AsyncConnection, path: str) -> list[str]:
    """The identifiers whose DNS name has this path (two only if a digest collides)."""
    rows = await conn.execute(
        select(t.identifiers.c.name).where(t.identifiers.c.dns_path == path).limit(2)
    )
    return [row.name for row in rows]


async def any_dns_path_below(conn: AsyncConnection, path: str) -> bool:
    """Whether some identifier's DNS name lies below the name with this path: a
    range scan of the index (paths sort bytewise; "/" is the character after ".")."""
    column = t.identifiers.c.dns_path
    row = await conn.execute(
        select(t.identifiers.c.id).where(column > path + ".", column < path + "/").limit(1)
    )
    return row.first() is not None


@dataclass(frozen=True, slots=True)
class NewIdentifier:
    name: str
    name_key: str
    prefix_id: int | None
    template_id: int | None
    values: Sequence[HandleValue]
    dns_path: str | None = None


async def insert_identifiers(conn: AsyncConnection, new: Sequence[NewIdentifier]) -> list[int]:
    """Identifiers with their values, in two statements whatever their number
    (a batch registration); returns their ids, in order."""
    if not new:
        return []
    now = utcnow()
    rows = [
        {
            "name": item.name,
            "name_key": item.name_key,
            "dns_path": item.dns_path,
            "prefix_id": item.prefix_id,
            "template_id": item.template_id,
            "revision": 1,
            "created_at": now,
            "updated_at": now,
        }
        for item in new
    ]
    if conn.dialect.name == "postgresql" and len(new) >= COPY_ROWS:
        # Ids drawn first, so the rows (and their values) can go by COPY.
        ids = list(
            (
                await conn.execute(
                    sql(
                        "SELECT nextval(pg_get_serial_sequence('identifiers', 'id')) "
                        "FROM generate_series(1, :n)"
                    ),
                    {"n": len(new)},
                )
            ).scalars()
        )
        await insert_rows(
            conn, t.identifiers, [{"id": i, **row} for i, row in zip(ids, rows, strict=True)]
        )
    else:
        result = await conn.execute(
            insert(t.identifiers).returning(t.identifiers.c.id, sort_by_parameter_order=True),
            rows,
        )
        ids = [int(row[0]) for row in result]
    values = [_value_row(i, v) for i, item in zip(ids, new, strict=True) for v in item.values]
    await insert_rows(conn, t.identifier_values, values)
    return ids


async def insert_identifier(
    conn: AsyncConnection,
    *,
    name: str,
    name_key: str,
    prefix_id: int | None,
    template_id: int | None,
    values: Sequence[HandleValue],
    dns_path: str | None = None,
) -> int:
    new = NewIdentifier(name, name_key, prefix_id, template_id, values, dns_path)
    return (await insert_identifiers(conn, [new]))[0]


async def replace_identifier_values(
    conn: AsyncConnection,
    identifier: Identifier,
    *,
    template_id: int | None,
    values: Sequence[HandleValue],
) -> None:
    await conn.execute(
        delete(t.identifier_values).where(t.identifier_values.c.identifier_id == identifier.id)
    )
    if values:
        await conn.execute(
            insert(t.identifier_values), [_value_row(identifier.id, v) for v in values]
        )
    await conn.execute(
        update(t.identifiers)
        .where(t.identifiers.c.id == identifier.id)
        .values(template_id=template_id, revision=identifier.revision + 1, updated_at=utcnow())
    )


async def identifier_names(
    conn: AsyncConnection, prefix_id: int, *, offset: int, limit: int
) -> list[str]:
    rows = await conn.execute(
        select(t.identifiers.c.name)
        .where(t.identifiers.c.prefix_id == prefix_id)
        .order_by(t.identifiers.c.name_key)
        .offset(offset)
        .limit(limit)
    )
    return list(rows.scalars())


async def node_level_names(
    conn: AsyncConnection, node_prefix_key: str, *, offset: int, limit: int
) -> tuple[int, list[str]]:
    """Records directly under the node prefix (``88.100/x``), which no enterprise owns."""
    where = and_(
        t.identifiers.c.prefix_id.is_(None),
        t.identifiers.c.name_key.startswith(node_prefix_key + "/", autoescape=True),
    )
    total = int(
        (
            await conn.execute(select(func.count()).select_from(t.identifiers).where(where))
        ).scalar_one()
    )
    rows = await conn.execute(
        select(t.identifiers.c.name)
        .where(where)
        .order_by(t.identifiers.c.name_key)
        .offset(offset)
        .limit(limit)
    )
    return total, list(rows.scalars())


async def delete_identifier(conn: AsyncConnection, identifier_id: int) -> None:
    # Values go explicitly: SQLite enforces ON DELETE CASCADE only with the
    # foreign_keys pragma, and a store must not depend on a pragma for this.
    await conn.execute(
        delete(t.identifier_values).where(t.identifier_values.c.identifier_id == identifier_id)
    )
    await conn.execute(delete(t.identifiers).where(t.identifiers.c.id == identifier_id))


async def count_identifiers(conn: AsyncConnection, prefix_id: int | None = None) -> int:
    """Identifiers under one enterprise prefix, or under all of them.

    Records the node keeps for itself (prefix handles, identities) do not count.
    """
    query = select(func.count()).select_from(t.identifiers)
    if prefix_id is not None:
        query = query.where(t.identifiers.c.prefix_id == prefix_id)
    else:
        query = query.where(t.identifiers.c.prefix_id.is_not(None))
    return int((await conn.execute(query)).scalar_one())


async def count_enterprise_identifiers(conn: AsyncConnection, enterprise_id: int) -> int:
    """Identifiers under all the prefixes of one enterprise."""
    query = (
        select(func.count())
        .select_from(t.identifiers.join(t.prefixes, t.identifiers.c.prefix_id == t.prefixes.c.id))
        .where(t.prefixes.c.enterprise_id == enterprise_id)
    )
    return int((await conn.execute(query)).scalar_one())


async def count_prefixes(conn: AsyncConnection) -> int:
    """Enterprise prefixes the node has allocated."""
    return int((await conn.execute(select(func.count()).select_from(t.prefixes))).scalar_one())


# --- users and access keys --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    """A stored secret and the user it belongs to."""

    user: User
    secret_hash: str
    digest_sealed: bytes | None
    access_key_id: int | None


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        username=row.username,
        role=Role(row.role),
        enterprise_id=row.enterprise_id,
        email=row.email,
        mobile=row.mobile,
        status=row.status,
        created_at=row.created_at,
    )


async def insert_user(
    conn: AsyncConnection,
    *,
    username: str,
    role: Role,
    enterprise_id: int | None,
    email: str | None,
    mobile: str | None,
    secret_hash: str,
    digest_sealed: bytes | None,
) -> int:
    result = await conn.execute(
        insert(t.users)
        .values(
            username=username,
            role=str(role),
            enterprise_id=enterprise_id,
            email=email,
            mobile=mobile,
            secret_hash=secret_hash,
            secret_digest_sealed=digest_sealed,
            status=1,
            created_at=utcnow(),
        )
        .returning(t.users.c.id)
    )
    return int(result.scalar_one())


async def get_user(conn: AsyncConnection, user_id: int) -> User | None:
    row = (await conn.execute(select(t.users).where(t.users.c.id == user_id))).first()
    return _user(row) if row else None


async def bind_user_to_enterprise(conn: AsyncConnection, user_id: int, enterprise_id: int) -> None:
    await conn.execute(
        update(t.users).where(t.users.c.id == user_id).values(enterprise_id=enterprise_id)
    )


async def find_user(
    conn: AsyncConnection,
    *,
    username: str | None = None,
    email: str | None = None,
    mobile: str | None = None,
) -> User | None:
    conditions: list[ColumnElement[bool]] = []
    if username is not None:
        conditions.append(t.users.c.username == username)
    if email is not None:
        conditions.append(t.users.c.email == email)
    if mobile is not None:
        conditions.append(t.users.c.mobile == mobile)
    if not conditions:
        return None
    row = (await conn.execute(select(t.users).where(or_(*conditions)).limit(1))).first()
    return _user(row) if row else None


async def credential_for_login(conn: AsyncConnection, login: str) -> Credential | None:
    """The secret behind a login name: an access key first, else a username."""
    row = (
        await conn.execute(
            select(t.access_keys, t.users)
            .select_from(t.access_keys.join(t.users, t.access_keys.c.user_id == t.users.c.id))
            .where(t.access_keys.c.access_key == login, t.access_keys.c.status == 1)
        )
    ).first()
    if row is not None:
        key = row._mapping
        user = await get_user(conn, key[t.users.c.id])
        assert user is not None
        return Credential(
            user=user,
            secret_hash=key[t.access_keys.c.secret_hash],
            digest_sealed=key[t.access_keys.c.secret_digest_sealed],
            access_key_id=key[t.access_keys.c.id],
        )
    user_row = (await conn.execute(select(t.users).where(t.users.c.username == login))).first()
    if user_row is None:
        return None
    return Credential(
        user=_user(user_row),
        secret_hash=user_row.secret_hash,
        digest_sealed=user_row.secret_digest_sealed,
        access_key_id=None,
    )


async def insert_access_key(
    conn: AsyncConnection, *, access_key: str, user_id: int, secret_hash: str, digest_sealed: bytes
) -> int:
    result = await conn.execute(
        insert(t.access_keys)
        .values(
            access_key=access_key,
            user_id=user_id,
            secret_hash=secret_hash,
            secret_digest_sealed=digest_sealed,
            status=1,
            created_at=utcnow(),
        )
        .returning(t.access_keys.c.id)
    )
    return int(result.scalar_one())


async def update_access_key_secret(
    conn: AsyncConnection, key_id: int, *, secret_hash: str, digest_sealed: bytes
) -> None:
    await conn.execute(
        update(t.access_keys)
        .where(t.access_keys.c.id == key_id)
        .values(secret_hash=secret_hash, secret_digest_sealed=digest_sealed, status=1)
    )


async def find_access_key(conn: AsyncConnection, access_key: str) -> tuple[int, int] | None:
    """``(key id, user id)`` of an access key, enabled or not."""
    row = (
        await conn.execute(
            select(t.access_keys.c.id, t.access_keys.c.user_id).where(
                t.access_keys.c.access_key == access_key
            )
        )
    ).first()
    return (row.id, row.user_id) if row else None


async def credential_hash(
    conn: AsyncConnection, user_id: int, access_key_id: int | None
) -> str | None:
    """The current secret hash behind a token: its enabled access key, or the user's."""
    if access_key_id is None:
        query = select(t.users.c.secret_hash).where(t.users.c.id == user_id)
    else:
        query = select(t.access_keys.c.secret_hash).where(
            t.access_keys.c.id == access_key_id,
            t.access_keys.c.user_id == user_id,
            t.access_keys.c.status == 1,
        )
    value = (await conn.execute(query)).scalar_one_or_none()
    return str(value) if value is not None else None


async def replace_secret_hash(
    conn: AsyncConnection, user_id: int, access_key_id: int | None, *, old: str, new: str
) -> bool:
    """Put ``new`` in place of a credential's hash only if it still is ``old``
    (compare-and-set: a re-hash never undoes a concurrent change of the secret)."""
    table = t.users if access_key_id is None else t.access_keys
    row = t.users.c.id == user_id if access_key_id is None else t.access_keys.c.id == access_key_id
    result = await conn.execute(
        update(table).where(row, table.c.secret_hash == old).values(secret_hash=new)
    )
    return result.rowcount == 1


async def touch_access_key(conn: AsyncConnection, key_id: int) -> None:
    await conn.execute(
        update(t.access_keys).where(t.access_keys.c.id == key_id).values(last_used_at=utcnow())
    )


# --- attachments ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attachment:
    id: int
    path: str
    owner_id: int
    enterprise_id: int | None
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime


async def insert_attachment(
    conn: AsyncConnection,
    *,
    path: str,
    owner_id: int,
    filename: str,
    content_type: str,
    data: bytes,
    sha256: str,
) -> int:
    result = await conn.execute(
        insert(t.attachments)
        .values(
            path=path,
            owner_id=owner_id,
            filename=filename,
            content_type=content_type,
            size=len(data),
            sha256=sha256,
            data=data,
            created_at=utcnow(),
        )
        .returning(t.attachments.c.id)
    )
    return int(result.scalar_one())


_ATTACHMENT_FIELDS = [c for c in t.attachments.c if c.name != "data"]


async def get_attachment(conn: AsyncConnection, attachment_id: int) -> Attachment | None:
    row = (
        await conn.execute(select(*_ATTACHMENT_FIELDS).where(t.attachments.c.id == attachment_id))
    ).first()
    return Attachment(**row._mapping) if row else None


async def attachment_data(conn: AsyncConnection, attachment_id: int) -> bytes:
    query = select(t.attachments.c.data).where(t.attachments.c.id == attachment_id)
    return bytes((await conn.execute(query)).scalar_one())


async def link_attachment(conn: AsyncConnection, attachment_id: int, enterprise_id: int) -> None:
    await conn.execute(
        update(t.attachments)
        .where(t.attachments.c.id == attachment_id)
        .values(enterprise_id=enterprise_id)
    )


# --- data grants (数据权限) ---------------------------------------------------

_GRANT_COLUMNS = (
    t.data_grants.c.id,
    t.data_grants.c.prefix_id,
    t.prefixes.c.prefix,
    t.prefixes.c.enterprise_id.label("owner_enterprise_id"),
    t.data_grants.c.grantee_enterprise_id,
    t.enterprises.c.org_name.label("grantee_name"),
    t.data_grants.c.template_version,
    t.data_grants.c.item_types,
    t.data_grants.c.created_at,
    t.data_grants.c.updated_at,
)


def _grants_query(where: ColumnElement[bool]) -> Any:
    g = t.data_grants
    return (
        select(*_GRANT_COLUMNS)
        .select_from(
            g.join(t.prefixes, t.prefixes.c.id == g.c.prefix_id).join(
                t.enterprises, t.enterprises.c.id == g.c.grantee_enterprise_id
            )
        )
        .where(where)
        .order_by(t.prefixes.c.prefix_key, g.c.grantee_enterprise_id, g.c.template_version)
    )


def _grant(row: Row[Any]) -> DataGrant:
    return DataGrant(
        id=row.id,
        prefix_id=row.prefix_id,
        prefix=row.prefix,
        owner_enterprise_id=row.owner_enterprise_id,
        grantee_enterprise_id=row.grantee_enterprise_id,
        grantee_name=row.grantee_name,
        template_version=row.template_version,
        items=tuple(json.loads(row.item_types)),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _grants(conn: AsyncConnection, where: ColumnElement[bool]) -> list[DataGrant]:
    return [_grant(row) for row in await conn.execute(_grants_query(where))]


async def insert_grant(
    conn: AsyncConnection,
    *,
    prefix_id: int,
    grantee_enterprise_id: int,
    template_version: str,
    items: Sequence[str],
) -> int:
    now = utcnow()
    result = await conn.execute(
        insert(t.data_grants)
        .values(
            prefix_id=prefix_id,
            grantee_enterprise_id=grantee_enterprise_id,
            template_version=template_version,
            item_types=json.dumps(list(items), ensure_ascii=False),
            created_at=now,
            updated_at=now,
        )
        .returning(t.data_grants.c.id)
    )
    return int(result.scalar_one())


async def update_grant_items(conn: AsyncConnection, grant_id: int, items: Sequence[str]) -> None:
    await conn.execute(
        update(t.data_grants)
        .where(t.data_grants.c.id == grant_id)
        .values(item_types=json.dumps(list(items), ensure_ascii=False), updated_at=utcnow())
    )


async def delete_grant(conn: AsyncConnection, grant_id: int) -> None:
    await conn.execute(delete(t.data_grants).where(t.data_grants.c.id == grant_id))


async def get_grant(conn: AsyncConnection, grant_id: int) -> DataGrant | None:
    found = await _grants(conn, t.data_grants.c.id == grant_id)
    return found[0] if found else None


async def find_grant(
    conn: AsyncConnection, prefix_id: int, grantee_enterprise_id: int, template_version: str
) -> DataGrant | None:
    g = t.data_grants.c
    found = await _grants(
        conn,
        and_(
            g.prefix_id == prefix_id,
            g.grantee_enterprise_id == grantee_enterprise_id,
            g.template_version == template_version,
        ),
    )
    return found[0] if found else None


async def grants(
    conn: AsyncConnection,
    *,
    prefix_ids: Sequence[int] | None = None,
    grantee_enterprise_id: int | None = None,
) -> list[DataGrant]:
    """Grants on these prefixes, or to this enterprise (either, when both are
    given); every grant when neither is."""
    g = t.data_grants.c
    clauses: list[ColumnElement[bool]] = []
    if prefix_ids is not None:
        clauses.append(g.prefix_id.in_(prefix_ids))
    if grantee_enterprise_id is not None:
        clauses.append(g.grantee_enterprise_id == grantee_enterprise_id)
    where = or_(*clauses) if clauses else g.id.isnot(None)
    return await _grants(conn, where)


async def grants_to(
    conn: AsyncConnection, grantee_enterprise_id: int, prefix_id: int | None = None
) -> list[DataGrant]:
    """What one enterprise was granted (on one prefix): the access decisions' query."""
    g = t.data_grants.c
    where = g.grantee_enterprise_id == grantee_enterprise_id
    if prefix_id is not None:
        where = and_(where, g.prefix_id == prefix_id)
    return await _grants(conn, where)


async def template_version_of(conn: AsyncConnection, template_id: int) -> str | None:
    row = await conn.execute(select(t.templates.c.version).where(t.templates.c.id == template_id))
    version = row.scalar_one_or_none()
    return None if version is None else str(version)


# --- sync with the top-level node (sync/PROTOCOL.md) -------------------------


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    event: str
    subject: str
    payload: dict[str, Any]
    created_at: datetime


async def pending_outbox(conn: AsyncConnection, limit: int) -> list[OutboxEvent]:
    """The oldest events neither delivered nor parked, in sequence order."""
    o = t.outbox.c
    rows = await conn.execute(
        select(o.seq, o.event, o.subject, o.payload, o.created_at)
        .where(o.delivered_at.is_(None), o.parked.is_(False))
        .order_by(o.seq)
        .limit(limit)
    )
    return [
        OutboxEvent(r.seq, r.event, r.subject, json.loads(r.payload), r.created_at) for r in rows
    ]


async def mark_delivered(conn: AsyncConnection, seqs: Sequence[int], at: datetime) -> None:
    if seqs:
        await conn.execute(
            update(t.outbox)
            .where(t.outbox.c.seq.in_(seqs), t.outbox.c.delivered_at.is_(None))
            .values(delivered_at=at, attempts=t.outbox.c.attempts + 1, last_error=None)
        )


async def park(conn: AsyncConnection, seq: int, error: str) -> None:
    await conn.execute(
        update(t.outbox)
        .where(t.outbox.c.seq == seq)
        .values(parked=True, attempts=t.outbox.c.attempts + 1, last_error=error[:2000])
    )


async def unpark(conn: AsyncConnection) -> int:
    result = await conn.execute(
        update(t.outbox)
        .where(t.outbox.c.parked.is_(True), t.outbox.c.delivered_at.is_(None))
        .values(parked=False)
    )
    return int(result.rowcount or 0)


async def note_failure(conn: AsyncConnection, seqs: Sequence[int], error: str) -> None:
    if seqs:
        await conn.execute(
            update(t.outbox)
            .where(t.outbox.c.seq.in_(seqs))
            .values(attempts=t.outbox.c.attempts + 1, last_error=error[:2000])
        )


@dataclass(frozen=True)
class OutboxCounts:
    pending: int
    parked: int
    delivered: int
    oldest_pending: datetime | None


async def outbox_counts(conn: AsyncConnection) -> OutboxCounts:
    o = t.outbox.c
    pending = (o.delivered_at.is_(None)) & (o.parked.is_(False))
    row = (
        await conn.execute(
            select(
                func.count().filter(pending),
                func.count().filter(o.parked.is_(True) & o.delivered_at.is_(None)),
                func.count().filter(o.delivered_at.is_not(None)),
                func.min(o.created_at).filter(pending),
            )
        )
    ).one()
    # min() keeps the column's type, so the oldest time comes back as UTCDateTime.
    return OutboxCounts(int(row[0]), int(row[1]), int(row[2]), row[3])


async def sync_state(conn: AsyncConnection) -> dict[str, str]:
    rows = await conn.execute(select(t.sync_state.c.key, t.sync_state.c.value))
    return {row.key: row.value for row in rows}


async def set_sync_state(conn: AsyncConnection, **values: str) -> None:
    for key, value in values.items():
        updated = await conn.execute(
            update(t.sync_state).where(t.sync_state.c.key == key).values(value=value)
        )
        if not updated.rowcount:
            await conn.execute(insert(t.sync_state).values(key=key, value=value))


async def put_foreign_route(
    conn: AsyncConnection, prefix: str, node: str, site: bytes, *, hosted: bool, seq: int,
    deleted: bool,
) -> None:  # fmt: skip
    key = prefix.upper()
    await conn.execute(delete(t.foreign_routes).where(t.foreign_routes.c.prefix_key == key))
    if not deleted:
        await conn.execute(
            insert(t.foreign_routes).values(
                prefix_key=key, prefix=prefix, node=node, site=site, hosted=hosted, route_seq=seq
            )
        )


async def all_identifier_names(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(select(t.identifiers.c.name))
    return [row.name for row in rows]


@dataclass(frozen=True)
class ForeignRoute:
    """Another node's prefix, and the ``HS_SITE`` that serves it."""

    prefix: str
    node: str
    site: bytes
    hosted: bool


async def foreign_routes(conn: AsyncConnection) -> list[ForeignRoute]:
    f = t.foreign_routes.c
    rows = await conn.execute(select(f.prefix, f.node, f.site, f.hosted).order_by(f.prefix_key))
    return [ForeignRoute(r.prefix, r.node, r.site, r.hosted) for r in rows]


async def get_foreign_route(conn: AsyncConnection, key: str) -> ForeignRoute | None:
    f = t.foreign_routes.c
    row = (
        await conn.execute(select(f.prefix, f.node, f.site, f.hosted).where(f.prefix_key == key))
    ).first()
    return None if row is None else ForeignRoute(row.prefix, row.node, row.site, row.hosted)
