"""What runs in one worker process: the node's servers on its ports, a copy of
the node in all but supervision (idnode.workers starts and watches these)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

from .config import Config
from .listen import StartupError, announce
from .node import Node, open_node, settle_heap, stop_on_signals
from .reloading import apply_settings
from .servers import Servers, start_servers

log = logging.getLogger("idnode")


async def serve_worker(config: Config) -> None:
    """One more process on the node's ports (see ``--workers``)."""
    loop = asyncio.get_running_loop()
    # The node reads the configuration and passes it on; a SIGHUP sent to the
    # whole process group must not end the worker (the default action).
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    async with open_node(config) as node:
        stop = stop_on_signals()
        servers = await start_servers(node, reuse_port=True, node_gauges=False)
        control = ControlPipe(node, servers, stop)
        loop.add_reader(sys.stdin.fileno(), control.read)
        try:
            settle_heap()
            announce("worker", servers.http)
            await stop.wait()
        finally:
            loop.remove_reader(sys.stdin.fileno())
            await servers.close()


class ControlPipe:
    """A worker's stdin: a JSON line of reloaded settings from the node, or the
    end of the file — the node is going (or gone), and so is the worker."""

    def __init__(self, node: Node, servers: Servers, stop: asyncio.Event) -> None:
        self.node = node
        self.servers = servers
        self.stop = stop
        self.pending = b""

    def read(self) -> None:
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            self.stop.set()
            asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
            return
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        for line in lines:
            try:
                apply_settings(self.node, self.servers, json.loads(line))
            except (ValueError, TypeError, StartupError) as exc:
                log.error("reload refused, running settings kept: %s", exc)
