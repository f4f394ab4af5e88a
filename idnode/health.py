"""Health and metrics over HTTP: ``/healthz`` (the process reaches its database),
``/readyz`` (and the schema is the one this code needs), ``/metrics`` (every
process of the node added up) — on the node's HTTP port, and with ``--metrics``
on a listener of their own."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from metrics import exposition
from registry.db import DatabaseError, check_schema, head_revision

from .config import Config
from .listen import announce, listen_service

HEALTH_ENGINE = web.AppKey("engine", AsyncEngine)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers and reaches its database."""
    try:
        async with request.app[HEALTH_ENGINE].connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not healthy", never a 500
        return web.json_response({"status": "unavailable", "database": str(exc)[:200]}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database is reachable and its schema is the one this code needs."""
    try:
        await check_schema(request.app[HEALTH_ENGINE])
    except DatabaseError as exc:
        return web.json_response({"status": "not ready", "schema": str(exc)[:200]}, status=503)
    except Exception as exc:  # unreachable, timed out...: not ready, never a 500
        return web.json_response({"status": "not ready", "database": str(exc)[:200]}, status=503)
    return web.json_response({"status": "ready", "database": "ok", "schema": head_revision()})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: every process of the node added up."""
    return web.Response(body=exposition.render(), headers={"Content-Type": exposition.CONTENT_TYPE})


def add_health_routes(app: web.Application, db: AsyncEngine) -> None:
    app[HEALTH_ENGINE] = db
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def start_metrics_listener(config: Config, db: AsyncEngine) -> web.AppRunner | None:
    """``--metrics HOST:PORT``: health and metrics on a port of their own."""
    endpoint = config.metrics_endpoint()
    if endpoint is None:
        return None
    sockets = listen_service(config, endpoint, udp=False)
    app = web.Application()
    add_health_routes(app, db)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    for sock in sockets.tcp:
        await web.SockSite(runner, sock).start()
    announce("metrics", sockets.endpoint, sockets.twins)
    return runner
