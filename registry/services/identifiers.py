"""Identifier registration through the SNMS data API (``/identityv2/data``)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import DataError, IntegrityError

from .. import store
from ..errors import AlreadyExists, Forbidden, InvalidRequest, NotFound, RegistryError
from ..grammar import MAX_NAME_BYTES, HandleName, check_value_count, normalize_prefix
from ..keytext import KeyTextError, hs_pubkey_data
from ..models import (
    PERM_PUBLIC,
    PERM_RESTRICTED,
    TEMPLATE_VERSION_INDEX,
    HandleValue,
    Identifier,
    Prefix,
    Template,
)
from ..secrets import is_sealed_value
from ..templates import RecordValue, TemplateError, check_record, value_is_public
from ..values import HS_PUBKEY
from .base import Actor, Change, Services, registration_limit_text

log = logging.getLogger("idnode.registry")

MAX_BATCH = 2000
MAX_SNMS_HANDLE_CHARS = 255
TEMPLATE_VALUE_TYPE = "TEMPLATE"
EXISTS = "标识已存在"
NOT_FOUND = "没有找到标识"
BATCH_NOT_FOUND = "标识不存在"
SUCCESS = "success"


@dataclass(frozen=True, slots=True)
class SnmsRecord:
    handle: str
    template_version: str
    values: tuple[RecordValue, ...]


ItemT = TypeVar("ItemT", SnmsRecord, str)


@dataclass(frozen=True, slots=True)
class ItemResult:
    handle: str
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class IdentifierView:
    identifier: Identifier
    template: Template | None
    prefix: Prefix | None


def record_payload(
    name: str, template_version: str | None, values: Sequence[HandleValue]
) -> dict[str, Any]:
    """An identifier registration as sent upward: the full record, as backup."""
    return {
        "handle": name,
        "templateVersion": template_version,
        "values": [
            {
                "index": v.index,
                "type": v.type,
                "data": base64.b64encode(v.data).decode(),
                "ttl": v.ttl,
                "permissions": v.permissions,
            }
            for v in values
            if not is_sealed_value(v.data)  # secrets stay on this node, even sealed
        ],
    }


async def write_record(
    services: Services,
    change: Change,
    name: HandleName,
    stored: Identifier | None,
    values: list[HandleValue],
    *,
    prefix_id: int | None,
    template_id: int | None,
    template_version: str | None,
    action: str,
) -> None:
    """A record written whole outside the SNMS registration path (the Handle protocol's
    writes, the issuer's identity records): a new identifier under ``prefix_id`` with no
    template of its own, or ``stored``'s values replaced and its template set to
    ``template_id``; ``action`` goes to the audit trail and the outbox with the record."""
    if stored is None:
        await store.insert_identifier(
            change.conn,
            name=name.text,
            name_key=name.key,
            prefix_id=prefix_id,
            template_id=None,
            values=values,
            dns_path=services.dns_path(name),
        )
    else:
        await store.replace_identifier_values(
            change.conn, stored, template_id=template_id, values=values
        )
    record_name = stored.name if stored else name.text
    await change.record(
        action,
        record_name,
        record_payload(record_name, template_version, values),
        {"indexes": [v.index for v in values]},
    )


class Identifiers:
    def __init__(self, services: Services) -> None:
        self.s = services

    # --- reading ----------------------------------------------------------

    async def detail(self, actor: Actor, name: str) -> IdentifierView:
        principal = actor.require()
        parsed = self.s.parse_name(name)
        async with self.s.read() as conn:
            identifier = await store.get_identifier(conn, parsed.key)
            if identifier is None:
                raise NotFound(NOT_FOUND)
            prefix = (
                await store.get_prefix_by_id(conn, identifier.prefix_id)
                if identifier.prefix_id is not None
                else None
            )
            if not (principal.is_admin or (prefix and principal.may_manage(prefix.prefix_key))):
                raise Forbidden("没有权限 (not your prefix)")
            template = (
                await store.get_template_by_id(conn, identifier.template_id)
                if identifier.template_id is not None
                else None
            )
        return IdentifierView(identifier, template, prefix)

    # --- single writes ----------------------------------------------------

    async def create(self, actor: Actor, record: SnmsRecord) -> bool:
        """Register; ``False`` when an identical record was already there."""
        async with self.s.change(actor) as change:
            return await self._create(change, record)

    async def update(self, actor: Actor, record: SnmsRecord) -> None:
        async with self.s.change(actor) as change:
            await self._update(change, record)

    async def delete(self, actor: Actor, name: str) -> None:
        async with self.s.change(actor) as change:
            await self._delete(change, name)

    # --- batches: one transaction, one savepoint per item ------------------

    async def batch_create(self, actor: Actor, records: Sequence[SnmsRecord]) -> list[ItemResult]:
        """Validate every record, then write the new ones in a few statements
        (identifiers, values, audit entries, outbox events); if the database
        still refuses one, fall back to one savepoint per record."""
        actor.require()
        _check_batch_size(records)
        results: list[ItemResult | None] = [None] * len(records)
        async with self.s.change(actor) as change:
            planned: list[tuple[int, HandleName, Template, list[HandleValue], Prefix]] = []
            for i, record in enumerate(records):
                try:
                    parsed, prefix, template, values = await self._prepare(change, record)
                except RegistryError as exc:
                    results[i] = ItemResult(record.handle, False, str(exc))
                else:
                    planned.append((i, parsed, template, values, prefix))
            stored = await store.get_identifiers(change.conn, [p[1].key for p in planned])
            claimed: dict[str, tuple[int | None, Sequence[HandleValue]]] = {
                key: (found.template_id, found.values) for key, found in stored.items()
            }
            new = []
            repeats: dict[str, list[int]] = {}
            """Items that repeat a new one of this batch: they share its fate."""
            rooms: dict[int, int | None] = {}
            """Identifiers each enterprise may still register (None: no limit)."""
            for i, parsed, template, values, prefix in planned:
                earlier = claimed.get(parsed.key)
                if earlier is None:
                    owner = prefix.enterprise_id
                    if owner not in rooms:
                        rooms[owner] = await self.s.identifier_room(change.conn, owner)
                    room = rooms[owner]
                    if room is not None:
                        if room < 1:
                            limit = registration_limit_text(self.s.identifier_limit)
                            results[i] = ItemResult(records[i].handle, False, limit)
                            continue
                        rooms[owner] = room - 1
                    claimed[parsed.key] = (template.id, values)
                    new.append((i, parsed, template, values, prefix))
                    results[i] = ItemResult(records[i].handle, True, SUCCESS)
                elif earlier[0] == template.id and _same_values(earlier[1], values):
                    results[i] = ItemResult(records[i].handle, True, SUCCESS)  # a retry
                    repeats.setdefault(parsed.key, []).append(i)
                else:
                    results[i] = ItemResult(records[i].handle, False, EXISTS)
            try:
                async with change.item():
                    await self._insert_all(change, new)
            except (IntegrityError, DataError) as exc:
                log.warning("batch refused as a whole (%s); registering one by one", exc.orig)
                one_by_one = await self._each(change, [records[i] for i, *_ in new], self._create)
                for (i, parsed, *_), result in zip(new, one_by_one, strict=True):
                    results[i] = result
                    for repeat in repeats.get(parsed.key, []) if not result.ok else []:
                        results[repeat] = ItemResult(records[repeat].handle, False, result.message)
        return [r for r in results if r is not None]

    async def _insert_all(
        self,
        change: Change,
        new: Sequence[tuple[int, HandleName, Template, list[HandleValue], Prefix]],
    ) -> None:
        await store.insert_identifiers(
            change.conn,
            [
                store.NewIdentifier(
                    parsed.text, parsed.key, prefix.id, template.id, values, self.s.dns_path(parsed)
                )
                for _, parsed, template, values, prefix in new
            ],
        )
        await change.record_many(
            [
                store.Entry(
                    "identifier.created",
                    parsed.text,
                    record_payload(parsed.text, template.version, values),
                    {"template": template.version, "indexes": [v.index for v in values]},
                )
                for _, parsed, template, values, _prefix in new
            ]
        )

    async def batch_update(self, actor: Actor, records: Sequence[SnmsRecord]) -> list[ItemResult]:
        return await self._batch(actor, records, self._update)

    async def batch_delete(self, actor: Actor, names: Sequence[str]) -> list[ItemResult]:
        results = await self._batch(actor, names, self._delete)
        return [
            ItemResult(r.handle, r.ok, BATCH_NOT_FOUND if r.message == NOT_FOUND else r.message)
            for r in results
        ]

    async def _batch(
        self,
        actor: Actor,
        items: Sequence[ItemT],
        operation: Callable[[Change, ItemT], Awaitable[object]],
    ) -> list[ItemResult]:
        actor.require()
        _check_batch_size(items)
        async with self.s.change(actor) as change:
            return await self._each(change, items, operation)

    async def _each(
        self,
        change: Change,
        items: Sequence[ItemT],
        operation: Callable[[Change, ItemT], Awaitable[object]],
    ) -> list[ItemResult]:
        """One savepoint per item: a failed item leaves nothing, the others go on."""
        results: list[ItemResult] = []
        for item in items:
            handle = item if isinstance(item, str) else getattr(item, "handle", "")
            try:
                async with change.item():
                    await operation(change, item)
            except RegistryError as exc:
                results.append(ItemResult(handle, False, str(exc)))
            except IntegrityError:
                results.append(ItemResult(handle, False, EXISTS))
            except DataError as exc:  # validation should have caught it; report, go on
                log.warning("database refused batch item %r: %s", handle, exc.orig)
                results.append(ItemResult(handle, False, "数据不合法 (value refused)"))
            else:
                results.append(ItemResult(handle, True, SUCCESS))
        return results

    # --- the operations, inside a change ----------------------------------

    async def _writable_prefix(self, change: Change, parsed: HandleName) -> Prefix:
        principal = change.actor.require()
        key = normalize_prefix(parsed.prefix)
        prefix: Prefix | None = await change.lookup(
            ("prefix", key), lambda: store.get_prefix(change.conn, key)
        )
        if prefix is None:
            raise InvalidRequest(f"前缀{parsed.prefix}不存在或不属于本节点 (unknown prefix)")
        if not principal.may_manage(prefix.prefix_key):
            raise Forbidden(f"没有权限操作前缀{parsed.prefix} (not your prefix)")
        if not prefix.writable:
            raise InvalidRequest(
                f"前缀{prefix.prefix}未启用或未托管，不能注册标识 (prefix not enabled and hosted)"
            )
        return prefix

    async def _prepare(
        self, change: Change, record: SnmsRecord
    ) -> tuple[HandleName, Prefix, Template, list[HandleValue]]:
        if len(record.handle) > MAX_SNMS_HANDLE_CHARS:
            raise InvalidRequest(f"handle 长度不能超过{MAX_SNMS_HANDLE_CHARS} (handle too long)")
        parsed = self.s.parse_name(record.handle)
        if parsed.is_prefix_handle:
            raise InvalidRequest("不能通过数据接口注册前缀标识 (0.NA/ handles are not data)")
        if not record.template_version:
            raise InvalidRequest("缺少必要的请求参数: templateVersion")
        prefix = await self._writable_prefix(change, parsed)
        template: Template | None = await change.lookup(
            ("template", prefix.id, record.template_version),
            lambda: store.get_template(change.conn, prefix.id, record.template_version),
        )
        if template is None:
            raise InvalidRequest(f"模板{record.template_version}不存在 (unknown template)")
        try:
            check_value_count(len(record.values) + 1)
            check_record(template.items, record.values)
        except (TemplateError, ValueError) as exc:
            raise InvalidRequest(str(exc)) from None
        items = {item.id_index: item for item in template.items}
        timestamp = int(change.now.timestamp())
        values = [
            HandleValue(
                index=v.index,
                type=v.type,
                data=_value_data(v),
                timestamp=timestamp,
                permissions=PERM_PUBLIC if value_is_public(items[v.index], v) else PERM_RESTRICTED,
            )
            for v in record.values
        ]
        values.append(
            HandleValue(
                index=TEMPLATE_VERSION_INDEX,
                type=TEMPLATE_VALUE_TYPE,
                data=template.version.encode("utf-8"),
                timestamp=timestamp,
            )
        )
        values.sort(key=lambda v: v.index)
        return parsed, prefix, template, values

    async def _create(self, change: Change, record: SnmsRecord) -> bool:
        parsed, prefix, template, values = await self._prepare(change, record)
        existing = await store.get_identifier(change.conn, parsed.key)
        if existing is not None:
            if existing.template_id == template.id and _same_values(existing.values, values):
                return False  # a retried create: the first one already succeeded
            raise AlreadyExists(EXISTS)
        await self.s.require_identifier_room(change.conn, prefix.enterprise_id)
        await store.insert_identifier(
            change.conn,
            name=parsed.text,
            name_key=parsed.key,
            prefix_id=prefix.id,
            template_id=template.id,
            values=values,
            dns_path=self.s.dns_path(parsed),
        )
        await change.record(
            "identifier.created",
            parsed.text,
            record_payload(parsed.text, template.version, values),
            {"template": template.version, "indexes": [v.index for v in values]},
        )
        return True

    async def _update(self, change: Change, record: SnmsRecord) -> None:
        parsed, _prefix, template, values = await self._prepare(change, record)
        existing = await store.get_identifier(change.conn, parsed.key)
        if existing is None:
            raise NotFound(NOT_FOUND)
        managed = {item.id_index for item in template.items} | {TEMPLATE_VERSION_INDEX}
        if existing.template_id is not None and existing.template_id != template.id:
            old = await store.get_template_by_id(change.conn, existing.template_id)
            managed |= {item.id_index for item in old.items} if old else set()
        previous = {v.index: v for v in existing.values}
        kept = [v for v in existing.values if v.index not in managed]
        # A value whose content did not change keeps its original timestamp.
        fresh = [
            previous[v.index] if v.index in previous and previous[v.index].same_content(v) else v
            for v in values
        ]
        merged = sorted([*kept, *fresh], key=lambda v: v.index)
        try:
            check_value_count(len(merged))
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        merged = await self.s.values_to_store(change, existing.name, merged)
        await store.replace_identifier_values(
            change.conn, existing, template_id=template.id, values=merged
        )
        await change.record(
            "identifier.updated",
            existing.name,
            record_payload(existing.name, template.version, merged),
            {"template": template.version, "indexes": [v.index for v in merged]},
        )

    async def _delete(self, change: Change, name: str) -> None:
        principal = change.actor.require()
        if not isinstance(name, str) or not name:
            raise InvalidRequest("缺少必要的请求参数: handle")
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise InvalidRequest("handle 过长 (handle too long)")
        parsed = self.s.parse_name(name)
        existing = await store.get_identifier(change.conn, parsed.key)
        if existing is None:
            raise NotFound(NOT_FOUND)
        prefix = (
            await store.get_prefix_by_id(change.conn, existing.prefix_id)
            if existing.prefix_id is not None
            else None
        )
        if not (principal.is_admin or (prefix and principal.may_manage(prefix.prefix_key))):
            raise Forbidden("没有权限 (not your prefix)")
        await store.delete_identifier(change.conn, existing.id)
        await change.record("identifier.deleted", existing.name, {"handle": existing.name})


def _value_data(value: RecordValue) -> bytes:
    """A value's bytes: its text in UTF-8; an ``HS_PUBKEY``'s key (PEM, base64 DER or
    an SM2 point in hex) as the record IDIS and HANDLE.NET clients read."""
    if value.type.upper() != HS_PUBKEY:
        return value.value.encode("utf-8")
    try:
        return hs_pubkey_data(value.value)
    except KeyTextError as exc:
        raise InvalidRequest(
            f"索引{value.index}的公钥格式错误 (HS_PUBKEY at index {value.index}: {exc})"
        ) from None


def _check_batch_size(items: Sequence[object]) -> None:
    if len(items) > MAX_BATCH:
        raise InvalidRequest(f"批量操作不能超过{MAX_BATCH}条 (at most {MAX_BATCH} items)")


def _same_values(a: Sequence[HandleValue], b: Sequence[HandleValue]) -> bool:
    return len(a) == len(b) and all(
        x.same_content(y)
        for x, y in zip(
            sorted(a, key=lambda v: v.index), sorted(b, key=lambda v: v.index), strict=True
        )
    )
