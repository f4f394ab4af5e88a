"""Reverse lookup compatible with EUDAT's HRLS, as pyhandle's ``search_handle`` uses it.

``GET /hrls/handles?URL=<value>&CHECKSUM=<value>`` lists the handles having
a value of each type equal to the given text (``*`` matches any run of
characters); conditions are AND-ed. ``limit`` (default 1000, at most
100,000) and ``page`` (from 0) page the result; ``retrieverecords=true``
returns whole records instead of names.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from .. import codes as rc
from ..resolution import Query, Status
from .keys import AUTH, REGISTRY, RESOLVER
from .rest import ApiError, api_endpoint, flag, render
from .values_json import value_json

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
MAX_RECORDS = 1000
"""With ``retrieverecords`` every name is resolved: fewer per page."""
_CONTROL = {"limit", "page", "retrieverecords", "pretty", "callback"}


def like_pattern(text: str) -> tuple[str, bool]:
    """HRLS text with ``*`` wildcards → a LIKE pattern (escape ``\\``) and whether
    it has a wildcard at all."""
    if "*" not in text:
        return text, False
    escaped = re.sub(r"([\\%_])", r"\\\1", text)
    return escaped.replace("*", "%"), True


def _number(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw.strip()):
        raise ApiError(rc.RC_PROTOCOL_ERROR, f"invalid {name} {raw!r}")
    return min(int(raw), maximum)


@api_endpoint
async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK")


@api_endpoint
async def search(request: web.Request) -> web.Response:
    caller = await request.app[AUTH].caller(request)
    conditions = []
    for key, value in request.query.items():
        if key in _CONTROL:
            continue
        if "\x00" in key or "\x00" in value:
            raise ApiError(rc.RC_PROTOCOL_ERROR, "conditions may not contain NUL")
        pattern, wildcard = like_pattern(value)
        conditions.append((key, pattern, wildcard))
    if not conditions:
        raise ApiError(rc.RC_PROTOCOL_ERROR, "give at least one TYPE=value condition")
    with_records = flag(request, "retrieverecords")
    limit = _number(request, "limit", DEFAULT_LIMIT, MAX_RECORDS if with_records else MAX_LIMIT)
    page = _number(request, "page", 0, 10**9)
    names = await request.app[REGISTRY].handles.reverse_lookup(
        caller,
        conditions,
        prefix=request.match_info.get("prefix"),
        offset=page * limit,
        limit=limit,
    )
    if not with_records:
        return _private(render(request, 200, names))
    resolver = request.app[RESOLVER]
    records: list[dict[str, Any]] = []
    for name in names:
        resolution = await resolver.resolve(resolver.parse(name), Query(), caller)
        if resolution.status is Status.FOUND:
            records.append({"handle": name, "values": [value_json(v) for v in resolution.values]})
        await asyncio.sleep(0)  # a long page must not hold up other requests
    return _private(render(request, 200, records))


def _private(response: web.Response) -> web.Response:
    """Results depend on what the caller may read: no cache may keep them."""
    response.headers["Cache-Control"] = "no-store"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/hrls/ping", ping)
    # pyhandle asks for "/hrls/handles/"; HRLS also takes "/hrls/handles/<prefix>".
    app.router.add_get("/hrls/handles", search)
    app.router.add_get("/hrls/handles/", search)
    app.router.add_get(r"/hrls/handles/{prefix:[\s\S]+}", search)
