"""The HANDLE.NET-compatible REST API: ``/api/handles``, ``/api/prefixes``, ``/api/site``.

Handlers translate between HTTP and the resolver / the registry's Handle
operations; the JSON shapes, response codes and HTTP statuses are those of
HANDLE.NET 9, which pyhandle and other clients expect byte for byte (the
handle is echoed exactly as requested).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote

from aiohttp import web
from sqlalchemy.exc import DataError

from metrics.tally import NO_PREFIX, TALLY
from registry.errors import InvalidName, RegistryError, StorageUnavailable, Throttled
from registry.grammar import HandleName
from registry.models import HandleValue
from registry.services import Actor

from .. import codes as rc
from ..resolution import Query, RecursionBusy, Resolution, Status
from .keys import AUTH, REGISTRY, RESOLVER
from .status import http_status
from .values_json import site_json, value_from_json, value_json

log = logging.getLogger("idnode.rest")

API_ROOT = "/api/handles"
OID_ROOT = "/api/oid"
CALLBACK_PATTERN = r"[A-Za-z_$][A-Za-z0-9_$.]{0,63}"
"""A JSONP ``callback``: a JavaScript name, dotted, nothing that could run."""
_CALLBACK = re.compile(CALLBACK_PATTERN)
_TRUE = ("", "true", "yes")
MAX_LIST_PAGE = 10_000


class ApiError(Exception):
    """An answer other than success: a response code, a message, maybe the handle."""

    def __init__(self, code: int, message: str = "", handle: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.handle = handle


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    if name not in request.query:
        return default
    return request.query[name].strip().lower() in _TRUE


def _ints(request: web.Request, name: str) -> tuple[int, ...]:
    result = []
    for raw in request.query.getall(name, []):
        if not re.fullmatch(r"[0-9]{1,10}", raw.strip()) or int(raw) >= 2**31:
            raise ApiError(rc.RC_PROTOCOL_ERROR, f"invalid {name} {raw!r}")
        result.append(int(raw))
    return tuple(result)


def requested_handle(request: web.Request, root: str = API_ROOT) -> str:
    """The handle in the path, percent-decoded (``+`` stays a plus)."""
    raw = request.raw_path.split("?", 1)[0][len(root) + 1 :]
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise ApiError(
            rc.RC_INVALID_HANDLE, "handle is not valid UTF-8 after percent-decoding"
        ) from None


def encode_json(body: Any, *, pretty: bool = False) -> bytes:
    return json.dumps(body, ensure_ascii=False, indent=2 if pretty else None).encode("utf-8")


def render_encoded(request: web.Request, status: int, encoded: bytes) -> web.Response:
    """Send encoded JSON, or JSONP when a valid ``callback`` is given."""
    callback = request.query.get("callback")
    if "Authorization" in request.headers:
        callback = None  # no JSONP with credentials: a foreign page could read the answer
    if callback is None:
        return web.Response(
            body=encoded, status=status, content_type="application/json", charset="utf-8"
        )
    if not _CALLBACK.fullmatch(callback):
        error = {"responseCode": rc.RC_PROTOCOL_ERROR, "message": "invalid callback name"}
        return web.json_response(error, status=400)
    return web.Response(
        body=callback.encode() + b"(" + encoded + b");",
        status=status,
        content_type="application/javascript",
        charset="utf-8",
    )


def render(request: web.Request, status: int, body: Any) -> web.Response:
    """JSON (pretty on request), or JSONP when a valid ``callback`` is given."""
    return render_encoded(request, status, encode_json(body, pretty=flag(request, "pretty")))


def error_body(error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"responseCode": error.code}
    if error.handle is not None:
        body["handle"] = error.handle
    if error.message:
        body["message"] = error.message
    return body


def resolution_body(resolution: Resolution) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of a resolution; the handle as the client spelled it."""
    handle = resolution.name.text
    status = resolution.status
    if status is Status.FOUND:
        return 200, {
            "responseCode": rc.RC_SUCCESS,
            "handle": handle,
            "values": [value_json(v) for v in resolution.values],
        }
    if status is Status.VALUES_NOT_FOUND:
        return 200, {"responseCode": rc.RC_VALUES_NOT_FOUND, "handle": handle, "values": []}
    if status is Status.NOT_FOUND:
        return 404, {"responseCode": rc.RC_HANDLE_NOT_FOUND, "handle": handle}
    if status is Status.REFERRAL:
        code = rc.RC_PREFIX_REFERRAL if resolution.name.is_prefix_handle else rc.RC_SERVICE_REFERRAL
        return 300, {
            "responseCode": code,
            "handle": handle,
            "referralHandle": resolution.referral_handle,
            "values": [value_json(v) for v in resolution.referral],
        }
    if status is Status.UNREACHABLE:
        # A gateway's failure, not the client's: 504, whatever RC 301 maps to.
        return 504, {
            "responseCode": rc.RC_SERVER_NOT_RESP,
            "handle": handle,
            "message": "The node serving this prefix did not answer",
        }
    return 400, {
        "responseCode": rc.RC_SERVER_NOT_RESP,
        "handle": handle,
        "message": "That prefix doesn't live here",
    }


class Encoded(NamedTuple):
    """A resolution's answer, encoded once, and how it counts."""

    status: int
    body: bytes
    outcome: str
    prefix: str


def _encoder(pretty: bool) -> Callable[[Resolution], Encoded]:
    def encode(resolution: Resolution) -> Encoded:
        status, body = resolution_body(resolution)
        outcome, prefix = resolution.outcome, resolution.account_prefix
        return Encoded(status, encode_json(body, pretty=pretty), outcome, prefix)

    return encode


_ENCODERS = {pretty: _encoder(pretty) for pretty in (False, True)}


async def _caller(request: web.Request) -> Actor:
    return await request.app[AUTH].caller(request)


def api_endpoint(handler: Any) -> Any:
    """Every REST answer is JSON with a response code, whatever went wrong."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        handle: str | None = None
        try:
            for root in (API_ROOT, OID_ROOT):
                if request.path.startswith(root + "/"):
                    handle = requested_handle(request, root)
            return await handler(request)  # type: ignore[no-any-return]
        except ApiError as exc:
            if exc.handle is None:
                exc.handle = handle
            return _error(request, exc)
        except Throttled as exc:
            locked = _error(request, ApiError(rc.rc_of(exc), str(exc), handle), 429)
            locked.headers["Retry-After"] = exc.retry_after_header
            return locked
        except RegistryError as exc:
            return _error(request, ApiError(rc.rc_of(exc), str(exc), handle))
        except DataError as exc:  # validation should have caught it: say so, as a 400
            log.warning(
                "database refused a value on %s %s: %s", request.method, request.path, exc.orig
            )
            return _error(request, ApiError(rc.RC_PROTOCOL_ERROR, "invalid value", handle))
        except StorageUnavailable as exc:
            log.error("storage unavailable on %s %s: %s", request.method, request.path, exc)
            return _error(request, ApiError(rc.RC_SERVER_TOO_BUSY, "storage unavailable", handle))
        except ConnectionResetError:  # the client hung up before its body was in
            log.info("client left during %s %s", request.method, request.path)
            return _error(request, ApiError(rc.RC_PROTOCOL_ERROR, "incomplete request", handle))
        except RecursionBusy as exc:
            return _error(request, ApiError(rc.RC_SERVER_TOO_BUSY, str(exc), handle))
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return _error(request, ApiError(rc.RC_ERROR, "internal error", handle))

    return guarded


def _error(request: web.Request, error: ApiError, status: int | None = None) -> web.Response:
    status = status or http_status(error.code)
    if status == 401 and not request.secure and not request.app[AUTH].allow_plain_http:
        # HANDLE.NET: over plain HTTP credentials are ignored and a 401 becomes a 403.
        status = 403
        error.message = "credentials are accepted over HTTPS only"
    response = render(request, status, error_body(error))
    if response.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="handle"'
    return response


# --- handlers -----------------------------------------------------------------


@contextlib.contextmanager
def counted_failures(protocol: str, started: float) -> Iterator[None]:
    """A resolution that ends in an error response still counts, by its code."""
    try:
        yield
    except ApiError as exc:
        TALLY.count(protocol, rc.outcome_of(exc.code), NO_PREFIX, time.perf_counter() - started)
        raise
    except RegistryError as exc:
        outcome = rc.outcome_of(rc.rc_of(exc))
        TALLY.count(protocol, outcome, NO_PREFIX, time.perf_counter() - started)
        raise
    except Exception:
        TALLY.count(protocol, "error", NO_PREFIX, time.perf_counter() - started)
        raise


@api_endpoint
async def get_handle(request: web.Request) -> web.Response:
    started = time.perf_counter()
    with counted_failures("http", started):
        name = request.app[RESOLVER].parse(requested_handle(request))
        return await _resolve(request, name, "http", started)


@api_endpoint
async def get_oid(request: web.Request) -> web.Response:
    """An identifier named by an OID: the same answer as ``/api/handles/<oid>``."""
    started = time.perf_counter()
    with counted_failures("oid", started):
        text = requested_handle(request, OID_ROOT)
        name = request.app[RESOLVER].parse(text)
        if not name.oid:
            raise ApiError(rc.RC_INVALID_HANDLE, f"{text!r} is not an OID (dotted numeric arcs)")
        return await _resolve(request, name, "oid", started)


async def _resolve(
    request: web.Request, name: HandleName, protocol: str, started: float
) -> web.Response:
    resolver = request.app[RESOLVER]
    query = Query(indexes=_ints(request, "index"), types=tuple(request.query.getall("type", [])))
    caller = await _caller(request)
    public_only = flag(request, "publicOnly", default=caller.anonymous)
    pretty = flag(request, "pretty")
    private = False
    if public_only and not flag(request, "auth"):
        # The hot path: an answer encoded once, served from the cache.
        # Names served elsewhere are resolved there when the node allows
        # recursion (as a proxy such as hdl.handle.net does), else referred.
        answer = await resolver.answer(
            name, query, ("rest", pretty), _ENCODERS[pretty], recurse=True
        )
    else:
        caller_or_none = None if public_only else caller
        resolution = await resolver.resolve(name, query, caller_or_none, recurse=True)
        answer = _ENCODERS[pretty](resolution)
        private = caller_or_none is not None and not caller_or_none.anonymous
    response = render_encoded(request, answer.status, answer.body)
    if private:
        response.headers["Cache-Control"] = "no-store"  # this caller's view: nobody else's
    TALLY.count(protocol, answer.outcome, answer.prefix, time.perf_counter() - started)
    return response


async def _json_body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(rc.RC_PROTOCOL_ERROR, "Content-Type must be application/json")
    raw = await request.read()
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise ApiError(rc.RC_PROTOCOL_ERROR, "request body is not valid JSON") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _values_of(body: Any, handle: str) -> list[HandleValue]:
    if isinstance(body, list):
        items = body
    elif isinstance(body, Mapping) and "values" in body:
        claimed = body.get("handle")
        if claimed is not None and (
            not isinstance(claimed, str) or claimed.upper() != handle.upper()
        ):
            raise ApiError(rc.RC_PROTOCOL_ERROR, "handle in body does not match the path")
        items = body["values"]
        if not isinstance(items, list):
            raise ApiError(rc.RC_PROTOCOL_ERROR, "values must be a list")
    elif isinstance(body, Mapping):
        items = [body]
    else:
        raise ApiError(
            rc.RC_PROTOCOL_ERROR, "body must be a value, a list of values, or an object with values"
        )
    return [value_from_json(item) for item in items]


@api_endpoint
async def put_handle(request: web.Request) -> web.Response:
    handles = request.app[REGISTRY].handles
    text = requested_handle(request)
    caller = await _caller(request)
    values = _values_of(await _json_body(request), text)
    overwrite = flag(request, "overwrite", default=True)
    raw_indexes = request.query.getall("index", [])
    if not raw_indexes:
        result = await handles.create(
            caller, text, values, overwrite=overwrite, mint_suffix=flag(request, "mintNewSuffix")
        )
    else:
        if raw_indexes != ["various"]:
            wanted = set(_ints(request, "index"))
            if wanted != {v.index for v in values}:
                raise ApiError(rc.RC_PROTOCOL_ERROR, "indexes in the query and in the body differ")
        result = await handles.set_values(caller, text, values, overwrite=overwrite)
    status = http_status(rc.RC_SUCCESS, created=not result.overwritten)
    return render(request, status, {"responseCode": rc.RC_SUCCESS, "handle": result.handle})


@api_endpoint
async def delete_handle(request: web.Request) -> web.Response:
    handles = request.app[REGISTRY].handles
    text = requested_handle(request)
    caller = await _caller(request)
    indexes = _ints(request, "index")
    if indexes:
        await handles.remove_values(caller, text, indexes)
    else:
        await handles.delete(caller, text)
    return render(request, 200, {"responseCode": rc.RC_SUCCESS, "handle": text})


def _page_params(request: web.Request) -> tuple[int | None, int | None]:
    def one(name: str) -> int | None:
        raw = request.query.get(name)
        if raw is None or raw.strip().startswith("-"):
            return None
        if not re.fullmatch(r"[0-9]{1,9}", raw.strip()):
            raise ApiError(rc.RC_PROTOCOL_ERROR, f"invalid {name} {raw!r}")
        return int(raw)

    return one("page"), one("pageSize")


@api_endpoint
async def list_handles(request: web.Request) -> web.Response:
    prefix = request.query.get("prefix", "")
    if not prefix:
        raise ApiError(rc.RC_PROTOCOL_ERROR, "the prefix parameter is required")
    caller = await _caller(request)
    page, size = _page_params(request)
    if size is not None and size > MAX_LIST_PAGE:
        raise ApiError(rc.RC_PROTOCOL_ERROR, f"pageSize is at most {MAX_LIST_PAGE}")
    if page is None and size is None:
        offset, limit = 0, None
    else:
        size = 100 if size is None else size
        offset, limit = (page or 0) * size, size
    try:
        listing = await request.app[REGISTRY].handles.list_handles(
            caller, prefix, offset=offset, limit=limit
        )
    except InvalidName as exc:
        raise ApiError(rc.RC_INVALID_HANDLE, str(exc)) from None
    body: dict[str, Any] = {
        "responseCode": rc.RC_SUCCESS,
        "prefix": listing.prefix,
        "totalCount": str(listing.total),
    }
    if limit is not None:
        body["page"] = page or 0
        body["pageSize"] = limit
    body["handles"] = listing.handles if limit != 0 else []
    return render(request, 200, body)


@api_endpoint
async def list_prefixes(request: web.Request) -> web.Response:
    """Prefixes homed here (op 302): for authenticated callers, as HANDLE.NET."""
    if (await _caller(request)).anonymous:
        raise ApiError(rc.RC_AUTHENTICATION_NEEDED, "authentication required")
    prefixes = await request.app[REGISTRY].handles.homed_prefixes()
    return render(
        request, 200, {"responseCode": rc.RC_SUCCESS, "prefixes": [f"0.NA/{p}" for p in prefixes]}
    )


@api_endpoint
async def get_site(request: web.Request) -> web.Response:
    site = request.app[REGISTRY].services.site
    if site is None:
        raise ApiError(rc.RC_OPERATION_NOT_SUPPORTED, "no site information configured")
    return render(request, 200, {"responseCode": rc.RC_SUCCESS, "site": site_json(site)})


@api_endpoint
async def unknown(request: web.Request) -> web.Response:
    """Other paths and methods under ``/api/``: 405 with a JSON body, as HANDLE.NET."""
    error = ApiError(
        rc.RC_PROTOCOL_ERROR, f"Unknown HTTP API endpoint {request.method} {request.path}"
    )
    return _error(request, error, status=405)


def add_routes(app: web.Application) -> None:
    app.router.add_get(API_ROOT, list_handles)
    # [\s\S]: any character, newlines too (a malformed name gets a JSON error, not
    # aiohttp's plain-text 404).
    for path in (API_ROOT + r"/{handle:[\s\S]+}",):
        app.router.add_get(path, get_handle)
        app.router.add_post(path, get_handle)  # HANDLE.NET: POST resolves too
        app.router.add_put(path, put_handle)
        app.router.add_delete(path, delete_handle)
    app.router.add_get(OID_ROOT + r"/{oid:[\s\S]+}", get_oid)
    app.router.add_get("/api/prefixes", list_prefixes)
    app.router.add_get("/api/site", get_site)
    app.router.add_route("*", r"/api/{rest:[\s\S]*}", unknown)
