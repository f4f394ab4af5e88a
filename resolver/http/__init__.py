"""HTTP resolution: the HANDLE.NET REST API, reverse lookup, the redirect proxy
and its lookup page — thin adapters around the resolver and the registry."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from registry.services import Registry
from registry.tokens import TokenIssuer
from registry.trust import TrustRoot

from ..resolution import Resolver
from ..verification import Verification
from . import hrls, proxy, rest, signing, verify
from .auth import Authenticator
from .keys import AUTH, REGISTRY, RESOLVER

__all__ = ["setup"]

_CORS_PATHS = ("/api/", "/hrls/")


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Browsers may call the APIs from any origin, without credentials."""
    if not request.path.startswith(_CORS_PATHS):
        return await handler(request)
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = "86400"
    else:
        response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def setup(
    app: web.Application,
    resolver: Resolver,
    registry: Registry,
    tokens: TokenIssuer,
    *,
    allow_plain_http_auth: bool = False,
    trust_root: TrustRoot | None = None,
) -> None:
    """``trust_root``: whom ``/api/verify`` believes (default: HANDLE.NET's root
    handle with no keys, so that no chain is trusted)."""
    app[RESOLVER] = resolver
    app[REGISTRY] = registry
    app[AUTH] = Authenticator(registry, tokens, allow_plain_http=allow_plain_http_auth)
    resolver.followers.append(app[AUTH].on_changes)
    app.middlewares.append(cors)
    verify.add_routes(app, Verification(resolver, trust_root or TrustRoot()))
    signing.add_routes(app)  # before the REST API's catch-all under /api/
    rest.add_routes(app)
    hrls.add_routes(app)
    proxy.add_routes(app)
