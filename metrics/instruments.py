"""The node's Prometheus instruments (names ``idnode_*``, base units, bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter

DNS_RATE_LIMITED = Counter(
    "idnode_dns_rate_limited",
    "UDP DNS responses held back by response rate limiting, by what was done instead.",
    ["action"],
)
"""``action``: ``dropped`` (no answer) or ``slipped`` (a truncated answer, so that
a real client retries over TCP)."""
for _action in ("dropped", "slipped"):
    DNS_RATE_LIMITED.labels(_action)  # exported as 0 from the start
