"""The load tests' one bridge into the node's composition root, ``idnode``.

Load users and benchmarks drive a node the way its clients do: ``demo_node`` starts
``idnode demo`` as a process and the load goes to it over the network. A few things
they need do not come over the wire, and they come from here:

- the demo data set the node seeds (``idnode.demo``): the enterprises and their
  identifiers' names, a registration body that passes an enterprise's template, the
  administrator's login — so the load asks for names that exist, and knows which do
  not, without listing them first;
- the node's progress line (``idnode.progress``), so long runs report on stderr the
  way the node itself does;
- the node's configuration and, in process on its own database, its DNS service
  (:func:`node_dns_service`): ``bench_dns`` renders the zone through it, exactly as
  the node answers, to load a reference DNS server with the same records.

Nothing else in ``loadtest`` imports ``idnode`` (``tests/test_architecture.py``
checks it): what a benchmark needs of the node beyond the network comes through here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from idnode.config import Config, Endpoint
from idnode.demo import (
    DEMO_ADMIN,
    DemoEnterprise,
    batch_handle,
    demo_enterprises,
    example_handle,
    registration,
)
from idnode.progress import Progress

if TYPE_CHECKING:
    from resolver.dns.service import DnsService
    from resolver.resolution import Resolver

__all__ = [
    "DEMO_ADMIN",
    "Config",
    "DemoEnterprise",
    "Endpoint",
    "Progress",
    "batch_handle",
    "demo_enterprises",
    "example_handle",
    "node_dns_service",
    "registration",
]


@asynccontextmanager
async def node_dns_service(
    config: Config, nameserver: Endpoint
) -> AsyncIterator[tuple[DnsService, Resolver]]:
    """The node opened in process on ``config`` (its database, its key): its DNS
    service, wired as the node wires it with ``nameserver`` as the zone's server
    address, and its resolver (which parses names as resolvers accept them)."""
    # Imported here, not above: the Locust users import this module for the demo
    # data set, and need none of the node's servers.
    from idnode.node import open_node
    from idnode.servers import dns_service

    async with open_node(config) as node:
        yield dns_service(node, nameserver), node.resolver
