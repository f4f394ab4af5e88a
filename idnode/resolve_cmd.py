"""``idnode resolve``: ask a node for a handle over UDP, TCP or HTTP, and print it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import yarl

from registry.models import HandleValue
from resolver.codes import RC_ERROR
from resolver.handle import client
from resolver.handle import codec as c
from resolver.http.values_json import value_json

from .config import ConfigError, Endpoint

RESPONSE_NAMES = {
    1: "found",
    100: "handle not found",
    200: "values not found",
    301: "not served here",
    302: "service referral",
    303: "prefix referral",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "resolve",
        help="resolve a handle at a node (native UDP/TCP or HTTP)",
        description="Resolve NAME at a node and print its values; exit 0 when found, "
        "1 when the node answered otherwise, 2 when it could not be asked.",
    )
    p.add_argument("name", help="the handle, e.g. 88.100.1/SN-2026-000001")
    p.add_argument(
        "--server",
        metavar="HOST:PORT",
        help="node to ask (default 127.0.0.1:2641, or :8000 with --http)",
    )
    transport = p.add_mutually_exclusive_group()
    transport.add_argument(
        "--udp",
        action="store_const",
        dest="transport",
        const="udp",
        help="native protocol over UDP (the default)",
    )
    transport.add_argument("--tcp", action="store_const", dest="transport", const="tcp")
    transport.add_argument(
        "--http",
        action="store_const",
        dest="transport",
        const="http",
        help="the REST API, GET /api/handles/NAME",
    )
    p.add_argument("--type", action="append", default=[], help="only values of this type")
    p.add_argument(
        "--index", action="append", type=int, default=[], help="only the value at this index"
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="follow referrals (RC 302/303) to the node that holds the name, e.g. "
        "starting at the top-level node; each hop is printed to stderr",
    )
    p.add_argument("--json", action="store_true", help="print the values as JSON")


def _print(code: int, values: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(json.dumps({"responseCode": code, "values": values}, ensure_ascii=False))
    else:
        print(f"response code {code} ({RESPONSE_NAMES.get(code, 'error')})")
        for v in values:
            data = v["data"]
            shown = data["value"] if data["format"] == "string" else json.dumps(data["value"])
            print(f"  {v['index']:>6}  {v['type']:<20} {shown}")
    return 0 if code == 1 else 1


async def run(args: argparse.Namespace) -> int:
    transport = args.transport or "udp"
    default = "127.0.0.1:8000" if transport == "http" else "127.0.0.1:2641"
    try:
        server = Endpoint.parse(args.server or default)
    except ConfigError as exc:
        print(f"idnode resolve: {exc}", file=sys.stderr)
        return 2
    try:
        if transport == "http":
            return await _over_http(args, server)
        if args.follow:
            udp = transport == "udp"
            answer, hops = await client.follow(
                args.name,
                [(server.host, server.port, udp)],
                udp_first=udp,
                indexes=args.index,
                types=args.type,
            )
            for hop in hops:
                print(f"asked {hop.host}:{hop.port}: response code {hop.code}", file=sys.stderr)
        else:
            message = client.resolution(args.name, indexes=args.index, types=args.type)
            if transport == "udp":
                answer = await client.udp_call(server.host, server.port, message)
                if answer.header.response_code == RC_ERROR:
                    print(f"idnode resolve: {client.error_text(answer)}; asking over TCP",
                          file=sys.stderr)  # fmt: skip
                    answer = await client.tcp_call(server.host, server.port, message)
            else:
                answer = await client.tcp_call(server.host, server.port, message)
    except (client.ClientError, OSError, c.CodecError) as exc:
        print(f"idnode resolve: {server}: {exc}", file=sys.stderr)
        return 2
    code = answer.header.response_code
    values: tuple[HandleValue, ...] = ()
    if code in (1, 302, 303):
        values = c.HandleValues.from_bytes(answer.body, values_optional=True).values
    elif code != 100 and code != 200:
        print(f"idnode resolve: {client.error_text(answer)}", file=sys.stderr)
    return _print(code, [value_json(v) for v in values], args.json)


HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
"""A node that accepts the connection but never answers is not waited for forever."""


class NotHandleRest(Exception):
    """The server answered, but not as the Handle REST API does."""


def handle_url(server: Endpoint, name: str, params: list[tuple[str, str]]) -> yarl.URL:
    """``GET /api/handles/NAME``, the name percent-encoded as UTF-8 (a space, ``#``,
    ``?``, ``%`` are part of it, not of the URL); its slashes stay, as the node
    takes the whole path after the root as the name."""
    path = "/api/handles/" + quote(name, safe="/")
    query = "?" + urlencode(params, quote_via=quote) if params else ""
    return yarl.URL(f"http://{server}{path}{query}", encoded=True)


def _handle_answer(status: int, content_type: str, raw: bytes) -> dict[str, Any]:
    """The JSON of a Handle REST answer; anything else (a proxy's error page, a
    web server's 404) is ``NotHandleRest`` saying what came instead."""

    def refuse(why: str) -> NotHandleRest:
        shown = " ".join(raw[:80].decode("utf-8", "replace").split())
        return NotHandleRest(
            f"not a Handle REST answer: HTTP {status} {content_type or 'without a type'}"
            f"{': ' + why if why else ''}{f' ({shown!r})' if shown else ''}"
        )

    try:
        body = json.loads(raw)
    except ValueError:
        raise refuse("") from None
    if not isinstance(body, dict) or not isinstance(body.get("responseCode"), int):
        raise refuse("no responseCode")
    values = body.get("values", [])
    if not isinstance(values, list) or not all(_printable(v) for v in values):
        raise refuse("values are not Handle values")
    return body


def _printable(value: Any) -> bool:
    """A value as the REST API gives it: index, type and data with format and value."""
    if not isinstance(value, dict) or not {"index", "type", "data"} <= value.keys():
        return False
    data = value["data"]
    return isinstance(data, dict) and {"format", "value"} <= data.keys()


async def _over_http(args: argparse.Namespace, server: Endpoint) -> int:
    params = [("type", t) for t in args.type] + [("index", str(i)) for i in args.index]
    url = handle_url(server, args.name, params)
    try:
        async with (
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session,
            session.get(url) as resp,
        ):
            raw = await resp.read()
            body = _handle_answer(resp.status, resp.content_type, raw)
    except (aiohttp.ClientError, TimeoutError, NotHandleRest) as exc:
        print(f"idnode resolve: {server}: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 2
    return _print(body["responseCode"], body.get("values", []), args.json)
