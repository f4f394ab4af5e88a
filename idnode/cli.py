"""The ``idnode`` command line (DESIGN §9): every flag has an ``IDNODE_*``
twin and a key in the TOML configuration file."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from . import logs, resolve_cmd
from .config import DEMO_DB, Config, ConfigError, load
from .node import Node, StartupError, open_node, serve

log = logging.getLogger("idnode")

DESCRIPTION = """\
idnode — secondary node of the Industrial Internet identifier resolution system.

Holds enterprises, their prefixes and identifiers (88.100.12/SN-2026-0001),
serves them over an SNMS-compatible admin API, and (as later releases add
them) over the Handle protocol, REST, DNS and OID.
"""

EPILOG = """\
configuration: defaults < TOML file (--config or IDNODE_CONFIG) < IDNODE_* environment
variables (IDNODE_DATABASE_URL, IDNODE_HTTP, IDNODE_NODE_PREFIX, IDNODE_BOOTSTRAP_ADMIN,
IDNODE_KEY_FILE, IDNODE_SUFFIX_CASE_SENSITIVE, IDNODE_LOG_FORMAT, ...) < flags.
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
    parser.add_argument("--log-format", choices=("auto", "json", "text"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idnode",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "serve",
        help="run the node against a migrated database",
        description="Run the node. The database must be at the current schema "
        "(run `idnode migrate` first); with --demo, serve the demo "
        "data set instead (like `idnode demo`).",
    )
    _common(p)
    p.add_argument(
        "--demo", action="store_true", default=None, help="seed and serve the demo data set"
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

    p = sub.add_parser(
        "audit",
        help="check the audit log's hash chain",
        description="Verify that no audit entry was edited, removed or "
        "reordered; exit 1 if one was.",
    )
    _common(p, http=False)
    p.add_argument("action", choices=("verify",))
    return parser


_OVERRIDES = (
    "database_url",
    "node_prefix",
    "http",
    "handle",
    "log_format",
    "demo",
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


async def _serve(config: Config) -> int:
    await serve(config)
    return 0


async def _demo(config: Config) -> int:
    from . import demo

    admin = config.bootstrap_pair() or demo.DEMO_ADMIN
    # Loopback development: Handle REST credentials over plain HTTP are accepted.
    config = dataclasses.replace(
        config, bootstrap_admin=":".join(admin), allow_plain_http_auth=True
    )

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
        for line in demo.examples(base, admin):
            print("  " + line, flush=True)

    await serve(config, migrate_schema=True, before_ready=seed, after_ready=show)
    return 0


async def _migrate(config: Config) -> int:
    from registry.db import DatabaseError, create_engine, current_revision, migrate, url_for_log

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
    if args.command == "resolve":  # a client: no configuration, no database
        return _run(resolve_cmd.run(args))
    try:
        config = _config(args)
        if args.command == "demo" or (args.command == "serve" and config.demo):
            # The demo keeps its own database unless one is named explicitly.
            config = _config(args, base=Config(database_url=DEMO_DB))
            logs.setup(config.log_format, config.log_level)
            return _run(_demo(config))
        logs.setup(config.log_format, config.log_level)
        commands: dict[str, Callable[[Config], Coroutine[Any, Any, int]]] = {
            "serve": _serve,
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


if __name__ == "__main__":
    sys.exit(main())
