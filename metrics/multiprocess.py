"""Where this process's Prometheus values live — decided before prometheus_client
is first imported, which is why this module imports nothing that does.

Each ``idnode`` process counts into memory-mapped files of one directory
(prometheus-client's multiprocess mode), and ``/metrics`` adds up the files of
every process of the node. The first process makes a fresh private directory
(so no count of an earlier run is ever added in) and removes it when it exits;
the processes it starts (DNS workers) inherit it through
:data:`SHARED_DIR_ENV`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

PROMETHEUS_ENV = "PROMETHEUS_MULTIPROC_DIR"
SHARED_DIR_ENV = "_IDNODE_SHARED_METRICS_DIR"
"""Set by a node for the processes it starts: count into the node's directory."""


def prepare() -> str:
    """Choose this process's metrics directory and tell prometheus_client."""
    shared = os.environ.get(SHARED_DIR_ENV)
    if shared and os.path.isdir(shared):
        os.environ[PROMETHEUS_ENV] = shared
        return shared
    path = tempfile.mkdtemp(prefix="idnode-metrics-")
    os.environ[PROMETHEUS_ENV] = path
    atexit.register(shutil.rmtree, path, True)
    return path


def directory() -> str | None:
    """The directory this process counts into, if it is in multiprocess mode."""
    path = os.environ.get(PROMETHEUS_ENV)
    return path if path and os.path.isdir(path) else None
