"""SIGHUP: the configuration and the TLS certificate files read again, and
what a running process can change applied at once — by the node, and by its
workers, to which the node passes the new settings on their control pipe.
Settings that only a restart can change (ports, database, node prefix, keys...)
are named in the log and otherwise left alone."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import logs
from .config import Config, ConfigError
from .limits import client_limits, client_traffic, login_lockout, rate_limit
from .listen import StartupError
from .servers import Servers, tls_context

if TYPE_CHECKING:
    from .node import Node
    from .workers import Workers

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


def reload_node(
    node: Node, servers: Servers, workers: Workers, reload: Callable[[], Config]
) -> None:
    """SIGHUP in the node: the configuration read again and applied here and in
    every worker; a bad one is refused whole and the running settings kept."""
    try:
        wanted = reload()
        settings, later = split_changes(node.config, wanted)
        apply_settings(node, servers, settings)
    except (ConfigError, StartupError) as exc:
        log.error("reload refused, running settings kept: %s", exc)
        return
    workers.reload(settings)
    log.info(
        "reloaded configuration%s",
        f"; these wait for a restart: {', '.join(later)}" if later else "",
    )


def apply_settings(node: Node, servers: Servers, settings: Mapping[str, Any]) -> None:
    """Apply reloadable settings in this process: checked first, then all at
    once (ConfigError or StartupError: nothing applied)."""
    config = dataclasses.replace(node.config, **settings).validate()
    limit = rate_limit(config)
    limits, lockout, traffic = client_limits(config), login_lockout(config), client_traffic(config)
    if servers.tls is not None and tls_context(config) is not None:
        # Checked on a fresh context first: the live one must never be half-loaded.
        servers.tls.load_cert_chain(config.tls_cert, config.tls_key)
    setup_logging(config)
    node.access_log.enabled = config.access_log
    for zone in servers.zone:
        zone.udp.limiter.reconfigure(limit)
    node.guard.reconfigure(limits)
    services = node.registry.services
    services.lockout.reconfigure(lockout.attempts, lockout.seconds, lockout.exempt)
    services.reconfigure(
        identifier_limit=max(0, config.enterprise_identifier_limit),
        prefix_limit=max(0, config.prefix_limit),
    )
    node.traffic.reconfigure(scan_min_not_found=traffic.scan_min_not_found, window=traffic.window)
    node.config = config
