"""What load-test users ask: names taken from the demo data set, spread over
every enterprise and application mode, with the misses real clients make
(~3% unknown names, ~1% names of another node's prefix), and the targets.

Environment (all optional; the defaults are those of ``idnode demo``):

- ``IDNODE_DNS``, ``IDNODE_HANDLE``: ``host:port`` of the DNS and native
  listeners (HTTP comes from Locust's ``--host``);
- ``IDNODE_DNS_ZONE``: the node's zone;
- ``IDNODE_DEMO_ENTERPRISES``, ``IDNODE_DEMO_IDENTIFIERS``: the demo's size,
  as the node was seeded (``idnode demo --enterprises --identifiers``);
- ``IDNODE_DEMO_ADMIN``: ``user:password`` of the node administrator that
  registers identifiers (the demo's ``demo-admin:demo-secret``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from functools import cached_property

from loadtest.harness import (
    DEMO_ADMIN,
    DemoEnterprise,
    batch_handle,
    demo_enterprises,
    example_handle,
)
from registry.dnsnames import ZoneNames
from registry.grammar import Grammar

UNKNOWN_SHARE = 0.03
FOREIGN_SHARE = 0.01
FOUND, NOT_FOUND, FOREIGN = "found", "not_found", "foreign"


def endpoint(variable: str, default: str) -> tuple[str, int]:
    host, _, port = os.environ.get(variable, default).rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Pick:
    name: str
    expect: str
    """``found``, ``not_found`` (no such identifier here) or ``foreign`` (another
    node's prefix: referred or refused, never found here)."""
    mode: str
    """The application mode (traceability, quality, ...), or the kind of miss."""


class DemoMix:
    def __init__(
        self,
        enterprises: int | None = None,
        identifiers: int | None = None,
        zone: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.count = enterprises or int(os.environ.get("IDNODE_DEMO_ENTERPRISES", "32"))
        total = identifiers or int(os.environ.get("IDNODE_DEMO_IDENTIFIERS", "10240"))
        self.per_enterprise = -(-total // self.count)
        self.zone = ZoneNames.of(zone or os.environ.get("IDNODE_DNS_ZONE", "hdl.idnode.test."))
        self.grammar = Grammar()
        self.rng = random.Random(seed)

    @cached_property
    def enterprises(self) -> list[DemoEnterprise]:
        return demo_enterprises(self.count)

    def pick(self) -> Pick:
        roll = self.rng.random()
        ent = self.rng.choice(self.enterprises)
        if roll < UNKNOWN_SHARE:
            return Pick(f"{ent.prefix}/MISSING-{self.rng.randrange(10**9)}", NOT_FOUND, "unknown")
        if roll < UNKNOWN_SHARE + FOREIGN_SHARE:
            other = f"88.{self.rng.randint(200, 299)}.{self.rng.randint(1, 99)}"
            return Pick(f"{other}/X-{self.rng.randrange(10**6)}", FOREIGN, "foreign")
        i = self.rng.randrange(self.per_enterprise)
        if ent.mode.key == "trace":
            batches = max(1, self.per_enterprise // 16)
            name = (
                batch_handle(ent, 1 + i % batches)
                if i < batches
                else example_handle(ent, 1 + i % (self.per_enterprise - batches))
            )
        else:
            name = example_handle(ent, 1 + i)
        return Pick(name, FOUND, ent.mode.key)

    def all_names(self) -> list[str]:
        """Every name :meth:`pick` can return as found."""
        names = []
        for ent in self.enterprises:
            if ent.mode.key == "trace":
                batches = max(1, self.per_enterprise // 16)
                names += [batch_handle(ent, 1 + i) for i in range(batches)]
                names += [example_handle(ent, 1 + i) for i in range(self.per_enterprise - batches)]
            else:
                names += [example_handle(ent, 1 + i) for i in range(self.per_enterprise)]
        return names

    def dns_name(self, name: str) -> str:
        """The name of an identifier in the node's zone (registry.dnsnames)."""
        return self.zone.of_identifier(self.grammar.parse(name)).to_text()

    def enterprise(self) -> DemoEnterprise:
        return self.rng.choice(self.enterprises)


def admin_credentials() -> tuple[str, str]:
    raw = os.environ.get("IDNODE_DEMO_ADMIN")
    if not raw:
        return DEMO_ADMIN
    user, _, password = raw.partition(":")
    return user, password
