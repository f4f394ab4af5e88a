"""Typed reading of JSON request bodies and query strings.

SNMS clients are loose with types (``"idIndex": "2000"``, ``"ipType": 6`` or
``"6"``, ``"udpPort": ""``), so numbers are accepted as JSON numbers or
decimal strings; anything else is a clear :class:`InvalidRequest`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""Every integer the API stores or looks up is a 32-bit database column."""
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 10, 1000
"""Items a page of the paging endpoints, unless ``pageSize`` says (up to the maximum)."""
_DECIMAL = re.compile(r"-?[0-9]{1,18}")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


def require_object(value: Any, what: str = "请求体") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{what}应为JSON对象 (expected a JSON object)")
    return value


def require_list(value: Any, what: str = "请求体") -> list[Any]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{what}应为JSON数组 (expected a JSON array)")
    return value


def text(
    obj: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    max_len: int = 255,
    default: str = "",
) -> str:
    value = obj.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"缺少必要的请求参数: {name}")
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidRequest(f"{name} 应为字符串 (expected a string)")
    result = str(value)
    if len(result) > max_len:
        raise InvalidRequest(f"{name} 长度不能超过{max_len} (too long)")
    return result


def optional_text(obj: Mapping[str, Any], name: str, *, max_len: int = 255) -> str | None:
    return text(obj, name, max_len=max_len) or None


def integer(
    obj: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    value = obj.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"缺少必要的请求参数: {name}")
        return None
    if isinstance(value, bool):
        raise InvalidRequest(f"{name} 应为整数 (expected an integer)")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        result = int(value.strip())
    else:
        raise InvalidRequest(f"{name} 应为整数 (expected an integer, got {value!r})")
    low = INT32_MIN if minimum is None else minimum
    high = INT32_MAX if maximum is None else maximum
    if result < low:
        raise InvalidRequest(f"{name} 不能小于{low}")
    if result > high:
        raise InvalidRequest(f"{name} 不能大于{high}")
    return result


def required_integer(
    obj: Mapping[str, Any], name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    result = integer(obj, name, required=True, minimum=minimum, maximum=maximum)
    assert result is not None
    return result


def boolean(obj: Mapping[str, Any], name: str, *, default: bool | None = None) -> bool | None:
    value = obj.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidRequest(f"{name} 应为布尔值 (expected true or false)")


def page_params(query: Mapping[str, str]) -> tuple[int, int]:
    current = integer(query, "currentPage", minimum=1) or 1
    size = integer(query, "pageSize", minimum=1, maximum=MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    return current, size
