"""The node's limits, built from its configuration: per-client and enterprise
rates (one :class:`Guard` per process, shared by its front ends), the login
lockout, DNS response rate limiting, and the per-client traffic table. Built
once at start; a reload (idnode.reloading) reconfigures the same objects."""

from __future__ import annotations

from metrics.instruments import RATE_LIMITED
from metrics.traffic import ClientTraffic
from registry.errors import TooManyRequests
from registry.lockout import LoginLockout
from registry.services.base import Admission
from resolver.dns.rrl import RateLimit
from resolver.limits import Guard, Limits

from .config import Config


def client_limits(config: Config) -> Limits:
    return Limits(
        client_rate=config.client_rate,
        client_burst=max(config.client_burst, 1),
        client_daily=config.client_daily_limit,
        enterprise_rate=config.enterprise_rate,
        enterprise_burst=max(config.enterprise_burst, 1),
        exempt=config.networks("limits_exempt"),
    )


def client_guard(config: Config) -> Guard:
    """This process's per-client and enterprise limits, days counted in ``time_zone``."""
    return Guard(client_limits(config), zone=config.time_zone_info())


def enterprise_admission(guard: Guard) -> Admission:
    """The registry's admission: an authenticated caller's enterprise within its
    rate, or TooManyRequests (counted as refused on the caller's protocol)."""

    def admit(key: str, protocol: str) -> None:
        refusal = guard.enterprise(key)
        if refusal is not None:
            RATE_LIMITED.labels(protocol, "refused").inc()
            raise TooManyRequests(refusal.retry_after)

    return admit


def login_lockout(config: Config) -> LoginLockout:
    return LoginLockout(
        attempts=config.login_attempts,
        seconds=config.login_lockout,
        exempt=config.networks("limits_exempt"),
    )


def client_traffic(config: Config) -> ClientTraffic:
    """The process's traffic table (metrics.traffic) with the configured reading."""
    return ClientTraffic(
        scan_min_not_found=max(1, config.scan_threshold), window=max(1, config.traffic_window)
    )


def rate_limit(config: Config) -> RateLimit:
    return RateLimit(
        rate=config.dns_rrl_rate,
        burst=max(config.dns_rrl_burst, 1),
        slip=config.dns_rrl_slip,
        exempt=config.networks("dns_rrl_exempt"),
    )
