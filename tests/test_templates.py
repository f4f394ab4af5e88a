"""Template definitions and checking identifier values against them."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from registry.models import TemplateItem
from registry.templates import (
    ItemChange,
    RecordValue,
    TemplateError,
    assign_indexes,
    check_items,
    check_record,
    merge_update,
    value_is_public,
)


def item(id_type: str, index: int, **kw: object) -> TemplateItem:
    return TemplateItem(name=id_type, id_type=id_type, id_index=index, **kw)  # type: ignore[arg-type]


ITEMS = (
    item("URL", 2000, required=True),
    item("name", 2001, required=True, min_length=2, max_length=5),
    item("note", 2002),
    item("old", 2003, state=0),
    item("secret", 2004, public=False),
)


def test_conforming_record_passes() -> None:
    check_record(ITEMS, [RecordValue(2000, "URL", "https://x"), RecordValue(2001, "name", "abc")])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([RecordValue(2000, "URL", "u"), RecordValue(1000, "x", "v")], "保留索引"),
        ([RecordValue(2000, "URL", "u"), RecordValue(1001, "TEMPLATE", "v")], "保留索引"),
        (
            [
                RecordValue(2000, "URL", "u"),
                RecordValue(2001, "name", "ab"),
                RecordValue(2999, "x", "v"),
            ],
            "索引2999在模板中不存在",
        ),
        ([RecordValue(2000, "url", "u"), RecordValue(2001, "name", "ab")], "类型应为URL"),
        (
            [
                RecordValue(2000, "URL", "u"),
                RecordValue(2000, "URL", "u"),
                RecordValue(2001, "name", "ab"),
            ],
            "重复",
        ),
        ([RecordValue(2000, "URL", "u"), RecordValue(2001, "name", "a")], "长度"),
        ([RecordValue(2000, "URL", "u"), RecordValue(2001, "name", "abcdef")], "长度"),
        ([RecordValue(2000, "URL", "u" * 256), RecordValue(2001, "name", "ab")], "长度"),
        ([RecordValue(2000, "URL", "u")], "缺少必填项name"),
        (
            [
                RecordValue(2000, "URL", "u"),
                RecordValue(2001, "name", "ab"),
                RecordValue(2003, "old", "v"),
            ],
            "已停用",
        ),
        ([RecordValue(2000, "URL", "u", auth="nobody"), RecordValue(2001, "name", "ab")], "auth"),
    ],
)
def test_violations_are_named(values: list[RecordValue], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        check_record(ITEMS, values)


def test_data_permission_from_value_then_item() -> None:
    url, secret = ITEMS[0], ITEMS[4]
    assert value_is_public(url, RecordValue(2000, "URL", "u"))
    assert not value_is_public(url, RecordValue(2000, "URL", "u", auth="restricted"))
    assert not value_is_public(secret, RecordValue(2004, "secret", "s"))
    assert value_is_public(secret, RecordValue(2004, "secret", "s", auth="public"))


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "至少需要一个"),
        ([item("a", 1999)], "不可用"),
        ([item("a", 1000)], "不可用"),
        ([item("a", 100)], "不可用"),
        ([item("a", 2000), item("b", 2000)], "索引2000重复"),
        ([item("a", 2000), item("a", 2001)], "类型a重复"),
        ([item("a", 2000, value_type="String")], "string"),
        ([item("a", 2000, min_length=5, max_length=2)], "minLength"),
        ([item("a", 2000, max_length=256)], "maxLength"),
        ([TemplateItem(name="", id_type="a", id_index=2000)], "名称"),
    ],
)
def test_bad_templates_are_refused(items: list[TemplateItem], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        check_items(items)


def test_missing_indexes_are_assigned_from_2000_skipping_taken() -> None:
    result = assign_indexes([(item("a", 0), False), (item("b", 2000), True), (item("c", 0), False)])
    assert [i.id_index for i in result] == [2001, 2000, 2002]


def change(id_type: str, index: int | None, **kw: object) -> ItemChange:
    defaults: dict[str, object] = {
        "name": id_type,
        "required": False,
        "state": None,
        "value_type": "string",
        "min_length": None,
        "max_length": None,
        "public": None,
    }
    defaults.update(kw)
    return ItemChange(id_type=id_type, id_index=index, **defaults)  # type: ignore[arg-type]


def test_v5_update_semantics() -> None:
    existing = (item("URL", 2000, required=True, id=1), item("name", 2001, state=0, id=2))
    merged = merge_update(existing, [change("URL", 2000, name="主页"), change("color", None)])
    by_type = {i.id_type: i for i in merged}
    assert by_type["URL"].name == "主页" and by_type["URL"].id == 1
    assert not by_type["URL"].required  # the update redefines the item
    assert by_type["name"].state == 0  # untouched item kept as it was
    assert by_type["color"].id_index == 2002 and by_type["color"].id is None
    # state omitted keeps it; given, it changes
    assert merge_update(existing, [change("name", 2001)])[1].state == 0
    assert merge_update(existing, [change("name", 2001, state=1)])[1].state == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ([change("URL", 2001)], "不可修改"),
        ([change("x", 2500)], "不存在"),
        ([change("URL", None)], "类型URL重复"),
    ],
)
def test_v5_update_refusals(changes: list[ItemChange], message: str) -> None:
    existing = (item("URL", 2000), item("name", 2001))
    with pytest.raises(TemplateError, match=message):
        merge_update(existing, changes)


id_types = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)


@st.composite
def template_and_record(draw: st.DrawFn) -> tuple[list[TemplateItem], list[RecordValue]]:
    types = draw(st.lists(id_types, min_size=1, max_size=8, unique=True))
    items = []
    for n, id_type in enumerate(types):
        lo = draw(st.integers(0, 5))
        hi = draw(st.integers(max(lo, 1), 20))
        items.append(
            item(id_type, 2000 + n, required=draw(st.booleans()), min_length=lo, max_length=hi)
        )
    values = []
    for it in items:
        if it.required or draw(st.booleans()):
            assert it.min_length is not None and it.max_length is not None
            text = draw(st.text(min_size=it.min_length, max_size=it.max_length))
            values.append(RecordValue(it.id_index, it.id_type, text))
    return items, draw(st.permutations(values))


@given(template_and_record())
def test_generated_conforming_records_pass(
    case: tuple[list[TemplateItem], list[RecordValue]],
) -> None:
    items, values = case
    check_items(items)
    check_record(items, values)


@given(template_and_record(), st.data())
def test_any_single_fault_is_caught(
    case: tuple[list[TemplateItem], list[RecordValue]], data: st.DataObject
) -> None:
    items, values = case
    assume(values)
    victim = data.draw(st.integers(0, len(values) - 1))
    v = values[victim]
    it = next(i for i in items if i.id_index == v.index)
    assert it.max_length is not None
    fault = data.draw(st.sampled_from(["type", "index", "long", "drop_required"]))
    broken = list(values)
    if fault == "type":
        broken[victim] = RecordValue(v.index, v.type + "X", v.value)
    elif fault == "index":
        broken[victim] = RecordValue(9999, v.type, v.value)
    elif fault == "long":
        broken[victim] = RecordValue(v.index, v.type, "x" * (it.max_length + 1))
    else:
        assume(it.required)
        del broken[victim]
    with pytest.raises(TemplateError):
        check_record(items, broken)
