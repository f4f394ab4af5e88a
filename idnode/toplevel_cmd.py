"""``idnode toplevel``: run the mock national top-level node (sync/PROTOCOL.md)."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from sqlalchemy.exc import ArgumentError, DBAPIError

import resolver.handle.server
from registry.db import create_engine, describe_error, url_for_log
from sync.toplevel import ledger
from sync.toplevel.app import SERVER, Faults, TopLevel, build_app
from sync.toplevel.native import TopLevelHandle

from .config import Config
from .listen import StartupError, announce, bind_pair, bind_tcp, bound
from .node import stop_on_signals
from .site import node_site

log = logging.getLogger("idnode")


async def serve_toplevel(config: Config) -> None:
    """Serve the mock top-level node until SIGINT or SIGTERM."""
    try:
        engine = create_engine(config.toplevel_database_url)
    except (ArgumentError, ImportError) as exc:
        raise StartupError(f"bad database URL {config.toplevel_database_url!r}: {exc}") from None
    try:
        try:
            await ledger.create(engine)
        except (OSError, DBAPIError) as exc:
            raise StartupError(f"database unavailable: {describe_error(exc)}") from None
        log.info("top-level database %s", url_for_log(config.toplevel_database_url))
        stop = stop_on_signals()
        # A SIGHUP sent to every idnode process (log rotation, say) must not end this one.
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, log.info, "SIGHUP: the mock top-level node has nothing to reload"
        )
        sock = bind_tcp(config.toplevel_http)
        try:
            faults = Faults.parse(config.toplevel_faults)
        except (TypeError, ValueError) as exc:
            raise StartupError(f"bad toplevel_faults: {exc}") from None
        handle_tcp, handle_udp = bind_pair(config.toplevel_handle)
        handle = bound(handle_tcp)
        site = node_site(config, bound(sock), tls=False, handle=handle, description=SERVER)
        native = TopLevelHandle(engine, site)
        app = build_app(TopLevel(engine, faults=faults))
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        listeners = await resolver.handle.server.start(native, handle_tcp, handle_udp)
        try:
            await web.SockSite(runner, sock).start()
            announce("http", bound(sock))
            announce("handle", handle)
            await stop.wait()
        finally:
            await listeners.close()
            await runner.cleanup()
    finally:
        await engine.dispose()
