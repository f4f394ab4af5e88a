"""The registry's admin API over HTTP, compatible with the SNMS OpenAPI v5.

:func:`setup` adds its routes to the node's aiohttp application; handlers
are thin: parse, call a registry service, shape the envelope.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from ..services import Registry
from ..tokens import TokenIssuer
from . import data, enterprises, files, grants, identity, prefixes, templates, trust
from .envelope import FAILED, REGISTRY, TOKENS, envelope
from .prefixes import DEFAULT_TOPLEVEL_NAME, TOPLEVEL_NAME

__all__ = ["REGISTRY", "TOKENS", "setup"]

API_PREFIXES = ("/identity/", "/identityv2/", "/snms/")
MAX_BODY_BYTES = 32 * 1024 * 1024
"""A full batch of 2000 identifiers with their values fits comfortably."""


@web.middleware
async def unknown_endpoint(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods under the SNMS prefixes answer in the envelope."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        if not request.path.startswith(API_PREFIXES):
            raise
        return envelope(FAILED, f"接口不存在 (no endpoint {request.path})", http_status=404)
    except web.HTTPMethodNotAllowed as exc:
        if not request.path.startswith(API_PREFIXES):
            raise
        allowed = ", ".join(sorted(exc.allowed_methods))
        return envelope(
            FAILED,
            f"不支持的请求方法 {request.method} (allowed: {allowed})",
            http_status=405,
        )


def setup(
    app: web.Application,
    registry: Registry,
    tokens: TokenIssuer,
    *,
    toplevel_name: str = DEFAULT_TOPLEVEL_NAME,
) -> None:
    app[REGISTRY] = registry
    app[TOKENS] = tokens
    app[TOPLEVEL_NAME] = toplevel_name
    app.middlewares.append(unknown_endpoint)
    for module in (identity, data, templates, prefixes, enterprises, files, grants, trust):
        app.router.add_routes(module.routes)
