"""``idnode verify``: is a record's content vouched for by a chain to the trust root?

By default this command is the verifier: it fetches the record and every
certificate of its chain over the native protocol (following referrals from the
node it asks, so records and certificates held elsewhere are found) and judges
them against its own trust root — from ``--trust-root``/``--root-key``, or the
``trust_root_*`` settings. With ``--http`` it asks the node's
``GET /api/verify/NAME`` and shows the node's verdict instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from registry.models import HandleValue
from registry.trust import (
    KeyFormatError,
    PublicKey,
    ResolutionFailed,
    TrustRoot,
    load_public_key,
    verify_record,
)
from resolver.handle import client
from resolver.handle import codec as c

from .config import ConfigError, Endpoint, load
from .resolve_cmd import HTTP_TIMEOUT


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="verify a handle's HS_SIGNATURE and HS_CERT chain (trusted resolution)",
        description="Fetch NAME and the certificates of its signatures' chains and judge "
        "them against the trust root; print the chain and the verdict. Exit 0 when "
        "trusted, 1 for any other verdict or when NAME is not found, 2 when it could not "
        "be asked.",
    )
    p.add_argument("name", help="the handle, e.g. 88.100.1/SN-2026-000001")
    p.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="node to ask (default 127.0.0.1:2641, or :8000 with --http); referrals "
        "to other nodes are followed",
    )
    transport = p.add_mutually_exclusive_group()
    transport.add_argument("--tcp", action="store_true", help="native protocol over TCP only")
    transport.add_argument(
        "--http",
        action="store_true",
        help="ask the node to verify (GET /api/verify/NAME) and show its verdict",
    )
    p.add_argument(
        "--trust-root",
        metavar="HANDLE",
        help="the trust root's handle (default: trust_root_handle, 88.111.1/0.0)",
    )
    p.add_argument(
        "--root-key",
        metavar="PEM",
        action="append",
        default=[],
        help="a trust root public key file (repeat for several; default: trust_root_keys)",
    )
    p.add_argument("--config", metavar="FILE", help="TOML configuration with trust_root_*")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _key_file(path: str) -> PublicKey:
    try:
        return load_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"--root-key {path}: {exc.strerror}") from None
    except KeyFormatError as exc:
        raise ConfigError(f"--root-key {path}: {exc}") from None


def _trust_root(args: argparse.Namespace) -> TrustRoot:
    """The command line's root, or else the configuration's."""
    settings = load(config_file=args.config)
    if args.root_key:
        keys = tuple(_key_file(path) for path in args.root_key)
    else:
        keys = settings.trust_root().keys
    return TrustRoot(args.trust_root or settings.trust_root_handle, keys)


class NativeRecords:
    """Records over the native protocol, from ``server`` and where it refers."""

    def __init__(self, server: Endpoint, *, udp: bool) -> None:
        self.targets = [(server.host, server.port, udp)]
        self.udp = udp

    async def values_of(self, handle: str) -> Sequence[HandleValue] | None:
        try:
            answer, _ = await client.follow(handle, self.targets, udp_first=self.udp)
        except (client.ClientError, OSError, c.CodecError) as exc:
            raise ResolutionFailed(str(exc) or type(exc).__name__) from None
        code = answer.header.response_code
        if code == 1:
            return client.values_of(answer)
        if code == 100:
            return None
        if code == 200:
            return ()
        raise ResolutionFailed(f"response code {code} {client.error_text(answer)}".strip())


def _print(report: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0 if report.get("trusted") else 1
    print(f"{report['handle']}: {report['verdict']} — {report['reason']}")
    print(f"  trust root {report['trustRoot']}")
    for signature in report.get("signatures", []):
        verdict = f"{signature['verdict']} — {signature['reason']}"
        print(f"  HS_SIGNATURE {signature['index']}: {verdict}")
        for link in signature.get("chain", []):
            checks = [
                "verifies" if link["signatureVerifies"] else "DOES NOT VERIFY",
                "in dates" if link["dateInRange"] else "OUTSIDE ITS DATES",
                "authorized" if link["authorized"] else "NOT AUTHORIZED",
            ]
            if link.get("selfIssued"):
                trusted = "trusted" if signature.get("rootTrusted") else "not trusted"
                checks.append(f"self-issued root ({trusted})")
            where = link["location"] or "-"
            print(f"    {where:<32} {link['alg']:<7} iss {link['iss']}: {', '.join(checks)}")
    signed = ", ".join(str(i) for i in report.get("signedValues", [])) or "none"
    unsigned = ", ".join(str(i) for i in report.get("unsignedValues", [])) or "none"
    print(f"  signed values: {signed}; unsigned: {unsigned}")
    return 0 if report.get("trusted") else 1


async def run(args: argparse.Namespace) -> int:
    default = "127.0.0.1:8000" if args.http else "127.0.0.1:2641"
    try:
        server = Endpoint.parse(args.server or default)
        if args.http:
            return await _over_http(args, server)
        root = _trust_root(args)
    except ConfigError as exc:
        print(f"idnode verify: {exc}", file=sys.stderr)
        return 2
    records = NativeRecords(server, udp=not args.tcp)
    try:
        values = await records.values_of(args.name)
    except ResolutionFailed as exc:
        print(f"idnode verify: {server}: {exc}", file=sys.stderr)
        return 2
    if values is None:
        print(f"idnode verify: {args.name}: handle not found", file=sys.stderr)
        return 1
    report = await verify_record(args.name, values, records.values_of, root)
    return _print(report.to_json(), args.json)


async def _over_http(args: argparse.Namespace, server: Endpoint) -> int:
    url = yarl.URL(f"http://{server}/api/verify/{quote(args.name, safe='/')}", encoded=True)
    try:
        async with (
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session,
            session.get(url) as resp,
        ):
            raw = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"idnode verify: {server}: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 2
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("responseCode"), int):
        shown = " ".join(raw[:80].decode("utf-8", "replace").split())
        answer = f"HTTP {resp.status} {shown!r}"
        print(f"idnode verify: {server}: not an answer of /api/verify: {answer}", file=sys.stderr)
        return 2
    if "verdict" not in body:
        message = body.get("message") or f"response code {body['responseCode']}"
        print(f"idnode verify: {args.name}: {message}", file=sys.stderr)
        return 1
    return _print(body, args.json)
