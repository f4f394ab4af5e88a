"""The node's Prometheus instruments (names ``idnode_*``, base units, bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DNS_RATE_LIMITED = Counter(
    "idnode_dns_rate_limited",
    "UDP DNS responses held back by response rate limiting, by what was done instead.",
    ["action"],
)
"""``action``: ``dropped`` (no answer) or ``slipped`` (a truncated answer, so that
a real client retries over TCP)."""
for _action in ("dropped", "slipped"):
    DNS_RATE_LIMITED.labels(_action)  # exported as 0 from the start

SYNC_DELIVERED = Counter(
    "idnode_sync_delivered_events", "Outbox events the top-level node has acknowledged."
)
SYNC_RETRIED = Counter(
    "idnode_sync_retries", "Sync rounds that failed and will be retried (the node away or slow)."
)
SYNC_PARKED = Counter(
    "idnode_sync_parked_events", "Outbox events the top-level node refused; kept, not retried."
)
SYNC_BACKLOG = Gauge("idnode_sync_backlog_events", "Outbox events not yet delivered or parked.")
SYNC_PARKED_BACKLOG = Gauge(
    "idnode_sync_parked_backlog_events",
    "Refused outbox events kept until an operator sends them again (idnode sync retry).",
)
SYNC_LAG = Gauge("idnode_sync_lag_seconds", "Age of the oldest event not yet delivered.")
SYNC_LAST_SUCCESS = Gauge(
    "idnode_sync_last_success_timestamp_seconds", "When the top-level node last took a batch."
)
