"""The ``idnode`` command line (DESIGN §9): every flag has an ``IDNODE_*``
twin and a key in the TOML configuration file."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import dns.exception
import dns.name

from . import health_cmd, logs, resolve_cmd, verify_cmd
from .config import DEMO_DB, Config, ConfigError, load
from .listen import StartupError
from .node import Node, open_node, serve
from .worker_process import serve_worker

log = logging.getLogger("idnode")

DESCRIPTION = """\
idnode — secondary node of the Industrial Internet identifier resolution system.

Holds enterprises, their prefixes and identifiers (88.100.12/SN-2026-0001, or
OIDs such as 1.2.156.86.1.12.7), serves them over an SNMS-compatible admin
API, and resolves them over the Handle protocol (UDP and TCP), the Handle REST
API, an HTTP redirect proxy and an authoritative DNS zone.
"""

EPILOG = """\
configuration: defaults < TOML file (--config or IDNODE_CONFIG) < IDNODE_* environment
variables (IDNODE_DATABASE_URL, IDNODE_HTTP, IDNODE_NODE_PREFIX, IDNODE_BOOTSTRAP_ADMIN,
IDNODE_KEY_FILE, IDNODE_SUFFIX_CASE_SENSITIVE, IDNODE_LOG_FORMAT, ...) < flags.

errors: one line on stderr and a non-zero exit; IDNODE_LOG_LEVEL=debug (or log_level
= "debug" in the file) adds the traceback of an unexpected one, for a bug report.
progress: long jobs (demo seeding, backup, restore) report on stderr, a bar on a
terminal and a line every 5 s otherwise; stdout keeps what scripts read.
"""


def _common(parser: argparse.ArgumentParser, *, http: bool = True) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--db",
        metavar="URL",
        dest="database_url",
        help="database URL (default sqlite+aiosqlite:///idnode.db; "
        "postgresql+asyncpg://user@host/db for PostgreSQL)",
    )
    parser.add_argument(
        "--node-prefix", metavar="PREFIX", help="this node's own prefix (default 88.100)"
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder of the node's files: relative key files and SQLite databases go in it",
    )
    if http:
        parser.add_argument(
            "--http",
            metavar="HOST:PORT",
            help="admin/HTTP listener (default 127.0.0.1:8000; port 0 = any)",
        )
        parser.add_argument(
            "--handle",
            metavar="HOST:PORT",
            help="native Handle protocol, UDP and TCP on one port (default 127.0.0.1:2641)",
        )
        parser.add_argument(
            "--dns",
            metavar="HOST:PORT",
            help="authoritative DNS for the zone, UDP and TCP on one port (default 127.0.0.1:5353)",
        )
        parser.add_argument(
            "--toplevel",
            metavar="URL",
            help="also run the sync worker against this top-level node",
        )
        parser.add_argument(
            "--workers",
            type=int,
            metavar="N",
            help="processes sharing the HTTP, Handle and DNS ports (default: one a core)",
        )
    parser.add_argument("--log-format", choices=("auto", "json", "text"))


MAX_REPORT_DAYS = 3660


def _days(text: str) -> int:
    """``report --days``: a whole number of days, 1 to ten years."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 1 <= days <= MAX_REPORT_DAYS:
        raise argparse.ArgumentTypeError(f"{days} days: give 1 to {MAX_REPORT_DAYS}")
    return days


def _metrics_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="a listener with only /metrics, /healthz and /readyz (port 0 = any)",
    )


def package_version() -> str:
    """The installed distribution's version; a source tree that was never
    installed (no metadata) has the package's own."""
    from importlib import metadata

    try:
        return metadata.version("idnode")
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idnode",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"idnode {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "serve",
        help="run the node against a migrated database",
        description="Run the node. The database must be at the current schema "
        "(run `idnode migrate` first); with --demo, serve the demo "
        "data set instead (like `idnode demo`).",
    )
    _common(p)
    _metrics_flag(p)
    p.add_argument(
        "--demo", action="store_true", default=None, help="seed and serve the demo data set"
    )
    p.add_argument(
        "--migrate",
        action="store_true",
        default=None,
        dest="migrate_on_start",
        help="apply the schema migrations first (one process; see docs/operations.md)",
    )

    p = sub.add_parser(
        "demo",
        help="seed a demo data set into ./idnode-demo.db and serve it",
        description="Create (once) a SQLite database with >= 30 enterprises in "
        "five application modes, a metadata template per mode and "
        ">= 10,000 identifiers, then serve it and print example "
        "requests. The admin key pair is IDNODE_BOOTSTRAP_ADMIN or "
        "demo-admin:demo-secret.",
    )
    _common(p)
    _metrics_flag(p)
    p.add_argument(
        "--enterprises",
        type=int,
        dest="demo_enterprises",
        help="number of demo enterprises (default 32)",
    )
    p.add_argument(
        "--identifiers",
        type=int,
        dest="demo_identifiers",
        help="number of demo identifiers (default 10240)",
    )

    p = sub.add_parser(
        "migrate",
        help="apply the database schema migrations",
        description="Create or upgrade the database schema (Alembic).",
    )
    _common(p, http=False)

    resolve_cmd.add_parser(sub)
    verify_cmd.add_parser(sub)
    health_cmd.add_parser(sub)

    p = sub.add_parser(
        "dns-name",
        help="the DNS name of an identifier, or the identifier of a DNS name",
        description="Map an identifier (88.100.1/abc, 0.NA/88.100.1, or an OID such as "
        "1.2.156.86.1.3.7) to its name in the node's DNS zone, or with --reverse a "
        "name in the zone back to the identifier. Uses dns_zone, oid_arc, node_prefix "
        "and suffix_case_sensitive from the configuration.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--node-prefix", metavar="PREFIX", help="this node's own prefix")
    p.add_argument("--zone", dest="dns_zone", metavar="ZONE", help="the DNS zone")
    p.add_argument("--reverse", action="store_true", help="NAME is a DNS name: give the identifier")
    p.add_argument("name", metavar="NAME")

    p = sub.add_parser(
        "sync",
        help="sync with the top-level node: run the worker, or show its status",
        description="run: deliver the outbox to the top-level node and pull its route "
        "table until stopped (serve --toplevel runs the same worker). status: backlog, "
        "lag, parked events, last success. retry: send parked events again. verify: "
        "compare what the top-level node holds with the registry and queue what differs.",
    )
    _common(p, http=False)
    _metrics_flag(p)
    p.add_argument("--toplevel", metavar="URL", help="the top-level node's base URL")
    p.add_argument("action", nargs="?", default="run", choices=("run", "status", "retry", "verify"))

    p = sub.add_parser(
        "report",
        help="daily resolutions and enterprises served against the requirements",
        description="Print the last N days (in time_zone) from the database: resolutions "
        "by protocol and enterprises served, against the targets of 100,000 resolutions "
        "a day and 30 enterprises; with --html, also write a page with a chart.",
    )
    _common(p, http=False)
    p.add_argument("--days", type=_days, default=14, metavar="N", help="days to show (default 14)")
    p.add_argument("--html", metavar="FILE", help="also write an HTML page with a chart")

    p = sub.add_parser(
        "toplevel",
        help="run the mock national top-level node (sync/PROTOCOL.md)",
        description="A real server with its own store that takes node registrations, "
        "events and statistics, and serves the route table and prefix lookups, as "
        "sync/PROTOCOL.md says; for development and tests.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument(
        "--http",
        dest="toplevel_http",
        metavar="HOST:PORT",
        help="listener (default 127.0.0.1:8100; port 0 = any)",
    )
    p.add_argument(
        "--handle",
        dest="toplevel_handle",
        metavar="HOST:PORT",
        help="native Handle prefix lookups, UDP and TCP (default 127.0.0.1:2642; port 0 = any)",
    )
    p.add_argument(
        "--db",
        dest="toplevel_database_url",
        metavar="URL",
        help="its store (default sqlite+aiosqlite:///idnode-toplevel.db)",
    )
    p.add_argument(
        "--faults",
        dest="toplevel_faults",
        metavar="SPEC",
        help="make trouble on purpose, for tests: error=P,lost=P,slow=P,delay=S,busy=P,"
        "retry_after=S,retry_format=seconds|date|garbage|none,seed=N (busy: 503/429 with "
        "Retry-After to any signed request; sync/PROTOCOL.md §11)",
    )
    p.add_argument("--log-format", choices=("auto", "json", "text"))

    # Started by `serve --workers N`, not by hand: one more process on the node's ports.
    p = sub.add_parser("worker")
    p.add_argument("--config", metavar="FILE", help=argparse.SUPPRESS)

    p = sub.add_parser(
        "audit",
        help="check the audit log's hash chain",
        description="Verify that no audit entry was edited, removed or "
        "reordered; exit 1 if one was.",
    )
    _common(p, http=False)
    p.add_argument("action", choices=("verify",))

    p = sub.add_parser(
        "config",
        help="print the effective configuration, or the reference of every setting",
        description="Print the configuration this node would run with (every source "
        "applied, secrets masked) as TOML, or with --reference the Markdown reference "
        "of every setting (docs/operations.md holds it).",
    )
    _common(p)
    p.add_argument(
        "--reference",
        nargs="?",
        const="markdown",
        choices=("markdown", "toml"),
        help="the settings' reference: Markdown (docs/operations.md), or toml: a commented "
        "configuration file with every setting at its default (idnode.example.toml)",
    )

    p = sub.add_parser(
        "backup",
        help="write the whole registry to a file (consistent while the node serves)",
        description="Write every table of the registry, read in one snapshot, to FILE "
        "(gzip-compressed JSON lines). Keep the node's key files beside it.",
    )
    _common(p, http=False)
    p.add_argument("file", help="where to write the backup")

    p = sub.add_parser(
        "restore",
        help="load a backup into a new database (SQLite or PostgreSQL)",
        description="Load FILE, made by `idnode backup`, into the database in one "
        "transaction. The database must be migrated (`idnode migrate`) and hold no "
        "registry yet: a restore never overwrites one (its audit log is append-only).",
    )
    _common(p, http=False)
    p.add_argument("file", help="the backup to load")
    return parser


_OVERRIDES = (
    "data_dir",
    "database_url",
    "node_prefix",
    "http",
    "handle",
    "dns",
    "workers",
    "dns_zone",
    "toplevel",
    "toplevel_faults",
    "toplevel_http",
    "toplevel_handle",
    "toplevel_database_url",
    "log_format",
    "metrics",
    "demo",
    "migrate_on_start",
    "demo_enterprises",
    "demo_identifiers",
)


def _config(args: argparse.Namespace, base: Config | None = None) -> Config:
    overrides = {name: getattr(args, name, None) for name in _OVERRIDES}
    return load(config_file=args.config, overrides=overrides, base=base)


def _run(coroutine: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def _serve(config: Config, reload: Callable[[], Config] | None = None) -> int:
    await serve(config, migrate_schema=config.migrate_on_start, reload=reload)
    return 0


async def _demo(config: Config, reload: Callable[[], Config] | None = None) -> int:
    from . import demo, demo_trust

    admin = config.bootstrap_pair() or demo.DEMO_ADMIN

    def demo_settings(config: Config) -> Config:
        # Loopback development: Handle REST credentials over plain HTTP are accepted.
        return demo_trust.settings(
            dataclasses.replace(config, bootstrap_admin=":".join(admin), allow_plain_http_auth=True)
        )

    config = demo_settings(config)

    async def seed(node: Node) -> None:
        print(
            "idnode demo: preparing the demo data set (first start takes a minute)...", flush=True
        )
        summary = await demo.seed(
            node.registry,
            enterprises=config.demo_enterprises,
            identifiers=config.demo_identifiers,
            admin=admin,
        )
        state = "seeded" if summary.seeded else "kept"
        print(
            f"idnode demo: {state} {summary.enterprises} enterprises in {summary.modes} "
            f"application modes with {summary.identifiers} identifiers",
            flush=True,
        )
        signed = await demo_trust.sign_records(node.registry, admin)
        print(demo_trust.describe(config, signed), flush=True)

    def show(node: Node, http: Any) -> None:
        base = f"http://{http}"
        print(
            f"idnode demo: admin access key {admin[0]} secret key {admin[1]}; "
            f"enterprise users ent1..ent{config.demo_enterprises} "
            f"password {demo.DEMO_USER_PASSWORD}",
            flush=True,
        )
        print(
            f"idnode demo: lookup page {demo.lookup_page(base)} (open it in a browser)", flush=True
        )
        print("idnode demo: try these (stop with Ctrl-C):", flush=True)
        dns_at = node.endpoints.get("dns")

        def dig(handle: str) -> str:
            assert dns_at is not None
            owner = config.dns_names().of_identifier(node.resolver.parse(handle)).to_text()
            return f"dig @{dns_at.host} -p {dns_at.port} +short {owner} URI"

        for line in demo.examples(base, admin, dig if dns_at else None):
            print("  " + line, flush=True)
        for line in demo_trust.examples(config, base, node.endpoints.get("handle")):
            print("  " + line, flush=True)

    await serve(
        config,
        migrate_schema=True,
        before_ready=seed,
        after_ready=show,
        reload=(lambda: demo_settings(reload())) if reload is not None else None,
    )
    return 0


async def _migrate(config: Config) -> int:
    from registry.db import DatabaseError, create_engine, current_revision, migrate, url_for_log

    from .node import make_data_dir

    make_data_dir(config)
    engine = create_engine(config.database_url)
    try:
        await migrate(engine)
        revision = await current_revision(engine)
    except DatabaseError as exc:
        raise StartupError(str(exc)) from None
    finally:
        await engine.dispose()
    print(f"migrated {url_for_log(config.database_url)} to schema {revision}", flush=True)
    return 0


async def _toplevel(config: Config) -> int:
    from .toplevel_cmd import serve_toplevel

    await serve_toplevel(config)
    return 0


async def _worker(config: Config) -> int:
    await serve_worker(config)
    return 0


def _dns_name(args: argparse.Namespace) -> int:
    from registry.dnsnames import Apex, Branch, Hashed, Named, NotAnIdentifier
    from registry.grammar import GrammarError

    try:
        config = _config(args)
        names = config.dns_names()
        grammar = config.grammar()
    except (ConfigError, ValueError, dns.exception.DNSException) as exc:  # --zone, say
        print(f"idnode: {exc}", file=sys.stderr)
        return 2
    try:
        if not args.reverse:
            print(names.of_identifier(grammar.parse(args.name, bare_prefix=True)).to_text())
            return 0
        target = names.target(dns.name.from_text(args.name))
    except (GrammarError, NotAnIdentifier, dns.exception.DNSException) as exc:
        print(f"idnode: {exc}", file=sys.stderr)
        return 1
    if isinstance(target, Named):
        print(target.text)
    elif isinstance(target, Branch) and not target.oid:
        print(f"0.NA/{target.prefix}")
    elif isinstance(target, Branch):
        print(".".join(str(arc) for arc in target.arcs))
    elif isinstance(target, Hashed):
        print(
            f"idnode: {args.name} names a handle under {target.prefix} by a digest of its "
            "suffix; its TXT record holds the full name (hdl=...)",
            file=sys.stderr,
        )
        return 1
    else:
        assert isinstance(target, Apex)
        print(f"idnode: {args.name} is the zone's apex, no identifier", file=sys.stderr)
        return 1
    return 0


async def _audit(config: Config) -> int:
    async with open_node(config) as node:
        problems = await node.registry.verify_audit()
    if problems:
        for problem in problems:
            print(f"audit: {problem}")
        return 1
    print("audit: hash chain intact")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "resolve":  # a client: no configuration, no database
            return _run(resolve_cmd.run(args))
        if args.command == "verify":  # a client: the trust root is all it configures
            return _run(verify_cmd.run(args))
        if args.command == "dns-name":
            return _dns_name(args)
        if args.command == "health":
            return health_cmd.run(args)
        if args.command == "worker":
            config = _config(args)
            logs.setup(config.log_format, config.log_level)
            return _run(_worker(config))
        config = _config(args)
        if args.command == "demo" or (args.command == "serve" and config.demo):
            # The demo keeps its own database unless one is named explicitly.
            config = _config(args, base=Config(database_url=DEMO_DB))
            logs.setup(config.log_format, config.log_level)
            return _run(_demo(config, lambda: _config(args, base=Config(database_url=DEMO_DB))))
        logs.setup(config.log_format, config.log_level)
        if args.command == "sync":
            from . import sync_cmd

            return _run(sync_cmd.run(config, args.action, lambda: _config(args)))
        if args.command == "report":
            from .report import report

            return _run(report(config, args.days, args.html))
        if args.command == "serve":
            return _run(_serve(config, lambda: _config(args)))
        if args.command == "config":
            from . import reference

            if args.reference == "toml":
                shown = reference.example_toml(build_parser())
            elif args.reference:
                shown = reference.markdown(build_parser())
            else:
                shown = reference.effective(config)
            print(shown, end="")
            return 0
        if args.command in ("backup", "restore"):
            from . import backup_cmd

            run = backup_cmd.dump if args.command == "backup" else backup_cmd.restore
            return _run(run(config, args.file))
        commands: dict[str, Callable[[Config], Coroutine[Any, Any, int]]] = {
            "toplevel": _toplevel,
            "migrate": _migrate,
            "audit": _audit,
        }
        return _run(commands[args.command](config))
    except ConfigError as exc:
        print(f"idnode: configuration error: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"idnode: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last resort, after every foreseen error above
        return _unexpected(exc)


def _unexpected(exc: Exception) -> int:
    """One line for an error nothing above foresaw; its traceback when the log
    level is debug (IDNODE_LOG_LEVEL=debug, or log_level in the file), for a report."""
    from registry.db import describe_error

    wanted = os.environ.get("IDNODE_LOG_LEVEL", "").strip().lower() == "debug"
    if wanted or logging.getLogger().isEnabledFor(logging.DEBUG):
        traceback.print_exception(exc, file=sys.stderr)
    kind, detail = type(exc).__name__, describe_error(exc)
    what = kind if detail == kind else f"{kind}: {detail}"
    print(f"idnode: unexpected error: {what} (IDNODE_LOG_LEVEL=debug shows where)", file=sys.stderr)
    return 1
