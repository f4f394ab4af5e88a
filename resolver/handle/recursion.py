"""Recursion: resolving a name served elsewhere on the client's behalf.

The native front end's implementation of the resolver's
:class:`~resolver.resolution.Recursion`. When the resolver's verdict is a referral
(an enterprise node, or another secondary node whose route came from the
top-level node) and the node allows recursion, the :class:`Recursor` asks the
referred site over the native protocol, follows further referrals up to a
limit, and turns the final answer back into a
:class:`~resolver.resolution.Resolution` — which the resolver caches like any other
answer, for at most :data:`~resolver.resolution.RECURSED_MAX_TTL`.

Every request it sends asks for the request digest (RD) and every answer it
accepts must carry it, so what is relayed (and perhaps signed by this node)
is the other node's answer to this very request. Concurrent recursions for
the same question share one walk; at most ``max_in_flight`` walks run at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field, replace

from registry.models import HandleValue

from ..resolution import Query, RecursionBusy, Resolution, Status
from . import client
from . import codec as c

log = logging.getLogger("idnode.recursion")

MAX_IN_FLIGHT = 64
MAX_REFERRALS = 4
"""Referrals followed beyond the first site (a top-level node's, then an enterprise's...)."""
TIME_LIMIT = 3.0
"""Seconds for one site to answer over TCP; UDP gets one try of :data:`UDP_WAIT`."""
UDP_WAIT = 1.0


@dataclass
class Recursor:
    max_in_flight: int = MAX_IN_FLIGHT
    max_referrals: int = MAX_REFERRALS
    time_limit: float = TIME_LIMIT
    udp_wait: float = UDP_WAIT
    _walks: dict[Hashable, asyncio.Task[Resolution]] = field(default_factory=dict)

    @property
    def in_flight(self) -> int:
        return len(self._walks)

    async def resolve(self, referral: Resolution, query: Query, *, depth: int = 0) -> Resolution:
        """The answer of the site ``referral`` points to. ``depth``: recursion
        hops already made before this node (the request header's count)."""
        if referral.status is not Status.REFERRAL:
            return referral
        key = (referral.name.key, referral.name.text, query, depth)
        walk = self._walks.get(key)
        if walk is None:
            if len(self._walks) >= self.max_in_flight:
                raise RecursionBusy("too many recursive resolutions in progress")
            walk = asyncio.get_running_loop().create_task(self._walk(referral, query, depth))
            self._walks[key] = walk
            walk.add_done_callback(lambda _: self._walks.pop(key, None))
        # Shielded: one client giving up must not cancel the walk others wait for.
        return await asyncio.shield(walk)

    async def _walk(self, referral: Resolution, query: Query, depth: int) -> Resolution:
        name = referral.name
        try:
            answer, hops = await client.follow(
                name.text,
                client.query_interfaces(referral.referral),
                indexes=query.indexes,
                types=query.types,
                flags=c.FLAG_PUBL,
                recursion=depth + 1,
                max_referrals=self.max_referrals,
                retries=(self.udp_wait,),
                time_limit=self.time_limit,
                require_digest=True,
            )
        except (client.ClientError, OSError, c.CodecError) as exc:
            log.info("recursion for %s failed: %s", name.text, exc)
            return replace(referral, status=Status.UNREACHABLE, recursed=True)
        code = answer.header.response_code
        last = hops[-1]
        if code == 1:
            try:
                values: tuple[HandleValue, ...] = c.HandleValues.from_bytes(answer.body).values
            except c.CodecError as exc:
                log.info("recursion for %s: %s:%s sent %s", name.text, last.host, last.port, exc)
                return replace(referral, status=Status.UNREACHABLE, recursed=True)
            return replace(referral, status=Status.FOUND, values=values, referral=(), recursed=True)
        if code == 100:
            return replace(referral, status=Status.NOT_FOUND, referral=(), recursed=True)
        if code == 200:
            return replace(referral, status=Status.VALUES_NOT_FOUND, referral=(), recursed=True)
        log.info(
            "recursion for %s: %s:%s answered RC %d (%s)",
            name.text,
            last.host,
            last.port,
            code,
            client.error_text(answer),
        )
        return replace(referral, status=Status.UNREACHABLE, recursed=True)
