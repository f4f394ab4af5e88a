"""The node's Prometheus instruments: names ``idnode_*``, base units, ``_total``
counters, bounded label sets. Declared here once; front ends import them and
count, never declare.

Several processes of one node (the DNS workers of ``--workers``) count into
files of one directory (prometheus-client's multiprocess mode, see
:mod:`metrics.exposition`), so every gauge says how the processes' values
combine: ``livesum`` for what each live process holds (cache entries),
``mostrecent`` for what one process measures for the node (the registry's
sizes, the daily counts, sync).

Resolutions are not counted here one by one: the hot paths count into a
:class:`metrics.tally.Tally`, folded into these instruments every second.
"""

from __future__ import annotations

import importlib.metadata
import platform

from prometheus_client import Counter, Gauge, Histogram

PROTOCOLS = ("handle_udp", "handle_tcp", "http", "dns", "oid")
"""How a resolution arrived: native UDP, native TCP, REST and the proxy, DNS,
and OID names (``/api/oid`` and the DNS ``oid-res`` subtree)."""
OUTCOMES = ("found", "not_found", "referral", "refused", "error")
"""``found``: values returned (or an answer with data, in DNS); ``not_found``:
no such identifier or no value passed the filters (DNS NXDOMAIN / NODATA);
``referral``: sent to another node; ``refused``: not served here, rate limited
or not allowed; ``error``: malformed, or the node failed."""
CACHES = ("answers", "dns")
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""Seconds: a cached answer takes microseconds, a cold one about a millisecond,
a recursion to another node up to a few seconds."""
DAILY_TARGET = 100_000
"""Resolutions a day a secondary node must serve."""
ENTERPRISES_TARGET = 30
"""Enterprises a secondary node must serve."""

# --- resolutions ---------------------------------------------------------------

RESOLUTIONS = Counter(
    "idnode_resolutions",
    "Resolutions answered, by protocol and outcome.",
    ["protocol", "outcome"],
)
RESOLUTION_SECONDS = Histogram(
    "idnode_resolution_duration_seconds",
    "Time from a request's arrival to its answer, by protocol.",
    ["protocol"],
    buckets=LATENCY_BUCKETS,
)

# --- answer caches -------------------------------------------------------------

CACHE_HITS = Counter("idnode_cache_hits", "Answers served from a cache.", ["cache"])
CACHE_MISSES = Counter("idnode_cache_misses", "Cache lookups that found nothing.", ["cache"])
CACHE_EVICTIONS = Counter(
    "idnode_cache_evictions", "Answers dropped to keep a cache within its size.", ["cache"]
)
CACHE_ENTRIES = Gauge(
    "idnode_cache_entries", "Answers held in a cache.", ["cache"], multiprocess_mode="livesum"
)

# --- processes -----------------------------------------------------------------

WORKERS_CONFIGURED = Gauge(
    "idnode_workers_configured",
    "Processes the node is configured to answer with (the node and its workers).",
    multiprocess_mode="mostrecent",
)
WORKERS_LIVE = Gauge(
    "idnode_workers_live",
    "Processes answering now (the node and its live workers).",
    multiprocess_mode="mostrecent",
)
WORKER_RESTARTS = Counter(
    "idnode_worker_restarts", "Worker processes started in place of one that exited."
)

# --- the registry --------------------------------------------------------------

REGISTRY_ENTERPRISES = Gauge(
    "idnode_registry_enterprises", "Enterprises filed at this node.", multiprocess_mode="mostrecent"
)
REGISTRY_PREFIXES = Gauge(
    "idnode_registry_prefixes",
    "Enterprise prefixes allocated under this node's prefix.",
    multiprocess_mode="mostrecent",
)
REGISTRY_IDENTIFIERS = Gauge(
    "idnode_registry_identifiers", "Identifiers registered.", multiprocess_mode="mostrecent"
)
REGISTRATIONS = Counter(
    "idnode_registrations",
    "Committed registry changes, by operation.",
    ["operation"],
)
OPERATIONS = ("create", "update", "delete", "enterprise", "prefix", "template", "other")
AUTH_FAILURES = Counter(
    "idnode_auth_failures",
    "Credentials that did not check out, by kind.",
    ["credential"],
)
CREDENTIALS = ("password", "handle_secret", "token", "proof")
"""``password``: a login or an access key's secret (SNMS, REST Basic);
``handle_secret``: an ``HS_SECKEY`` sent as REST Basic; ``token``: a bearer
token; ``proof``: a native challenge answer."""
RATE_LIMITED = Counter(
    "idnode_rate_limited",
    "Responses held back by rate limiting, by protocol and what was done instead.",
    ["protocol", "action"],
)
"""``refused``: a client over its request rate or daily limit got the protocol's
refusal instead (HTTP 429, native RC 3 or 603, DNS REFUSED). ``truncated``: a UDP
answer too large beside its request (``udp_amplification``) went out as native RC 2
or a truncated DNS answer, so that the client asks over TCP. DNS responses over
the response rate: ``dropped`` (no answer) or ``slipped`` (a truncated answer, so
that a real client retries over TCP)."""

# --- daily accounting (one process measures them for the node) -----------------

RESOLUTIONS_TODAY = Gauge(
    "idnode_resolutions_today",
    "Resolutions counted so far today (the configured time zone), from the database.",
    multiprocess_mode="mostrecent",
)
RESOLUTIONS_YESTERDAY = Gauge(
    "idnode_resolutions_yesterday",
    "Resolutions counted yesterday (the configured time zone).",
    multiprocess_mode="mostrecent",
)
RESOLUTIONS_DAILY_TARGET = Gauge(
    "idnode_resolutions_daily_target",
    "Resolutions a day the node must serve.",
    multiprocess_mode="mostrecent",
)
ENTERPRISES_SERVED_TODAY = Gauge(
    "idnode_enterprises_served_today",
    "Distinct enterprises whose identifiers were resolved today.",
    multiprocess_mode="mostrecent",
)
ENTERPRISES_SERVED_30D = Gauge(
    "idnode_enterprises_served_30d",
    "Distinct enterprises whose identifiers were resolved in the last 30 days.",
    multiprocess_mode="mostrecent",
)
ENTERPRISES_SERVED_TARGET = Gauge(
    "idnode_enterprises_served_target",
    "Enterprises the node must serve.",
    multiprocess_mode="mostrecent",
)
DAY_START = Gauge(
    "idnode_day_start_timestamp_seconds",
    "When today began in the configured time zone (Unix time): for projecting the day.",
    multiprocess_mode="mostrecent",
)

# --- sync with the top-level node ----------------------------------------------

SCANNING_CLIENTS = Gauge(
    "idnode_scanning_clients",
    "Clients that asked mostly for names that do not exist in the last minute "
    "(enumeration or scanning; metrics.traffic).",
    multiprocess_mode="max",
)
CLIENTS_SEEN = Gauge(
    "idnode_clients_seen",
    "Client addresses (IPv6: /64s) that asked in the last minute.",
    multiprocess_mode="livesum",
)
TOP_CLIENT_SHARE = Gauge(
    "idnode_top_client_share",
    "The busiest client's share of the last minute's requests (0 to 1).",
    multiprocess_mode="max",
)

SYNC_DELIVERED = Counter(
    "idnode_sync_delivered_events", "Outbox events the top-level node has acknowledged."
)
SYNC_RETRIED = Counter(
    "idnode_sync_retries", "Sync rounds that failed and will be retried (the node away or slow)."
)
SYNC_RETRY_AFTER = Counter(
    "idnode_sync_retry_after",
    "Retries after an answer of the top-level node carrying Retry-After, by what the "
    "worker did with it.",
    ["outcome"],
)
RETRY_AFTER_OUTCOMES = ("honoured", "clamped", "unusable")
"""``honoured``: waited as asked; ``clamped``: asked for less than the worker's
minimum backoff or more than its maximum (an hour), and waited that bound;
``unusable``: neither delta-seconds nor an HTTP date, so the worker's own backoff."""
SYNC_PARKED = Counter(
    "idnode_sync_parked_events", "Outbox events the top-level node refused; kept, not retried."
)
SYNC_BACKLOG = Gauge(
    "idnode_sync_backlog_events",
    "Outbox events not yet delivered or parked.",
    multiprocess_mode="mostrecent",
)
SYNC_PARKED_BACKLOG = Gauge(
    "idnode_sync_parked_backlog_events",
    "Refused outbox events kept until an operator sends them again (idnode sync retry).",
    multiprocess_mode="mostrecent",
)
SYNC_LAG = Gauge(
    "idnode_sync_lag_seconds",
    "Age of the oldest event not yet delivered.",
    multiprocess_mode="mostrecent",
)
SYNC_LAST_SUCCESS = Gauge(
    "idnode_sync_last_success_timestamp_seconds",
    "When the top-level node last took a batch.",
    multiprocess_mode="mostrecent",
)

BUILD_INFO = Gauge(
    "idnode_build_info",
    "The running idnode: version and Python (always 1).",
    ["version", "python"],
    multiprocess_mode="max",
)


def _version() -> str:
    try:
        return importlib.metadata.version("idnode")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def export_zeros() -> None:
    """Every label combination exported from the start, at 0, so that rates and
    alerts see a series before its first event; and the build's line."""
    for protocol in PROTOCOLS:
        RESOLUTION_SECONDS.labels(protocol)
        for outcome in OUTCOMES:
            RESOLUTIONS.labels(protocol, outcome)
    for cache in CACHES:
        CACHE_HITS.labels(cache)
        CACHE_MISSES.labels(cache)
        CACHE_EVICTIONS.labels(cache)
    for operation in OPERATIONS:
        REGISTRATIONS.labels(operation)
    for credential in CREDENTIALS:
        AUTH_FAILURES.labels(credential)
    for outcome in RETRY_AFTER_OUTCOMES:
        SYNC_RETRY_AFTER.labels(outcome)
    for action in ("dropped", "slipped"):
        RATE_LIMITED.labels("dns", action)
    for protocol in ("http", "handle_udp", "handle_tcp", "dns"):
        RATE_LIMITED.labels(protocol, "refused")
    for protocol in ("handle_udp", "dns"):
        RATE_LIMITED.labels(protocol, "truncated")
    for gauge in (SCANNING_CLIENTS, CLIENTS_SEEN, TOP_CLIENT_SHARE):
        gauge.set(0)  # until the first minute's table is read
    RESOLUTIONS_DAILY_TARGET.set(DAILY_TARGET)
    ENTERPRISES_SERVED_TARGET.set(ENTERPRISES_TARGET)
    BUILD_INFO.labels(_version(), platform.python_version()).set(1)


export_zeros()
