"""One guard stage around the wire front ends (native Handle and DNS).

Both answer most queries from encoded answers, in microseconds, right in the
listener (their fast paths), and the rest on a slow path. The same stage
stands around both paths of both front ends, the way a plugin chain puts a
rate limiter before the cache (CoreDNS's ``ratelimit`` before ``cache``):

* **admission**: a client over its limits (:class:`resolver.limits.Guard`) gets
  its front end's refusal instead of an answer, counted in
  ``idnode_rate_limited_total{action="refused"}``;
* **amplification**: over UDP, an answer more than ``amplification`` times its
  request's size would let a spoofed request buy its victim a flood: what goes
  out instead is the front end's way of saying "ask over TCP" (native RC 2, DNS
  TC), counted as ``truncated`` and not as a resolution;
* **the tally**: an answer that goes out counts as a resolution
  (:data:`metrics.tally.TALLY`) under its label.

What only a front end knows — how to word a refusal, how to say "ask over
TCP", how large an answer is, which protocol label the counts carry — it
supplies as a :class:`Wording`. Everything here runs on the hot path: no awaits,
nothing allocated beyond what the front end's own words make.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from metrics.instruments import RATE_LIMITED
from metrics.tally import TALLY

from .limits import Guard, Refusal

Answer = TypeVar("Answer")
"""A front end's answer: DNS wire bytes, or the native protocol's datagrams."""

Label = tuple[str, str, str]
"""How an answer counts (metrics.tally): protocol, outcome, enterprise prefix."""


@dataclass(frozen=True, slots=True)
class Wording(Generic[Answer]):
    """A front end's words for the stage's verdicts."""

    limited_udp: str
    """The ``protocol`` label of ``idnode_rate_limited_total`` for requests over UDP."""
    limited_tcp: str
    """The same label for requests over TCP."""
    refusal: Callable[[bytes, Refusal, bool], Answer]
    """The answer to the request in ``data`` from a client over its limits (``udp``:
    it came over UDP); empty: the request gets no answer at all."""
    ask_over_tcp: Callable[[bytes, Answer], Answer]
    """What goes out over UDP instead of an answer too large for its request."""
    size: Callable[[Answer], int]
    """An answer's size on the wire."""


class GuardStage(Generic[Answer]):
    """Admission, the UDP amplification bound and the tally, for one front end."""

    __slots__ = ("amplification", "limits", "wording")

    def __init__(self, wording: Wording[Answer], limits: Guard | None, amplification: int) -> None:
        self.wording = wording
        self.limits = limits
        """Per-client limits; None: none."""
        self.amplification = amplification
        """A UDP answer may be at most this many times its request's size; 0: any size."""

    def refuse(self, data: bytes, remote: str, udp: bool) -> Answer | None:
        """None: answer the client at ``remote``. Else what to send instead (an
        empty answer: send nothing)."""
        limits = self.limits
        if limits is None:
            return None
        refusal = limits.client(remote)
        if refusal is None:
            return None
        wording = self.wording
        RATE_LIMITED.labels(wording.limited_udp if udp else wording.limited_tcp, "refused").inc()
        return wording.refusal(data, refusal, udp)

    def deliver(
        self, request: bytes, answer: Answer, udp: bool, label: Label | None, started: float
    ) -> Answer:
        """What goes out for ``answer``: itself, counted under ``label`` (None: not a
        resolution) as answered in the time since ``started`` (``time.perf_counter``);
        over UDP, if too large for its request, the front end's "ask over TCP"."""
        amplification = self.amplification
        if udp and amplification and self.wording.size(answer) > amplification * len(request):
            RATE_LIMITED.labels(self.wording.limited_udp, "truncated").inc()
            return self.wording.ask_over_tcp(request, answer)
        if label is not None:
            protocol, outcome, prefix = label  # passed on one by one: no tuple made
            TALLY.count(protocol, outcome, prefix, time.perf_counter() - started)
        return answer
