"""``idnode sync``: run the sync worker against the top-level node on its own,
show its state, send parked events again, or compare what the top-level node
holds with the registry (sync/PROTOCOL.md)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp

from registry import store
from registry.db import read_transaction, write_transaction
from sync.worker import Unavailable as SyncUnavailable
from sync.worker import asked_wait

from . import logs
from .config import Config, ConfigError
from .health import start_metrics_listener
from .listen import StartupError
from .node import open_node, stop_on_signals, sync_worker
from .site import configured_site

log = logging.getLogger("idnode")


async def run(config: Config, action: str, reload: Callable[[], Config] | None = None) -> int:
    """``idnode sync [run|status|retry|verify]``."""
    async with open_node(config) as node:
        if action == "status":
            async with read_transaction(node.db) as conn:
                counts = await store.outbox_counts(conn)
                state = await store.sync_state(conn)
                routes = await store.foreign_routes(conn)
            lag = 0.0
            if counts.oldest_pending is not None:
                lag = (datetime.now(UTC) - counts.oldest_pending).total_seconds()
            print(f"backlog {counts.pending} events, lag {lag:.1f} s")
            print(f"parked {counts.parked} events")
            print(f"delivered {counts.delivered} events")
            print(f"last success {state.get('last_success', 'never')}")
            print(f"top-level high water {state.get('high_water', '0')}")
            print(f"routes pulled through {state.get('routes_next', '0')}; {len(routes)} foreign")
            if until := asked_wait(state):
                print(f"waiting until {until} (top-level node asked)")
            return 0
        if action == "retry":
            async with write_transaction(node.db) as conn:
                count = await store.unpark(conn)
            print(f"{count} parked events will be sent again")
            return 0
        if not config.toplevel:
            raise StartupError("no top-level node: set --toplevel URL (or IDNODE_TOPLEVEL)")
        stop = stop_on_signals()
        if reload is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reload_logging, reload)
        async with aiohttp.ClientSession() as session:
            worker = sync_worker(node, session, configured_site(config), config.time_zone_info())
            if action == "verify":
                try:
                    fixed = await worker.verify()
                except SyncUnavailable as exc:
                    print(f"idnode: {exc}", file=sys.stderr)
                    return 1
                for prefix, (sent, withdrawn) in fixed.items():
                    print(f"{prefix}: {sent} re-sent, {withdrawn} withdrawn")
                print(f"verified: {len(fixed)} prefixes differed; `idnode sync` delivers the fixes")
                return 0
            metrics_runner = await start_metrics_listener(config, node.db)
            print(f"syncing {config.node_prefix} with {config.toplevel}", flush=True)
            try:
                await worker.run(stop)
            finally:
                if metrics_runner is not None:
                    await metrics_runner.cleanup()
    return 0


def _reload_logging(reload: Callable[[], Config]) -> None:
    """SIGHUP in a process that serves no clients (``idnode sync``): the logging
    settings read again; the rest waits for a restart. A signal meant for every
    idnode process (log rotation, say) must not end this one."""
    try:
        wanted = reload()
    except ConfigError as exc:
        log.error("reload refused, running settings kept: %s", exc)
        return
    logs.setup(wanted.log_format, wanted.log_level)
    log.info("reloaded the logging settings")
