"""The HTTP lane of the fuzzing run: every operation of the OpenAPI document the node
serves, with parameters and bodies generated from its schemas, valid and broken, as an
administrator, an identity, nobody or a forger; answers judged against the document.
"""

from __future__ import annotations

import base64
import importlib
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from resolver.http.openapi import OPENAPI_PATH

from .fuzz_lanes import Lane, mutate, pump
from .harness import DEMO_ADMIN

HTTP_CONNECTIONS = 16

_STRINGS = (
    "",
    " ",
    "0",
    "-1",
    "1.0",
    "true",
    "null",
    "88.100",
    "88.100.1",
    "0.NA/88.100",
    "88.100.1/x",
    "88.100.999/x",
    "1.2.156.86.1.3.7",
    "%",
    "%zz",
    "%00",
    "..",
    "/",
    "\u0000",
    "a\u0000b",
    "\ud7ff",
    "设备-001",
    "😀",
    "<script>",
    "'; DROP TABLE x;--",
    "2026-01-01",
    "2026-13-45 25:61:61",
    "9" * 30,
    "x" * 300,
    "HS_SITE",
    "HS_ADMIN",
    "URL",
    "string",
    "base64",
    "public",
    "restricted",
    "2000",
    "1000",
    "various",
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation: dict[str, Any]
    parameters: list[dict[str, Any]]


def operations(doc: dict[str, Any]) -> list[Operation]:
    found = []
    for path, item in doc["paths"].items():
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                parameters = shared + operation.get("parameters", [])
                found.append(Operation(method.upper(), path, operation, parameters))
    return found


class JsonInputs:
    """Values for a schema — mostly valid, sometimes the wrong type or out of range."""

    def __init__(self, rng: random.Random, doc: dict[str, Any], names: list[str]) -> None:
        self.rng = rng
        self.schemas = doc["components"]["schemas"]
        self.names = names

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def anything(self, depth: int = 0) -> Any:
        rng = self.rng
        roll = rng.randrange(8 if depth < 3 else 5)
        if roll == 0:
            return None
        if roll == 1:
            return rng.choice((True, False))
        if roll == 2:
            return rng.choice((0, -1, 2**31, 2**63, rng.randint(-(10**6), 10**6), 1e308, 0.5))
        if roll in (3, 4):
            return self.string()
        if roll == 5:
            return [self.anything(depth + 1) for _ in range(rng.randint(0, 3))]
        return {self.string(): self.anything(depth + 1) for _ in range(rng.randint(0, 3))}

    def string(self, max_length: int = 64) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            text = rng.choice(_STRINGS)
        elif roll < 0.7:
            text = rng.choice(self.names)
        else:
            text = "".join(
                chr(rng.choice((rng.randint(32, 126), rng.randint(0, 0x2FFF), rng.randint(0, 31))))
                for _ in range(rng.randint(0, 24))
            )
        return text[: max(max_length, 0)] if rng.random() < 0.9 else text

    def value(self, schema: dict[str, Any], depth: int = 0) -> Any:
        rng = self.rng
        schema = self.resolve(schema)
        if rng.random() < 0.05 or depth > 6:
            return self.anything(depth)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.value(rng.choice(schema[key]), depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return rng.choice(schema["enum"])
        kind = schema.get("type")
        if kind == "string":
            if schema.get("pattern", "").startswith("^[0-9]"):
                return rng.choice(self.names)
            return self.string(schema.get("maxLength", 64))
        if kind == "integer":
            low, high = schema.get("minimum", -(2**31)), schema.get("maximum", 2**31 - 1)
            return rng.choice((low, high, rng.randint(low, high), rng.randint(0, 5)))
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "null":
            return None
        if kind == "array":
            count = rng.randint(schema.get("minItems", 0), min(schema.get("maxItems", 4), 4))
            return [self.value(schema.get("items", {}), depth + 1) for _ in range(count)]
        if kind == "object":
            properties = schema.get("properties", {})
            required = set(schema.get("required", ()))
            result = {
                name: self.value(sub, depth + 1)
                for name, sub in properties.items()
                if name in required or rng.random() < 0.5
            }
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for _ in range(rng.randint(0, 3)):
                    result[self.string(16)] = self.value(extra, depth + 1)
            return result
        return self.anything(depth)


def _parameter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _login_is_safe(body: Any) -> bool:
    """Never guess the administrator's password: the lockout would lock it out."""
    text = json.dumps(body, ensure_ascii=False).lower()
    return DEMO_ADMIN[0] not in text


@dataclass
class HttpRequest:
    operation: Operation
    url: URL
    headers: dict[str, str]
    body: bytes | aiohttp.FormData | None
    described: str


class HttpInputs:
    def __init__(self, rng: random.Random, doc: dict[str, Any], names: list[str], base: str):
        self.rng = rng
        self.ops = operations(doc)
        self.json = JsonInputs(rng, doc, names)
        self.names = names
        self.base = base
        self.token = ""
        basic = base64.b64encode(f"300%3A0.NA/88.100:{DEMO_ADMIN[1]}".encode()).decode()
        self.basic = f"Basic {basic}"

    def path_value(self, name: str) -> str:
        rng = self.rng
        if name in ("handle", "oid"):
            text = rng.choice(self.names) if rng.random() < 0.7 else self.json.string()
            text = text.replace("\n", "") or "0"
            return text if text[0].isdigit() else "1" + text
        if name == "prefix":
            return rng.choice(("88.100", "88.100.1", "88.100.2", "0.NA/88.100", "x", "%"))
        if name == "rest":
            return "x-" + "".join(rng.choice("abc-._~09") for _ in range(rng.randint(0, 12)))
        return str(rng.choice((1, 2, 0, -1, 2**31, 99999)))

    def auth(self) -> dict[str, str]:
        roll = self.rng.random()
        if roll < 0.5:
            return {"Authorization": f"Bearer {self.token}"}
        if roll < 0.65:
            return {"Authorization": self.basic}
        if roll < 0.9:
            return {}
        forged = self.rng.choice(
            (
                f"Bearer {self.token[:-4]}AAAA",
                "Bearer " + self.json.string(),
                "Basic " + base64.b64encode(f"{self.json.string()}:x".encode()).decode(),
                "Basic %%%",
                "Digest x",
            )
        )
        # No control characters: the client refuses to send them (header injection).
        return {"Authorization": re.sub(r"[\x00-\x1f\x7f]", "", forged)}

    def next(self) -> HttpRequest:
        rng = self.rng
        op = rng.choice(self.ops)
        path = op.path
        query: list[tuple[str, str]] = []
        for parameter in op.parameters:
            name, where, schema = parameter["name"], parameter["in"], parameter["schema"]
            if where == "path":
                path = path.replace("{" + name + "}", quote(self.path_value(name), safe=""))
            elif where == "query" and (parameter.get("required") or rng.random() < 0.6):
                value = self.json.value(schema)
                if name == "conditions" and isinstance(value, dict):
                    query += [(str(k), _parameter_text(v)) for k, v in value.items()]
                elif isinstance(value, list):
                    query += [(name, _parameter_text(v)) for v in value]
                else:
                    query.append((name, _parameter_text(value)))
        if rng.random() < 0.05:
            query.append((self.json.string(16), self.json.string(32)))
        headers = self.auth()
        body: bytes | aiohttp.FormData | None = None
        described = ""
        content = op.operation.get("requestBody", {}).get("content", {})
        if "application/json" in content and rng.random() < 0.9:
            roll = rng.random()
            if roll < 0.8:
                document = self.json.value(content["application/json"]["schema"])
                if op.path.startswith("/identity/token") and not _login_is_safe(document):
                    document = {"username": "nobody", "password": "x"}
                raw = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
            elif roll < 0.9:
                raw = mutate(rng, json.dumps(self.json.anything()).encode(), [])
            else:
                raw = rng.randbytes(rng.randint(0, 64))
            body = raw
            headers["Content-Type"] = rng.choice(
                ("application/json",) * 8 + ("text/plain", "application/json; charset=latin-1")
            )
            described = raw[:300].decode("utf-8", "replace")
        elif "multipart/form-data" in content:
            form = aiohttp.FormData()
            magic = rng.choice((b"\x89PNG\r\n\x1a\n", b"%PDF-", b"GIF89a", b"", b"BM"))
            form.add_field(
                rng.choice(("file", "file", "other")),
                magic + rng.randbytes(rng.randint(0, 2000)),
                filename=re.sub(r"[\x00-\x1f\x7f]", "", self.json.string(20)) or "f",
                content_type="application/octet-stream",
            )
            body = form
            described = "multipart"
        pairs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
        url = URL(f"{self.base}{path}" + (f"?{pairs}" if pairs else ""), encoded=True)
        return HttpRequest(op, url, headers, body, described)


class Conformance:
    """The documented statuses, content types and (with jsonschema) body schemas."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        try:  # a test dependency: without it, statuses and content types are still checked
            jsonschema = importlib.import_module("jsonschema")
        except ImportError:
            self.validator: Callable[[dict[str, Any]], Any] | None = None
        else:
            self.validator = jsonschema.Draft202012Validator
        self._cache: dict[tuple[str, str, str, str], Any] = {}

    def validate(self, op: Operation, status: int, content_type: str, body: bytes) -> str | None:
        """What is wrong with the answer, or None."""
        responses = op.operation["responses"]
        documented = responses.get(str(status))
        if documented is None:
            return f"undocumented status {status} (documented: {', '.join(responses)})"
        media = documented.get("content", {})
        if not media:
            return None
        if content_type not in media:
            return f"undocumented content type {content_type!r} for {status}"
        if "json" not in content_type or self.validator is None:
            return None
        key = (op.method, op.path, str(status), content_type)
        validator = self._cache.get(key)
        if validator is None:
            schema = {**media[content_type]["schema"], "components": self.doc["components"]}
            validator = self._cache[key] = self.validator(schema)
        try:
            parsed = json.loads(body)
        except ValueError:
            return "body is not JSON"
        error = next(iter(validator.iter_errors(parsed)), None)
        return None if error is None else f"body not as documented: {error.message[:300]}"


async def run_http(
    lane: Lane, base: str, rng: random.Random, names: list[str], deadline: float
) -> None:
    connector = aiohttp.TCPConnector(limit=HTTP_CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(f"{base}{OPENAPI_PATH}") as resp:
            doc = await resp.json()  # the document the node under test serves
        inputs = HttpInputs(rng, doc, names, base)
        conformance = Conformance(doc)
        if conformance.validator is None:
            lane.outcomes["bodies not validated (no jsonschema)"] += 1
        login = {"username": DEMO_ADMIN[0], "password": DEMO_ADMIN[1]}
        async with session.post(f"{base}/identity/token", json=login) as resp:
            inputs.token = str((await resp.json())["data"]["token"])

        async def one(_: bytes) -> None:
            request = inputs.next()
            shown = f"{request.operation.method} {request.url} {request.described}"
            sent = time.monotonic()
            try:
                async with session.request(
                    request.operation.method,
                    request.url,
                    headers=request.headers,
                    data=request.body,
                    allow_redirects=False,
                ) as resp:
                    body = await resp.read()
                    status, content_type = resp.status, resp.content_type
            except (aiohttp.ClientError, TimeoutError) as exc:
                lane.fail("no answer (HTTP)", shown, repr(exc))
                return
            lane.took(time.monotonic() - sent)
            lane.outcomes[str(status)] += 1
            if status >= 500:
                lane.fail(f"server error {status}", shown, body[:500].decode("utf-8", "replace"))
                return
            problem = conformance.validate(request.operation, status, content_type, body)
            if problem is not None:
                lane.fail(problem, shown, body[:500].decode("utf-8", "replace"))

        await pump(lane, lambda: b"", one, deadline, window=HTTP_CONNECTIONS)
