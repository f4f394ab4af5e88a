"""Per-client request limits on the HTTP port (resolver.limits): over its rate
or its day's requests, a client gets 429 with ``Retry-After`` and a JSON body in
the REST API's terms; health checks and metrics are never limited (nor counted
in the traffic table, metrics.traffic, which sees every other answer)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from metrics.instruments import RATE_LIMITED
from metrics.traffic import ClientTraffic

from .. import codes as rc
from ..limits import Guard, Limit

UNLIMITED = frozenset({"/healthz", "/readyz", "/metrics"})


def limit_clients(guard: Guard, traffic: ClientTraffic | None = None) -> Middleware:
    """Refuse a client over its limits; count every answer in ``traffic``."""

    def see(remote: str, *, not_found: bool) -> None:
        if traffic is not None:
            traffic.see(remote, not_found=not_found)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNLIMITED:
            return await handler(request)
        remote = request.remote or ""
        refusal = guard.client(remote)
        if refusal is None:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                see(remote, not_found=exc.status == 404)
                raise
            see(remote, not_found=response.status == 404)
            return response
        see(remote, not_found=False)
        RATE_LIMITED.labels("http", "refused").inc()
        daily = refusal.limit is Limit.DAILY
        body = {
            "responseCode": rc.RC_REQUEST_LIMIT_DAILY if daily else rc.RC_SERVER_TOO_BUSY,
            "message": "daily request limit reached" if daily else "too many requests",
            "retryAfter": int(refusal.retry_after_header),
        }
        return web.json_response(
            body, status=429, headers={"Retry-After": refusal.retry_after_header}
        )

    return middleware
