"""SIGHUP: the configuration and the TLS certificate files read again, and
what a running process can change applied at once — by the node, and by its
workers, to which the node passes the new settings on their control pipe.
Settings that only a restart can change (ports, database, node prefix, keys...)
are named in the log and otherwise left alone."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from . import logs
from .config import Config

log = logging.getLogger("idnode")

RELOADABLE = (
    "log_level",
    "log_format",
    "access_log",
    "tls_cert",
    "tls_key",
    "dns_rrl_rate",
    "dns_rrl_burst",
    "dns_rrl_slip",
    "dns_rrl_exempt",
    "client_rate",
    "client_burst",
    "client_daily_limit",
    "enterprise_rate",
    "enterprise_burst",
    "limits_exempt",
    "trusted_proxies",
    "login_attempts",
    "login_lockout",
    "enterprise_identifier_limit",
    "prefix_limit",
    "scan_threshold",
    "traffic_window",
)
"""What SIGHUP changes in a running node; the TLS files are read again even
when their names stay the same (a renewed certificate)."""


def split_changes(running: Config, wanted: Config) -> tuple[dict[str, Any], list[str]]:
    """The reloadable settings of ``wanted``, and the names of the other
    settings that differ from ``running`` (they wait for a restart)."""
    reloadable = {name: getattr(wanted, name) for name in RELOADABLE}
    later = [
        item.name
        for item in dataclasses.fields(Config)
        if item.name not in RELOADABLE and getattr(running, item.name) != getattr(wanted, item.name)
    ]
    if bool(running.tls_cert or running.tls_key) != bool(wanted.tls_cert or wanted.tls_key):
        # Plain HTTP cannot turn into HTTPS on an open socket, nor back.
        later += ["tls_cert", "tls_key"]
        reloadable.update(tls_cert=running.tls_cert, tls_key=running.tls_key)
    return reloadable, later


def setup_logging(config: Config) -> None:
    logs.setup(config.log_format, config.log_level)
