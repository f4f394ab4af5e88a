"""Metadata templates: checking a template and checking values against it.

Pure functions over :class:`~registry.models.TemplateItem`; the store and the
admin API call them, so a template means the same thing on every path. The
messages follow the SNMS wording where the SNMS documents one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .models import FIRST_TEMPLATE_ITEM_INDEX, RESERVED_INDEXES, TemplateItem

MAX_VERSION_CHARS = 128
MAX_ITEM_NAME_CHARS = 128
MAX_ITEM_TYPE_CHARS = 128
MAX_VALUE_CHARS = 255
"""SNMS caps ``data.value`` at 255 characters."""
MAX_ITEMS = 1000
VALUE_TYPES = frozenset({"string"})
PUBLIC_AUTH = "public"
RESTRICTED_AUTH = "restricted"


class TemplateError(ValueError):
    """A template definition, or a record checked against one, is invalid."""


@dataclass(frozen=True, slots=True)
class RecordValue:
    """One value of an identifier as the SNMS API carries it."""

    index: int
    type: str
    value: str
    auth: str = ""


def check_version(version: str) -> str:
    if not version or len(version) > MAX_VERSION_CHARS:
        raise TemplateError(f"模板版本长度应为1~{MAX_VERSION_CHARS} (templateVersion length)")
    return version


def _check_item(item: TemplateItem) -> None:
    if not item.name or len(item.name) > MAX_ITEM_NAME_CHARS:
        raise TemplateError(f"模板项名称长度应为1~{MAX_ITEM_NAME_CHARS} (item name length)")
    if not item.id_type or len(item.id_type) > MAX_ITEM_TYPE_CHARS:
        raise TemplateError(f"模板项类型长度应为1~{MAX_ITEM_TYPE_CHARS} (idType length)")
    if item.id_index in RESERVED_INDEXES or item.id_index < FIRST_TEMPLATE_ITEM_INDEX:
        raise TemplateError(
            f"模板项索引{item.id_index}不可用，索引从{FIRST_TEMPLATE_ITEM_INDEX}开始 "
            "(1000, 1001 and 1999 are reserved)"
        )
    if item.id_index > 2**31 - 1:
        raise TemplateError(f"模板项索引{item.id_index}超出范围 (index out of range)")
    if item.value_type not in VALUE_TYPES:
        raise TemplateError(
            f"不支持的元数据类型{item.value_type!r}，仅支持 string (metadata.type must be 'string')"
        )
    if item.state not in (0, 1):
        raise TemplateError(f"模板项状态应为0或1 (state {item.state})")
    lo, hi = item.min_length, item.max_length
    if lo is not None and not 0 <= lo <= MAX_VALUE_CHARS:
        raise TemplateError(f"minLength 应在0~{MAX_VALUE_CHARS}之间")
    if hi is not None and not 1 <= hi <= MAX_VALUE_CHARS:
        raise TemplateError(f"maxLength 应在1~{MAX_VALUE_CHARS}之间")
    if lo is not None and hi is not None and lo > hi:
        raise TemplateError("minLength 不能大于 maxLength")


def check_items(items: Sequence[TemplateItem]) -> tuple[TemplateItem, ...]:
    """Validate a complete item list: each item sane, indexes and types unique."""
    if not items:
        raise TemplateError("模板至少需要一个模板项 (a template needs at least one item)")
    if len(items) > MAX_ITEMS:
        raise TemplateError(f"模板项不能超过{MAX_ITEMS}个")
    seen_index: set[int] = set()
    seen_type: set[str] = set()
    for item in items:
        _check_item(item)
        if item.id_index in seen_index:
            raise TemplateError(f"模板项索引{item.id_index}重复 (duplicate idIndex)")
        if item.id_type in seen_type:
            raise TemplateError(f"模板项类型{item.id_type}重复 (duplicate idType)")
        seen_index.add(item.id_index)
        seen_type.add(item.id_type)
    return tuple(items)


def assign_indexes(items: Iterable[TemplateItem | tuple[TemplateItem, bool]]) -> list[TemplateItem]:
    """Give items created without ``idIndex`` the next free index from 2000.

    Items are passed as ``(item, has_index)`` pairs; the placeholder index of
    an item without one is ignored.
    """
    pairs = [(i, True) if isinstance(i, TemplateItem) else i for i in items]
    taken = {item.id_index for item, has_index in pairs if has_index}
    next_index = FIRST_TEMPLATE_ITEM_INDEX
    result: list[TemplateItem] = []
    for item, has_index in pairs:
        if has_index:
            result.append(item)
            continue
        while next_index in taken or next_index in RESERVED_INDEXES:
            next_index += 1
        taken.add(next_index)
        result.append(replace(item, id_index=next_index))
    return result


@dataclass(frozen=True, slots=True)
class ItemChange:
    """One entry of a v5 template update."""

    name: str
    id_type: str
    id_index: int | None
    required: bool
    state: int | None
    value_type: str
    min_length: int | None
    max_length: int | None
    public: bool | None

    def new_item(self, id_index: int) -> TemplateItem:
        """The item this entry defines when it adds one: enabled and public unless
        it says otherwise."""
        return TemplateItem(
            name=self.name,
            id_type=self.id_type,
            id_index=id_index,
            required=self.required,
            state=1 if self.state is None else self.state,
            value_type=self.value_type,
            min_length=self.min_length,
            max_length=self.max_length,
            public=True if self.public is None else self.public,
        )


def merge_update(
    existing: Sequence[TemplateItem], changes: Sequence[ItemChange]
) -> tuple[TemplateItem, ...]:
    """Apply SNMS v5 update semantics.

    An item with ``idIndex`` must match an existing item's index and type and
    replaces its definition (``state`` omitted: unchanged). An item without
    ``idIndex`` is new and gets the next free index. Items not mentioned stay
    as they are: values registered against them must keep their meaning.
    """
    by_index = {item.id_index: item for item in existing}
    updated = dict(by_index)
    new_items: list[tuple[TemplateItem, bool]] = []
    for change in changes:
        if change.id_index is not None:
            current = by_index.get(change.id_index)
            if current is None:
                raise TemplateError(f"模板项索引{change.id_index}不存在 (unknown idIndex)")
            if current.id_type != change.id_type:
                raise TemplateError(
                    f"模板项索引{change.id_index}的类型为{current.id_type}，不可修改为{change.id_type}"
                )
            updated[change.id_index] = replace(
                current,
                name=change.name,
                required=change.required,
                state=current.state if change.state is None else change.state,
                value_type=change.value_type,
                min_length=change.min_length,
                max_length=change.max_length,
                public=current.public if change.public is None else change.public,
            )
        else:
            new_items.append((change.new_item(0), False))
    merged = assign_indexes([(item, True) for item in updated.values()] + new_items)
    return check_items(sorted(merged, key=lambda item: item.id_index))


def check_record(items: Sequence[TemplateItem], values: Sequence[RecordValue]) -> None:
    """Check an identifier's values against its template; raise on the first fault."""
    by_index = {item.id_index: item for item in items}
    seen: set[int] = set()
    for value in values:
        if value.index in RESERVED_INDEXES:
            raise TemplateError(f"非法操作，索引{value.index}为保留索引 (reserved index)")
        item = by_index.get(value.index)
        if item is None:
            raise TemplateError(f"非法操作，索引{value.index}在模板中不存在")
        if value.index in seen:
            raise TemplateError(f"非法操作，索引{value.index}重复 (duplicate index)")
        seen.add(value.index)
        if value.type != item.id_type:
            raise TemplateError(
                f"非法操作，索引{value.index}的类型应为{item.id_type} (got {value.type!r})"
            )
        if not item.enabled:
            raise TemplateError(f"非法操作，模板项{item.id_type}已停用 (item disabled)")
        length = len(value.value)
        lo = item.min_length if item.min_length is not None else 0
        hi = item.max_length if item.max_length is not None else MAX_VALUE_CHARS
        if not lo <= length <= hi:
            raise TemplateError(
                f"{item.id_type}的值长度应为{lo}~{hi}，实际为{length} (value length out of range)"
            )
        if value.auth not in ("", "0", "1", PUBLIC_AUTH, RESTRICTED_AUTH):
            raise TemplateError(
                f"auth 取值应为 public 或 restricted (index {value.index}: {value.auth!r})"
            )
    for item in items:
        if item.required and item.enabled and item.id_index not in seen:
            raise TemplateError(f"缺少必填项{item.id_type}(索引{item.id_index})")


def value_is_public(item: TemplateItem, value: RecordValue) -> bool:
    """Data permission of one value: its own ``auth`` first, else the item's default."""
    if value.auth == RESTRICTED_AUTH:
        return False
    if value.auth == PUBLIC_AUTH:
        return True
    return item.public


def check_handle_values(
    items: Sequence[TemplateItem], version: str, version_index: int, values: Sequence[Any]
) -> None:
    """Keep a templated record consistent when it is written through the Handle API.

    Values at the template's indexes keep their item's type and length; the
    template version value stays; required items stay. Other indexes are free.
    """
    by_index = {v.index: v for v in values}
    marker = by_index.get(version_index)
    if marker is None or marker.data != version.encode("utf-8"):
        raise TemplateError(
            f"index {version_index} holds the template version {version!r}; "
            "change it through the SNMS data API"
        )
    for item in items:
        value = by_index.get(item.id_index)
        if value is None:
            if item.required and item.enabled:
                raise TemplateError(
                    f"template item {item.id_type} (index {item.id_index}) is required"
                )
            continue
        if value.type != item.id_type:
            raise TemplateError(f"index {item.id_index} must have type {item.id_type}")
        try:
            length = len(value.data.decode("utf-8"))
        except UnicodeDecodeError:
            raise TemplateError(f"index {item.id_index} must hold UTF-8 text") from None
        lo = item.min_length if item.min_length is not None else 0
        hi = item.max_length if item.max_length is not None else MAX_VALUE_CHARS
        if not lo <= length <= hi:
            raise TemplateError(f"{item.id_type} must be {lo}..{hi} characters long")
