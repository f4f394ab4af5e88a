"""Trusted resolution through this node's resolver: a record's verdict, with its
chain, whether the record and its certificates live here or on other nodes.

The chain walk (:mod:`registry.trust`) reads records through a callable; here
that callable is the :class:`~resolver.resolution.Resolver` — anonymous, so a
verdict is about what anyone may read, through the answer cache, and recursing
to the node that serves a name when this node allows recursion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from registry.errors import InvalidName
from registry.grammar import HandleName
from registry.models import HandleValue
from registry.trust import ResolutionFailed, TrustReport, TrustRoot, verify_record

from .resolution import Query, RecursionBusy, Resolution, Resolver, Status

_EVERYTHING = Query()
_UNREADABLE = {
    Status.REFERRAL: "it is served by another node, and this node does not resolve for others",
    Status.NOT_HERE: "no node known here serves its prefix",
    Status.UNREACHABLE: "the node serving it did not answer",
}


def _as_is(resolution: Resolution) -> Resolution:
    return resolution


@dataclass(frozen=True, slots=True)
class Verified:
    """A resolution and, when the record was found, the verdict on its values."""

    resolution: Resolution
    report: TrustReport | None


class Verification:
    """Verifies records against one trust root, reading through ``resolver``."""

    def __init__(self, resolver: Resolver, root: TrustRoot) -> None:
        self.resolver = resolver
        self.root = root

    async def _resolve(self, name: HandleName) -> Resolution:
        # Cached like any anonymous answer (evicted when the record changes):
        # the certificates of a chain are read far more often than they change.
        return await self.resolver.answer(name, _EVERYTHING, ("trust",), _as_is, recurse=True)

    async def values_of(self, handle: str) -> Sequence[HandleValue] | None:
        """The public values of ``handle`` (None: no such handle) for the chain walk."""
        try:
            resolution = await self._resolve(self.resolver.parse(handle))
        except InvalidName as exc:
            raise ResolutionFailed(f"not a handle: {exc}") from None
        except RecursionBusy as exc:
            raise ResolutionFailed(str(exc)) from None
        if resolution.status is Status.FOUND:
            return resolution.values
        if resolution.status is Status.VALUES_NOT_FOUND:
            return ()
        if resolution.status is Status.NOT_FOUND:
            return None
        raise ResolutionFailed(_UNREADABLE[resolution.status])

    async def verify(self, name: HandleName, *, now: float | None = None) -> Verified:
        """Resolve ``name`` and judge its values; no verdict when it was not found."""
        resolution = await self._resolve(name)
        if resolution.status is not Status.FOUND:
            return Verified(resolution, None)
        report = await verify_record(
            name.text, resolution.values, self.values_of, self.root, now=now
        )
        return Verified(resolution, report)
