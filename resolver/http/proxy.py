"""The redirect proxy: ``GET /<handle>`` goes to the record's URL, as hdl.handle.net
does; ``?noredirect`` (and ``GET /``, with its search box) show the lookup page.

Anonymous visitors see public values, from the answer cache. A caller who sends
credentials (as the REST API takes them) sees what it may read, resolved for it
alone: never from nor into the shared cache, and marked ``no-store``."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from aiohttp import web

from metrics.tally import NO_PREFIX, TALLY
from registry.errors import InvalidName, RegistryError, StorageUnavailable

from ..resolution import Query, RecursionBusy, Resolution, Status
from .keys import AUTH, REGISTRY, RESOLVER
from .page import error_page, home_page, record_page

log = logging.getLogger("idnode.proxy")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_REDIRECT_SCHEMES = ("http", "https", "ftp")


@dataclass(frozen=True, slots=True)
class ProxyAnswer:
    status: int
    location: str | None
    page: str
    outcome: str
    prefix: str


def redirect_target(resolution: Resolution) -> str | None:
    """The first URL value (lowest index) with a scheme a browser may follow."""
    if resolution.status is not Status.FOUND:
        return None
    for value in resolution.values:
        vtype = value.type.upper()
        if vtype != "URL" and not vtype.startswith("URL."):
            continue
        try:
            url = value.data.decode("utf-8").strip()
        except UnicodeDecodeError:
            continue
        if urlsplit(url).scheme.lower() in _REDIRECT_SCHEMES and "\n" not in url:
            return url
    return None


_PAGE_STATUS = {
    Status.FOUND: 200,
    Status.VALUES_NOT_FOUND: 200,
    Status.REFERRAL: 200,
    Status.NOT_FOUND: 404,
    Status.NOT_HERE: 404,
    Status.UNREACHABLE: 504,
}


def handle_pattern(node_prefix: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(node_prefix)}(?:\.[0-9]+)*/[^\s,;，；<>\"']+")


PRIVATE = {"Cache-Control": "no-store"}
"""On answers made for one authenticated caller: no cache may keep them."""


def _html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


async def _lookup(request: web.Request, text: str, redirect: bool) -> web.Response:
    started = time.perf_counter()

    def counted(outcome: str, prefix: str = NO_PREFIX) -> None:
        TALLY.count("http", outcome, prefix, time.perf_counter() - started)

    resolver = request.app[RESOLVER]
    pattern = handle_pattern(request.app[REGISTRY].node_prefix)
    try:
        name = resolver.parse(text)
    except InvalidName as exc:
        counted("error")
        return _html(error_page(f"标识格式错误 · Invalid identifier: {exc}", text), 400)

    def encode(resolution: Resolution) -> ProxyAnswer:
        page = record_page(resolution, pattern)
        status, location = _PAGE_STATUS[resolution.status], redirect_target(resolution)
        return ProxyAnswer(status, location, page, resolution.outcome, resolution.account_prefix)

    try:
        try:
            caller = await request.app[AUTH].caller(request)
        except RegistryError as exc:
            counted("error")
            return _html(error_page(f"身份验证失败 · {exc}", text), 401)
        private = {} if caller.anonymous else PRIVATE
        # A browser cannot follow a referral: names served elsewhere are
        # resolved there when the node allows recursion.
        if caller.anonymous:
            answer = await resolver.answer(name, Query(), ("proxy",), encode, recurse=True)
        else:
            answer = encode(await resolver.resolve(name, Query(), caller, recurse=True))
    except StorageUnavailable as exc:
        log.error("storage unavailable for the proxy: %s", exc)
        counted("error")
        return _html(error_page("服务繁忙 · Storage is unavailable; try again shortly.", text), 503)
    except RecursionBusy:
        counted("error")
        busy = "服务繁忙 · Too many lookups in progress; try again shortly."
        return _html(error_page(busy, text), 503)
    counted(answer.outcome, answer.prefix)
    if redirect and answer.location is not None:
        raise web.HTTPFound(answer.location, headers={**SECURITY_HEADERS, **private})
    return _html(answer.page, answer.status, private)


async def home(request: web.Request) -> web.Response:
    wanted = request.query.get("handle", "").strip()
    if not wanted:
        return _html(home_page())
    return await _lookup(request, wanted, redirect=False)


async def resolve(request: web.Request) -> web.Response:
    try:
        text = unquote(request.raw_path.split("?", 1)[0][1:], errors="strict")
    except UnicodeDecodeError:
        return _html(error_page("标识不是合法的UTF-8 · The identifier is not valid UTF-8."), 400)
    return await _lookup(request, text, redirect="noredirect" not in request.query)


def add_routes(app: web.Application) -> None:
    """Registered last: a catch-all for names (all of the node's start with a digit)."""
    app.router.add_get("/", home)
    app.router.add_get(r"/{handle:[0-9][\s\S]*}", resolve)  # any character, newlines too
