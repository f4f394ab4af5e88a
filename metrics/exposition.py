"""The ``/metrics`` page: every process of the node added up.

In multiprocess mode (metrics.multiprocess) the page is built from the files
of every process that counted into the node's directory — the DNS workers'
as well as this one's; otherwise (tests, embedding) from this process alone.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .multiprocess import directory

CONTENT_TYPE = CONTENT_TYPE_LATEST


def render() -> bytes:
    path = directory()
    if path is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def forget_process(pid: int) -> None:
    """A worker process has exited: drop its live gauges (its counts stay)."""
    path = directory()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
