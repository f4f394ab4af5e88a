"""Signing records over the Handle REST API — an extension: HANDLE.NET's REST API
has no signing endpoint (its tools sign on the client and write the values).

- ``POST /api/signatures/{handle}``: sign one record's public values with its
  enterprise's key (the node's when it has none); ``?signer=node`` insists on the
  node's key (node administrators), ``?signer=enterprise`` on the enterprise's.
  The answer: ``{"responseCode": 1, "handle", "index", "issuer"}``.
- ``POST /api/signatures`` with ``{"handles": [...], "signer"?}``: up to 500
  records, each signed or refused on its own (``results``, one response code each).

Callers authenticate as for every REST write (a Handle identity, an access key
or a token) and need the rights to add (and, to replace a signature, modify and
remove) values of the record. Errors are HANDLE.NET's response codes.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from registry.errors import RegistryError
from registry.services.signing import SignResult

from .. import codes as rc
from .keys import AUTH, REGISTRY
from .rest import ApiError, api_endpoint, render, requested_handle

ROOT = "/api/signatures"
MAX_HANDLE_CHARS = 1024


def _result_json(result: SignResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "handle": result.handle,
        "responseCode": rc.RC_SUCCESS if result.ok else rc.rc_of(_error_of(result)),
    }
    if result.ok:
        body["index"] = result.index
        body["issuer"] = result.issuer
    else:
        body["message"] = result.message
    return body


def _error_of(result: SignResult) -> RegistryError:
    return result.error if result.error is not None else RegistryError(result.message)


def _signer(request: web.Request, body: dict[str, Any] | None = None) -> str | None:
    chosen = body.get("signer") if body is not None else request.query.get("signer")
    if chosen is not None and not isinstance(chosen, str):
        raise ApiError(rc.RC_PROTOCOL_ERROR, "signer must be a string")
    return chosen or None


@api_endpoint
async def sign_one(request: web.Request) -> web.Response:
    handle = requested_handle(request, ROOT)
    caller = await request.app[AUTH].caller(request)
    try:
        result = await request.app[REGISTRY].trust.sign(caller, handle, signer=_signer(request))
    except RegistryError as exc:
        raise ApiError(rc.rc_of(exc), str(exc), handle) from None
    return render(request, 200, {"responseCode": rc.RC_SUCCESS, **_result_json(result)})


@api_endpoint
async def sign_many(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        raise ApiError(rc.RC_PROTOCOL_ERROR, "Content-Type must be application/json")
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):
        raise ApiError(rc.RC_PROTOCOL_ERROR, "request body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("handles"), list):
        raise ApiError(rc.RC_PROTOCOL_ERROR, 'the body must be {"handles": [...]}')
    names = body["handles"]
    for position, name in enumerate(names):
        if not isinstance(name, str) or not name or len(name) > MAX_HANDLE_CHARS:
            raise ApiError(
                rc.RC_PROTOCOL_ERROR,
                f"handles[{position}] must be a handle of 1 to {MAX_HANDLE_CHARS} characters",
            )
    caller = await request.app[AUTH].caller(request)
    results = await request.app[REGISTRY].trust.sign_many(
        caller, names, signer=_signer(request, body)
    )
    return render(
        request,
        200,
        {"responseCode": rc.RC_SUCCESS, "results": [_result_json(r) for r in results]},
    )


def add_routes(app: web.Application) -> None:
    """Before the REST API's catch-all for unknown paths under ``/api/``."""
    app.router.add_post(ROOT, sign_many)
    app.router.add_post(ROOT + r"/{handle:[\s\S]+}", sign_one)
