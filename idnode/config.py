"""Node configuration: defaults, then a TOML file, then ``IDNODE_*`` variables,
then command-line flags — each later source overriding the earlier ones."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from registry.dnsnames import ZoneNames
from registry.grammar import Grammar
from registry.trust import IDIS_TRUST_ROOT, TrustRoot

# Re-exported: the settings' error and parsers are spelt idnode.config.X by their users.
from .setting_values import ConfigError as ConfigError
from .setting_values import ipv6_twin as ipv6_twin
from .setting_values import parse_networks as parse_networks
from .setting_values import trust_root_keys

ENV_PREFIX = "IDNODE_"
DEFAULT_DB = "sqlite+aiosqlite:///idnode.db"
DEMO_DB = "sqlite+aiosqlite:///idnode-demo.db"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
ISSUER_ALGORITHMS = ("rs256", "sm2256")
"""``issuer_algorithm``, compared in lower case."""


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
            if ":" in host:  # a bare IPv6 address: which colon starts the port?
                raise ConfigError(
                    f"bad endpoint {text!r}: write an IPv6 address as [v6-address]:port"
                )
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
    """Comma-separated networks of the reverse proxies (nginx, a load balancer) in front
    of the HTTP port. From a peer in them, ``X-Forwarded-For`` and ``X-Forwarded-Proto``
    (without those, ``Forwarded``) name the real client and scheme, walked back through
    further trusted hops; from any other peer they are ignored. Empty: none."""
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
    """Processes answering on the same ports (SO_REUSEPORT); 0: one per core this
    process may use — the CPU affinity mask, capped by the container's CPU quota (cgroup)."""
    database_pool_size: int = 10
    """Connections each process keeps open to ``database_url`` for writes and
    administration; up to ``database_pool_overflow`` more under load."""
    database_pool_overflow: int = 10
    """Extra write connections a process may open beyond ``database_pool_size``."""
    database_read_pool_size: int = 24
    """Connections each process keeps for resolution reads (PostgreSQL; to the replica
    as well when ``database_read_url`` is set). A process may use up to pool + overflow +
    read pool (x2 with a replica) connections: keep that x workers x hosts below
    PostgreSQL's ``max_connections`` (docs/operations.md)."""
    listen_ipv6: str = "auto"
    """The IPv6 address every listener also serves: ``auto`` (``::1`` beside a
    loopback address, ``::`` beside ``0.0.0.0``), ``off``, or an address."""
    toplevel: str = ""
    """Base URL of the top-level node to sync with (``serve`` runs the worker when set)."""
    toplevel_faults: str = ""
    """``idnode toplevel`` only: trouble to make on purpose, for tests
    (``error=0.2,lost=0.1,slow=0.1,busy=0.1,retry_after=2``; sync/PROTOCOL.md lists them)."""
    sync_batch: int = 500
    """Events per delivery to the top-level node (at most 500)."""
    sync_timeout: int = 30
    """Seconds to wait for the top-level node's answer."""
    toplevel_http: Endpoint = field(default_factory=lambda: Endpoint("127.0.0.1", 8100))
    """Where ``idnode toplevel`` (the mock top-level node) listens."""
    toplevel_handle: Endpoint = field(default_factory=lambda: Endpoint("127.0.0.1", 2642))
    """Where the mock top-level node answers prefix lookups on the native protocol."""
    toplevel_database_url: str = "sqlite+aiosqlite:///idnode-toplevel.db"
    """The mock top-level node's own database (its ledger of nodes, events and routes)."""
    data_dir: str = ""
    """Folder of the node's own files: relative ``key_file``, ``server_key_file`` and
    SQLite database paths are taken inside it (made, mode 0700, at start). Empty: the
    working directory."""
    key_file: str = "idnode.key"
    """The node's secret key (tokens, sealed secrets), made on first start; back it up
    with the database — a restored registry needs the key it was made with."""
    server_key_file: str = "idnode-server.pem"
    """The node's signing key (published in its HS_SITE), PEM: RSA, made on first start,
    or a DSA site key brought from HANDLE.NET."""
    site_sm2_key_file: str = ""
    """The node's SM2 site key, PEM (mode 0600), made on first start: published beside
    ``server_key_file``'s key as the HS_PUBKEY at index 302 of ``0.NA/<node prefix>``
    (the IDIS SDK's SM2_PUB_KEY record), for IDIS clients that want an SM2 key of this
    node. Name the same file in ``issuer_key_file`` (``issuer_algorithm = "SM2256"``) to
    sign trusted resolution with this one key. Empty: no SM2 site key."""
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
    issuer_key_file: str = ""
    """The node's signing key as an issuer of trust (``HS_CERT``, ``HS_SIGNATURE``), PEM:
    RSA for RS256 or SM2 for SM2256, made on first start when missing. Empty: the node
    issues no certificates and signs no records."""
    issuer_algorithm: str = "RS256"
    """``RS256`` or ``SM2256``: the algorithm of ``issuer_key_file`` and of the signing
    keys the node makes for its enterprises."""
    issuer_identity: str = ""
    """``index:handle`` of the node's signing key: the ``iss`` of what it issues and signs;
    its certificate is the ``HS_CERT`` at index 400 of that handle, its key the
    ``HS_PUBKEY`` at ``index``. Empty: ``401:0.NA/<node prefix>``."""
    issuer_cert_file: str = ""
    """The node's certificate from the trust root that is not this node (the national
    root): a JWS as an ``HS_CERT`` holds it, published as the node's. Empty: a self-rooted
    pilot, where the node certifies its own key (docs/operations.md, Trusted resolution)."""
    issuer_cert_days: int = 365
    """Days the certificates the node issues (its enterprises', and its own when
    self-rooted) and its signatures are valid."""
    resign_on_change: bool = True
    """Re-sign a record this node signed whenever it changes, in the same transaction,
    so its ``HS_SIGNATURE`` never goes stale."""
    trust_root_handle: str = IDIS_TRUST_ROOT
    """The handle of the trust root that ends every trusted chain (``idnode verify``,
    ``GET /api/verify/NAME``): IDIS ``88.111.1/0.0``; HANDLE.NET's is ``0.0/0.0``."""
    trust_root_keys: str = ""
    """The trust root's public keys (RSA, DSA or SM2): PEM files separated by commas, or
    the PEM text itself. A chain is trusted only when its self-issued root sits at
    ``trust_root_handle`` with one of these keys. Empty: no chain is trusted."""

    def bootstrap_pair(self) -> tuple[str, str] | None:
        if not self.bootstrap_admin:
            return None
        access_key, sep, secret_key = self.bootstrap_admin.partition(":")
        if not sep or not access_key or not secret_key:
            raise ConfigError("bootstrap_admin must be <access-key>:<secret-key>")
        return access_key, secret_key

    def networks(self, setting: str) -> tuple[str, ...]:
        """A comma-separated list of networks (``limits_exempt``, ...), each checked."""
        return parse_networks(str(getattr(self, setting)), setting)

    def time_zone_info(self) -> tzinfo:
        """The calendar the daily counts are kept in (``time_zone``)."""
        try:
            return zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"time_zone: unknown zone {self.time_zone!r}") from None

    def metrics_endpoint(self) -> Endpoint | None:
        """Where the listener of health and metrics alone goes (``metrics``); None: nowhere."""
        if not self.metrics:
            return None
        try:
            return Endpoint.parse(self.metrics)
        except ConfigError as exc:
            raise ConfigError(f"metrics: {exc}") from None

    def tls_files(self) -> tuple[str, str] | None:
        """The certificate and key files HTTPS is served with; None: plain HTTP."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key: set both, or neither")
        return (self.tls_cert, self.tls_key) if self.tls_cert else None

    def trust_root(self) -> TrustRoot:
        """The trust root verification believes: ``trust_root_handle`` and the keys of
        ``trust_root_keys`` (ConfigError if a file cannot be read or holds no key)."""
        return TrustRoot(self.trust_root_handle.strip(), trust_root_keys(self.trust_root_keys))

    def grammar(self) -> Grammar:
        """How this node reads identifiers: its suffix case rule, and OIDs under
        ``oid_arc`` standing for the node prefix (none when ``oid_arc`` is empty)."""
        return Grammar(
            suffix_case_sensitive=self.suffix_case_sensitive,
            oid_arc=self.oid_arc or None,
            node_prefix=self.node_prefix if self.oid_arc else None,
        )

    def dns_names(self) -> ZoneNames:
        """The names of ``dns_zone`` and the identifiers they stand for (ValueError
        or dns.exception.DNSException when the zone is no DNS name)."""
        return ZoneNames.of(self.dns_zone, suffix_case_sensitive=self.suffix_case_sensitive)

    def validate(self) -> Config:
        """Every setting checked at once, so a node with a bad one never starts:
        ConfigError names the first bad setting."""
        for name, (low, high) in INT_RANGES.items():
            value = getattr(self, name)
            if value < low or (high is not None and value > high):
                wanted = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise ConfigError(f"{name}: must be {wanted}, got {value}")
        choices = {
            "log_format": ("auto", "json", "text"),
            "log_level": LOG_LEVELS,
            "issuer_algorithm": ISSUER_ALGORITHMS,
        }
        for name, allowed in choices.items():
            if str(getattr(self, name)).lower() not in allowed:
                raise ConfigError(f"{name}: must be one of {', '.join(allowed)}")
        for name in NETWORK_SETTINGS:
            self.networks(name)
        for name in URL_SETTINGS:
            _check_database_url(name, getattr(self, name))
        if self.database_read_url and not self.database_url.startswith("postgresql"):
            raise ConfigError("database_read_url: needs a PostgreSQL database_url (its primary)")
        if self.toplevel and urlsplit(self.toplevel).scheme not in ("http", "https"):
            raise ConfigError(
                f"toplevel: expected an http:// or https:// URL, got {self.toplevel!r}"
            )
        one_sm2_key = bool(self.site_sm2_key_file) and os.path.normpath(
            self.site_sm2_key_file
        ) == os.path.normpath(self.issuer_key_file or ".")
        if one_sm2_key and self.issuer_algorithm.lower() != "sm2256":
            raise ConfigError(
                "site_sm2_key_file: the same file as issuer_key_file, so issuer_algorithm "
                "must be SM2256 (one SM2 key for both)"
            )
        self.metrics_endpoint()
        self.tls_files()
        ipv6_twin(self.listen_ipv6, "127.0.0.1")
        self.time_zone_info()
        self.bootstrap_pair()
        self.trust_root()
        return self

    def within_data_dir(self) -> Config:
        """Relative key files and SQLite databases taken inside ``data_dir``."""
        if not self.data_dir:
            return self
        base = Path(self.data_dir).expanduser()
        moved: dict[str, Any] = {}
        for name in ("key_file", "server_key_file", "site_sm2_key_file", "issuer_key_file"):
            path = Path(getattr(self, name))
            if getattr(self, name) and not path.is_absolute():  # an optional one may be unset
                moved[name] = str(base / path)
        for name in ("database_url", "toplevel_database_url"):
            url = _sqlite_within(getattr(self, name), base)
            if url is not None:
                moved[name] = url
        return dataclasses.replace(self, **moved)


INT_RANGES: dict[str, tuple[int, int | None]] = {
    "dns_rrl_rate": (0, None),
    "dns_rrl_burst": (0, None),
    "dns_rrl_slip": (0, 100),
    "client_rate": (0, None),
    "client_burst": (0, None),
    "client_daily_limit": (0, None),
    "enterprise_rate": (0, None),
    "enterprise_burst": (0, None),
    "udp_amplification": (0, 1000),
    "login_attempts": (0, None),
    "login_lockout": (1, 366 * 86400),
    "scan_threshold": (1, None),
    "traffic_window": (1, 86400),
    "enterprise_identifier_limit": (0, None),
    "prefix_limit": (0, None),
    "workers": (0, 1024),
    "database_pool_size": (1, 1000),
    "database_pool_overflow": (0, 1000),
    "database_read_pool_size": (1, 1000),
    "sync_batch": (1, 500),
    "sync_timeout": (1, 3600),
    "proxy_server_id": (1, 2**31 - 1),
    "cache_entries": (0, 100_000_000),
    "accounting_interval": (1, 3600),
    "demo_enterprises": (1, 100_000),
    "demo_identifiers": (0, 100_000_000),
    "issuer_cert_days": (1, 36_500),
}
"""The range of every integer setting (inclusive; None: no upper bound)."""

NETWORK_SETTINGS = ("dns_rrl_exempt", "limits_exempt", "trusted_proxies")
URL_SETTINGS = ("database_url", "database_read_url", "toplevel_database_url")
"""Database URLs: their passwords are masked wherever settings are shown."""
SECRET_SETTINGS = ("bootstrap_admin",)
"""Shown masked whole."""
FILE_SETTINGS = (*SECRET_SETTINGS, *URL_SETTINGS)
"""Settings that may be read from a file instead (``IDNODE_<NAME>_FILE`` or the TOML key
``<name>_file``), as Docker and Kubernetes secrets are mounted."""
MASK = "********"


def masked(name: str, value: Any) -> Any:
    """A setting's value fit to show: secrets hidden, database passwords hidden."""
    if name in SECRET_SETTINGS and value:
        return MASK
    if name in URL_SETTINGS and value:
        try:
            url = make_url(value)
        except ArgumentError:
            return value
        if url.password:
            return url.render_as_string(hide_password=True).replace("***", MASK)
    return value


def _check_database_url(name: str, value: str) -> None:
    if not value:
        if name == "database_url":
            raise ConfigError("database_url: must be set")
        return
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(f"{name}: not a database URL: {masked(name, value)!r}") from None
    if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ConfigError(
            f"{name}: use sqlite+aiosqlite:///FILE or postgresql+asyncpg://..., "
            f"not {url.drivername}"
        )


def _sqlite_within(value: str, base: Path) -> str | None:
    """A SQLite URL whose relative file is moved inside ``base`` (None: unchanged)."""
    if not value.startswith("sqlite"):
        return None
    try:
        url = make_url(value)
    except ArgumentError:
        return None  # validate() names it
    if not url.database or url.database == ":memory:" or Path(url.database).is_absolute():
        return None
    return url.set(database=str(base / url.database)).render_as_string(hide_password=False)


def _coerce(name: str, raw: Any, target: Any) -> Any:
    if target is Endpoint:
        if isinstance(raw, Endpoint):
            return raw
        try:
            return Endpoint.parse(str(raw))
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
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
        if isinstance(raw, bool):
            raise ConfigError(f"{name}: expected an integer, got {raw!r}")
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


def _read_secret(name: str, path: str) -> str:
    """A setting's value from a file: its text without the trailing newline."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{name}_file: cannot read {path}: {reason}") from None
    return text.rstrip("\r\n")


def _with_secret_files(values: dict[str, Any], files: Mapping[str, Any], origin: str) -> None:
    """Fill ``values`` from the ``<name>_file`` entries of one source."""
    for name in FILE_SETTINGS:
        path = files.get(name)
        if path is None:
            continue
        if name in values:
            raise ConfigError(f"{origin}: set {name} or {name}_file, not both")
        values[name] = _read_secret(name, str(path))


def load(
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: Config | None = None,
) -> Config:
    """Build the configuration from every source, most specific last, and check it."""
    environ = os.environ if environ is None else environ
    types = _field_types()
    values: dict[str, Any] = {}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        file_keys = {f"{name}_file": name for name in FILE_SETTINGS}
        unknown = sorted(set(data) - set(types) - set(file_keys))
        if unknown:
            raise ConfigError(f"config file {path}: unknown keys {', '.join(unknown)}")
        from_file = {k: v for k, v in data.items() if k in types}
        _with_secret_files(
            from_file,
            {file_keys[k]: v for k, v in data.items() if k in file_keys},
            f"config file {path}",
        )
        values.update(from_file)
    from_env = {
        name: environ[ENV_PREFIX + name.upper()]
        for name in types
        if ENV_PREFIX + name.upper() in environ
    }
    _with_secret_files(
        from_env,
        {
            name: environ[f"{ENV_PREFIX}{name.upper()}_FILE"]
            for name in FILE_SETTINGS
            if f"{ENV_PREFIX}{name.upper()}_FILE" in environ
        },
        "environment",
    )
    values.update(from_env)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    coerced = {name: _coerce(name, raw, types[name]) for name, raw in values.items()}
    config = dataclasses.replace(base or Config(), **coerced)
    return config.validate().within_data_dir()
