"""The SNMS response envelope and the one table that maps errors onto it.

Every SNMS answer is ``{"message", "status", "data"}`` with HTTP 200, as the
reference serves it: status 1 success, -1 not logged in, -2 business
failure, -3 no permission, -4 internal error. Only transport-level faults
use other HTTP statuses (413 body too large, 404/405 unknown endpoint, 503
database unavailable, 500 for a bug).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy.exc import DataError

from ..errors import (
    AlreadyExists,
    Forbidden,
    InvalidRequest,
    LoginFailed,
    NotFound,
    RegistryError,
    StorageUnavailable,
    Throttled,
    Unauthenticated,
)
from ..services import Actor, Registry
from ..tokens import InvalidToken, TokenIssuer

log = logging.getLogger("idnode.api")

OK = 1
NOT_LOGGED_IN = -1
FAILED = -2
NO_PERMISSION = -3
INTERNAL = -4

STATUS_OF: dict[type[RegistryError], int] = {
    InvalidRequest: FAILED,
    NotFound: FAILED,
    AlreadyExists: FAILED,
    LoginFailed: FAILED,
    Unauthenticated: NOT_LOGGED_IN,
    Forbidden: NO_PERMISSION,
}

REGISTRY = web.AppKey("registry", Registry)
TOKENS = web.AppKey("tokens", TokenIssuer)


def envelope(
    status: int, message: str, data: Any = None, *, http_status: int = 200
) -> web.Response:
    body = json.dumps({"message": message, "status": status, "data": data}, ensure_ascii=False)
    return web.Response(
        text=body, status=http_status, content_type="application/json", charset="utf-8"
    )


def success(data: Any = True) -> web.Response:
    return envelope(OK, "success", data)


def status_of(error: RegistryError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return FAILED


def client_address(request: web.Request) -> str:
    return request.remote or ""


async def actor_of(request: web.Request) -> Actor:
    """The authenticated caller of a request, from its bearer token."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        raise Unauthenticated("没有登录，需要验证 (missing bearer token)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = header  # some clients send the bare token
    try:
        claims = request.app[TOKENS].verify(token.strip())
    except InvalidToken as exc:
        request.app[REGISTRY].services.auth_failed("token")
        raise Unauthenticated(f"token无效或已过期 ({exc})") from None
    principal = await request.app[REGISTRY].accounts.principal(
        claims.user_id,
        claims.via,
        access_key_id=claims.access_key_id,
        fingerprint=claims.fingerprint,
    )
    return Actor(principal=principal, remote=client_address(request))


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL (PostgreSQL text cannot hold it) and lone surrogates (not encodable as UTF-8)."""
MAX_JSON_DEPTH = 32
_MAY_BE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\x00|\xed")
"""What in a JSON text can decode to NUL or a lone surrogate: the escapes \\u0000 and
\\uD800-\\uDFFF, a NUL byte (or a UTF-16/32 text) and a UTF-8 lead byte 0xED."""


def check_text(text: str, where: str) -> str:
    if _UNSTORABLE.search(text):
        raise InvalidRequest(f"{where} 含有非法字符 (NUL or unpaired surrogate)")
    return text


def _check_document(document: Any, *, strings: bool = True) -> None:
    """Every string in a parsed JSON document is storable; nesting is bounded.
    ``strings=False``: the text held no escape or byte that could make an
    unstorable one, so only the nesting is walked."""
    if not isinstance(document, dict | list):
        if strings and isinstance(document, str):
            check_text(document, "请求体")
        return
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequest(f"JSON嵌套过深 (deeper than {MAX_JSON_DEPTH})")
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in children:
            if strings:
                if isinstance(key, str):
                    check_text(key, "请求体")
                if isinstance(value, str):
                    check_text(value, "请求体")
            if isinstance(value, dict | list):
                stack.append((value, depth + 1))


async def json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise InvalidRequest("请求体不能为空 (empty body)")
    try:
        document = json.loads(raw)
    except ValueError as exc:  # bad JSON, bad UTF-8, an integer of thousands of digits
        raise InvalidRequest(f"请求体不是合法的JSON ({exc})") from None
    except RecursionError:
        raise InvalidRequest("JSON嵌套过深 (too deeply nested)") from None
    # Without anything that could decode to NUL or a lone surrogate, no string needs a look.
    _check_document(document, strings=_MAY_BE_UNSTORABLE.search(raw) is not None)
    return document


Handler = Callable[[web.Request], Awaitable[web.Response]]
AuthedHandler = Callable[[web.Request, Actor], Awaitable[web.Response]]


def _guard(run: Handler) -> Handler:
    @functools.wraps(run)
    async def guarded(request: web.Request) -> web.Response:
        try:
            for name, value in (*request.query.items(), *request.match_info.items()):
                check_text(value, name)
            return await run(request)
        except Throttled as exc:
            response = envelope(status_of(exc), str(exc), http_status=429)
            response.headers["Retry-After"] = exc.retry_after_header
            return response
        except RegistryError as exc:
            return envelope(status_of(exc), str(exc))
        except web.HTTPRequestEntityTooLarge:
            return envelope(FAILED, "请求体过大 (request body too large)", http_status=413)
        except DataError as exc:
            # Validation should have stopped this before the database did.
            log.warning(
                "database refused data on %s %s: %s", request.method, request.path, exc.orig
            )
            return envelope(FAILED, "数据不合法 (the database refused a value)")
        except StorageUnavailable as exc:
            log.error("database unavailable on %s %s: %s", request.method, request.path, exc)
            return envelope(INTERNAL, "系统繁忙 (database unavailable)", http_status=503)
        except ConnectionResetError:  # the client hung up before its body was in
            log.info("client left during %s %s", request.method, request.path)
            return envelope(FAILED, "请求不完整 (incomplete request)", http_status=400)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return envelope(INTERNAL, "系统内部错误 (internal error)", http_status=500)

    return guarded


def public(handler: Handler) -> Handler:
    """An SNMS endpoint that needs no login (the token endpoints)."""
    return _guard(handler)


def authenticated(handler: AuthedHandler) -> Handler:
    """An SNMS endpoint that needs a bearer token; the handler gets the caller."""

    async def run(request: web.Request) -> web.Response:
        actor = await actor_of(request)
        request.app[REGISTRY].services.admit(actor, "http")
        return await handler(request, actor)

    return _guard(functools.wraps(handler)(run))
