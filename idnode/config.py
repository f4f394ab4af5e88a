"""Node configuration: defaults, then a TOML file, then ``IDNODE_*`` variables,
then command-line flags — each later source overriding the earlier ones."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "IDNODE_"
DEFAULT_DB = "sqlite+aiosqlite:///idnode.db"
DEMO_DB = "sqlite+aiosqlite:///idnode-demo.db"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``127.0.0.1:8000``, ``[::1]:8000``, ``:8000`` (all interfaces) or ``8000``."""
        text = text.strip()
        if text.isascii() and text.isdigit():
            host, port_text = "127.0.0.1", text
        elif text.startswith("["):
            host, sep, port_text = text[1:].partition("]:")
            if not sep:
                raise ConfigError(f"bad endpoint {text!r}: expected [v6-address]:port")
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ConfigError(f"bad endpoint {text!r}: expected host:port")
        if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
            raise ConfigError(f"bad port in endpoint {text!r}")
        return cls(host or "0.0.0.0", int(port_text))  # noqa: S104 - ":port" asks for all

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Config:
    node_prefix: str = "88.100"
    """The prefix the top-level node allocated to this secondary node; enterprise
    prefixes are allocated under it (``88.100.N``). Fixed once the database is in use."""
    database_url: str = DEFAULT_DB
    """The registry: ``sqlite+aiosqlite:///FILE`` (embedded) or
    ``postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB`` (production)."""
    database_read_url: str = ""
    """A streaming replica of ``database_url`` for the resolution reads (PostgreSQL);
    writes go to the primary, and reads fall back to it while the replica is down."""
    http: Endpoint = field(default_factory=lambda: Endpoint("127.0.0.1", 8000))
    """HTTP: the Handle REST API, the redirect proxy, the SNMS admin API, health and metrics."""
    handle: Endpoint = field(default_factory=lambda: Endpoint("127.0.0.1", 2641))
    """Native Handle protocol, UDP and TCP on the same port."""
    dns: Endpoint = field(default_factory=lambda: Endpoint("127.0.0.1", 5353))
    """Authoritative DNS for ``dns_zone``, UDP and TCP on the same port."""
    dns_zone: str = "hdl.idnode.test."
    """The zone whose names map to identifiers (``abc._.1.100.88.<zone>``)."""
    dns_address: str = ""
    """The address published for the zone's nameserver (default: the DNS host)."""
    oid_arc: str = "1.2.156.86.1"
    """The OID arc that stands for the node prefix; ``88.100.N`` owns ``<arc>.N``.
    Empty: no OID names."""
    dns_rrl_rate: int = 200
    """UDP DNS responses a second per client address (IPv6: per /64); 0: no limit."""
    dns_rrl_burst: int = 400
    """Responses a client may get at once before the rate applies."""
    dns_rrl_slip: int = 2
    """Of the responses over the limit, every this many goes out truncated (0: none)."""
    dns_rrl_exempt: str = "127.0.0.0/8,::1/128"
    """Comma-separated networks that are never rate limited."""
    client_rate: int = 1000
    """Requests a second one client address may make on each port (IPv6: per /64), per
    process; 0: no limit. Beyond it: HTTP 429 with Retry-After, native RC 3, DNS REFUSED."""
    client_burst: int = 2000
    """Requests a client may make at once before ``client_rate`` applies."""
    client_daily_limit: int = 0
    """Requests one client address may make a calendar day (``time_zone``), per process;
    0: no limit. Beyond it: HTTP 429, native RC 603 (IDIS daily request limit), DNS REFUSED."""
    enterprise_rate: int = 500
    """Requests a second one enterprise's authenticated callers may make together (its
    users and access keys; a Handle identity on its own), per process; node administrators
    are not limited; 0: no limit. Beyond it: HTTP 429 with Retry-After, native RC 3."""
    enterprise_burst: int = 1000
    """Requests an enterprise may make at once before ``enterprise_rate`` applies."""
    udp_amplification: int = 8
    """A UDP answer (native Handle, DNS) may be at most this many times the size of the
    request it answers; a larger one becomes native RC 2 or a truncated DNS answer, and
    the client asks again over TCP, where a spoofed source cannot. 0: any size."""
    limits_exempt: str = "127.0.0.0/8,::1/128"
    """Comma-separated networks whose clients are never limited (the node's own tooling)."""
    trusted_proxies: str = ""
    """Comma-separated networks of reverse proxies (nginx, a load balancer) whose
    ``Forwarded`` / ``X-Forwarded-For`` / ``X-Forwarded-Proto`` headers name the real
    client and scheme; from any other peer those headers are ignored. Empty: none."""
    login_attempts: int = 5
    """Failed logins (password, access key or Handle secret) that lock the account, and
    the client address, for ``login_lockout`` seconds; 0: no lockout."""
    login_lockout: int = 900
    """Seconds a lock lasts, and the window in which failures are counted."""
    scan_threshold: int = 300
    """Unknown names one client may ask in a ``traffic_window`` (when they are most of
    what it asks) before it is logged and counted as scanning (idnode_scanning_clients)."""
    traffic_window: int = 60
    """Seconds of traffic each reading of the per-client table covers."""
    enterprise_identifier_limit: int = 0
    """Identifiers one enterprise may hold; 0: no limit. Beyond it a registration is
    refused (native IDIS RC 604, HTTP 403)."""
    prefix_limit: int = 0
    """Enterprise prefixes this node may allocate (its quota from the top-level node);
    0: no limit. Beyond it a filing is refused (IDIS RC 605)."""
    workers: int = 0
    """Processes answering on the same ports (SO_REUSEPORT); 0: one per core."""
    listen_ipv6: str = "auto"
    """The IPv6 address every listener also serves: ``auto`` (``::1`` beside a
    loopback address, ``::`` beside ``0.0.0.0``), ``off``, or an address."""
    toplevel: str = ""
    """Base URL of the top-level node to sync with (``serve`` runs the worker when set)."""
    toplevel_faults: str = ""
    """``idnode toplevel`` only: trouble to make on purpose (``error=0.2,lost=0.1,slow=0.1``)."""
    sync_batch: int = 500
    """Events per delivery to the top-level node (at most 500)."""
    sync_timeout: int = 30
    """Seconds to wait for the top-level node's answer."""
    toplevel_http: Endpoint = field(default_factory=lambda: Endpoint("127.0.0.1", 8100))
    """Where ``idnode toplevel`` (the mock top-level node) listens."""
    toplevel_handle: Endpoint = field(default_factory=lambda: Endpoint("127.0.0.1", 2642))
    """Where the mock top-level node answers prefix lookups on the native protocol."""
    toplevel_database_url: str = "sqlite+aiosqlite:///idnode-toplevel.db"
    """The mock top-level node's own store."""
    key_file: str = "idnode.key"
    """The node's secret key (tokens, sealed secrets), made on first start; back it up
    with the database — a restored registry needs the key it was made with."""
    server_key_file: str = "idnode-server.pem"
    """The node's RSA signing key (published in its HS_SITE), made on first start."""
    bootstrap_admin: str = ""
    """``<access-key>:<secret-key>`` of a node administrator to create at start."""
    suffix_case_sensitive: bool = True
    """Whether ``88.100.1/ABC`` and ``88.100.1/abc`` are two identifiers (Handle.net's
    default). Fixed once the database is in use."""
    proxy_server_id: int = 1
    """This node's id as a hosting server: ``proxyServerId`` in ``/snms/api/ent/config``."""
    site_address: str = ""
    """Public address published in this node's HS_SITE (default: the HTTP host)."""
    tls_cert: str = ""
    """PEM certificate (chain) for HTTPS on the HTTP listener; with ``tls_key``."""
    tls_key: str = ""
    """The PEM private key of ``tls_cert``. Both are read again on SIGHUP."""
    allow_plain_http_auth: bool = False
    """Accept Handle REST credentials over plain HTTP (development; the demo sets it)."""
    cache_entries: int = 100_000
    """Answers each process keeps in memory, per protocol (least recently used go first)."""
    time_zone: str = "Asia/Shanghai"
    """The calendar the daily resolution counts are kept in (an IANA zone name)."""
    accounting_interval: int = 2
    """Seconds between writes of the daily counts to the database: what a crash can lose."""
    metrics: str = ""
    """``HOST:PORT`` of a listener with only ``/metrics``, ``/healthz`` and ``/readyz``
    (for ``idnode sync``; ``serve`` also has them on its HTTP port)."""
    allow_recursion: bool = False
    """Resolve names served elsewhere (enterprise nodes, other secondary nodes) on the
    client's behalf: native clients that ask (REC), and every REST and proxy client."""
    toplevel_name: str = "工业互联网标识解析国家顶级节点--北京"
    """The top-level node's name as the SNMS API reports it."""
    log_format: str = "auto"
    """``json`` (one object a line), ``text``, or ``auto``: text on a terminal."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning``, ``error`` or ``critical``."""
    access_log: bool = False
    """One log line per HTTP request (method, path, status, time, request id)."""
    migrate_on_start: bool = False
    """Apply the schema migrations before serving (a single node, e.g. the container's
    default); with several processes or hosts run ``idnode migrate`` once instead."""
    demo: bool = False
    """Serve the seeded demo data set (``serve --demo``, same as ``idnode demo``)."""
    demo_enterprises: int = 32
    """Enterprises the demo data set seeds (at least 30)."""
    demo_identifiers: int = 10240
    """Identifiers the demo data set seeds."""

    def bootstrap_pair(self) -> tuple[str, str] | None:
        if not self.bootstrap_admin:
            return None
        access_key, sep, secret_key = self.bootstrap_admin.partition(":")
        if not sep or not access_key or not secret_key:
            raise ConfigError("bootstrap_admin must be <access-key>:<secret-key>")
        return access_key, secret_key


def _coerce(name: str, raw: Any, target: Any) -> Any:
    if target is Endpoint:
        if isinstance(raw, Endpoint):
            return raw
        return Endpoint.parse(str(raw))
    if target is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")
    if target is int:
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if not isinstance(raw, str):
        raise ConfigError(f"{name}: expected a string, got {raw!r}")
    return raw


_TYPES = {"Endpoint": Endpoint, "bool": bool, "int": int, "str": str}


def _field_types() -> dict[str, Any]:
    return {f.name: _TYPES[str(f.type)] for f in fields(Config)}


def load(
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: Config | None = None,
) -> Config:
    """Build the configuration from every source, most specific last."""
    environ = os.environ if environ is None else environ
    types = _field_types()
    values: dict[str, Any] = {}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - set(types))
        if unknown:
            raise ConfigError(f"config file {path}: unknown keys {', '.join(unknown)}")
        values.update(data)
    for name in types:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    coerced = {name: _coerce(name, raw, types[name]) for name, raw in values.items()}
    config = dataclasses.replace(base or Config(), **coerced)
    if config.log_format not in ("auto", "json", "text"):
        raise ConfigError("log_format must be auto, json or text")
    if config.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    config.bootstrap_pair()
    return config
