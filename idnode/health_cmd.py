"""``idnode health``: ask the node configured here whether it is healthy
(``GET /healthz`` on its HTTP address, over TLS when it serves TLS). The
container's HEALTHCHECK runs it, so the probe follows ``IDNODE_HTTP`` wherever
the operator moves it; it imports little, since it runs every few seconds."""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any

from .config import ConfigError, load

TIMEOUT_SECONDS = 4.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "health",
        help="check the node configured here: GET /healthz on its HTTP address",
        description="Exit 0 when the node at the configured HTTP address (http, or "
        "https with tls_cert) answers /healthz with 200 (it runs and reaches its "
        "database), 1 otherwise with one line saying why. For container health checks.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--http", metavar="HOST:PORT", help="the node's HTTP address")


def probe_url(host: str, port: int, *, tls: bool) -> str:
    """Where to ask: a wildcard listener is asked on its loopback address."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}/healthz"


def run(args: argparse.Namespace) -> int:
    try:
        config = load(config_file=args.config, overrides={"http": args.http})
    except ConfigError as exc:
        print(f"idnode: configuration error: {exc}", file=sys.stderr)
        return 2
    tls = bool(config.tls_cert)
    url = probe_url(config.http.host, config.http.port, tls=tls)
    context = None
    if tls:
        # The node's own certificate may name its public host, not loopback: the
        # probe checks that the node answers, not who it is.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS, context=context) as answer:  # noqa: S310 - the URL is built above
            body = answer.read(4096)
    except urllib.error.HTTPError as exc:
        print(f"idnode: unhealthy: {url} answered HTTP {exc.code}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"idnode: unhealthy: cannot reach {url}: {reason}", file=sys.stderr)
        return 1
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        status = None
    if status != "ok":
        print(f"idnode: unhealthy: {url} did not say ok", file=sys.stderr)
        return 1
    return 0
