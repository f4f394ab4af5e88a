"""Handle values in the JSON form of the HANDLE.NET REST API, both ways.

Output picks the ``data`` format by type — ``admin`` for HS_ADMIN, ``vlist``
for HS_VLIST, ``site`` for HS_SITE, ``key`` for HS_PUBKEY — and otherwise
``string`` for text, ``base64`` for anything that looks binary (also a value
that does not decode as its type promises, as HANDLE.NET falls back). Input
accepts a bare string or ``{"format", "value"}`` with ``string``, ``base64``,
``hex``, ``admin``, ``vlist``, ``site`` or ``key``, and the lenient spellings
real clients send.

Keys (``key``) are JWK-like objects as HANDLE.NET 9 writes them: ``{"kty":
"RSA", "n", "e"}`` and ``{"kty": "DSA", "y", "p", "q", "g"}``, unsigned
big-endian numbers in base64url without padding; SM2 as the IDIS SDK writes it,
``{"kty": "SM2", "d": <base64url DER SubjectPublicKeyInfo>}`` (the public key in
``d``; ``x``/``y`` coordinates are read too). Output decodes whatever form the
HS_PUBKEY is stored in (HANDLE.NET's binary record, IDIS's ``SM2_PUB_KEY``
record with PEM or DER, bare PEM) and never rewrites the stored bytes. Input
writes the canonical form: HANDLE.NET's binary record for RSA and DSA, the IDIS
SDK's ``SM2_PUB_KEY`` record with PEM text for SM2. So a value stored in another
form (an SM2 key as DER or bare PEM, say) that a client reads as ``key`` and
writes back as ``key`` comes back as the same key in the canonical bytes — a
``HS_SIGNATURE`` digest over the old bytes no longer matches; a client that
must keep the bytes sends them as ``base64``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from registry.errors import InvalidValue
from registry.models import DEFAULT_TTL, PERM_PUBLIC, TTL_ABSOLUTE, TTL_RELATIVE, HandleValue
from registry.trust.keys import KeyFormatError, key_from_jwk, key_to_jwk
from registry.values import (
    HS_ADMIN,
    HS_PUBKEY,
    HS_VLIST,
    PROTOCOL_NAMES,
    SITE_TYPES,
    AdminRef,
    Interface,
    SiteInfo,
    SiteServer,
    ValueFormatError,
    ValueRef,
    decode_public_key,
    decode_vlist,
    encode_public_key,
    encode_vlist,
)

_PROTOCOLS = {name: code for code, name in PROTOCOL_NAMES.items()}
# Text that "looks binary": C0 controls other than tab, LF, CR, and DEL.
_BINARY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@functools.lru_cache(maxsize=8192)
def iso(seconds: int) -> str:
    """ISO-8601 UTC; memoized, since a record's values mostly share one timestamp."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidValue(f"not an ISO-8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


# --- output -------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _key_jwk(data: bytes) -> tuple[tuple[str, str], ...]:
    """The JWK of HS_PUBKEY data, memoized by its exact bytes (a record's keys are
    read far more often than written; decoding an RSA key costs more than the rest
    of the value). ValueFormatError when the bytes hold no key we can read."""
    return tuple(key_to_jwk(decode_public_key(data)).items())


def key_json(data: bytes) -> dict[str, Any] | None:
    """``{"format": "key", "value": <JWK>}`` for bytes holding a public key, None if
    they do not (the caller shows them as string or base64, as HANDLE.NET does)."""
    try:
        return {"format": "key", "value": dict(_key_jwk(bytes(data)))}
    except ValueFormatError:
        return None


def _binary_json(data: bytes) -> dict[str, Any]:
    return {"format": "base64", "value": base64.b64encode(data).decode()}


def admin_permissions_text(bits: int) -> str:
    return format(bits & 0x0FFF, "012b")


def site_json(site: SiteInfo) -> dict[str, Any]:
    result: dict[str, Any] = {
        "version": site.data_format_version,
        "protocolVersion": f"{site.protocol_version[0]}.{site.protocol_version[1]}",
        "serialNumber": site.serial,
        "primarySite": site.primary,
        "multiPrimary": site.multi_primary,
        "attributes": [{"name": n, "value": v} for n, v in site.attributes],
        "servers": [],
    }
    if site.hash_option != 2:
        result["hashOption"] = site.hash_option
    for server in site.servers:
        entry: dict[str, Any] = {
            "serverId": server.server_id,
            "address": server.address_text,
            "interfaces": [
                {
                    "query": bool(i.type & 2),
                    "admin": bool(i.type & 1),
                    "protocol": PROTOCOL_NAMES.get(i.protocol, str(i.protocol)),
                    "port": i.port,
                }
                for i in server.interfaces
            ],
        }
        if server.public_key:
            # As HANDLE.NET writes a site: the key as a JWK, raw bytes if it is none.
            entry["publicKey"] = key_json(server.public_key) or _binary_json(server.public_key)
        result["servers"].append(entry)
    return result


def _data_json(value: HandleValue) -> dict[str, Any]:
    kind = value.type.upper()
    try:
        if kind == HS_ADMIN:
            ref = AdminRef.from_bytes(value.data)
            return {
                "format": "admin",
                "value": {
                    "handle": ref.handle,
                    "index": ref.index,
                    "permissions": admin_permissions_text(ref.permissions),
                },
            }
        if kind == HS_VLIST:
            return {
                "format": "vlist",
                "value": [{"handle": m.handle, "index": m.index} for m in decode_vlist(value.data)],
            }
        if kind in SITE_TYPES:
            return {"format": "site", "value": site_json(SiteInfo.from_bytes(value.data))}
        if kind == HS_PUBKEY and (key := key_json(value.data)) is not None:
            return key
    except ValueFormatError:
        pass  # not what its type promises: show the raw bytes instead
    try:
        text = value.data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not _BINARY.search(text):
        return {"format": "string", "value": text}
    return _binary_json(value.data)


def value_json(value: HandleValue) -> dict[str, Any]:
    result: dict[str, Any] = {"index": value.index, "type": value.type, "data": _data_json(value)}
    result["ttl"] = iso(value.ttl) if value.ttl_type == TTL_ABSOLUTE else value.ttl
    if value.timestamp:
        result["timestamp"] = iso(value.timestamp)
    if value.permissions != PERM_PUBLIC:
        result["permissions"] = format(value.permissions, "04b")
    if value.references:
        result["references"] = [{"handle": h, "index": i} for h, i in value.references]
    return result


# --- input --------------------------------------------------------------------


def _int(raw: Any, what: str) -> int:
    if isinstance(raw, bool):
        raise InvalidValue(f"{what} must be an integer")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,10}", raw.strip()):
        return int(raw.strip())
    raise InvalidValue(f"{what} must be an integer, got {raw!r}")


def _bits(raw: Any, width: int, what: str) -> int:
    """A permission mask: ``"0110"`` (right-aligned), ``"*"``, an integer, a bool,
    or a list of truthy values."""
    full = (1 << width) - 1
    if isinstance(raw, bool):
        return full if raw else 0
    if isinstance(raw, int):
        if not 0 <= raw <= full:
            raise InvalidValue(f"{what} out of range")
        return raw
    if isinstance(raw, list):
        if len(raw) > width:
            raise InvalidValue(f"{what} has more than {width} entries")
        return int("".join("1" if bit else "0" for bit in raw) or "0", 2)
    if isinstance(raw, str):
        if raw == "*":
            return full
        if re.fullmatch(f"[01]{{1,{width}}}", raw):
            return int(raw, 2)
    raise InvalidValue(f"{what} must be a {width}-character string of 0 and 1")


def _admin(raw: Any) -> bytes:
    if not isinstance(raw, Mapping):
        raise InvalidValue("admin data must be an object with handle, index, permissions")
    handle = raw.get("handle")
    if not isinstance(handle, str) or not handle:
        raise InvalidValue("admin data needs a handle")
    index = _int(raw.get("index", 0), "admin index")
    if not 0 <= index < 2**31:
        raise InvalidValue("admin index out of range")
    perms = _bits(raw.get("permissions", "*"), 12, "admin permissions")
    return AdminRef(handle, index, perms).to_bytes()


def _handle_indexes(raw: Any, *, whole: str, member: str, index: str) -> list[tuple[str, int]]:
    """``raw`` read as a list of ``{handle, index}`` (index 0 when left out); what
    is wrong is said of ``whole`` (the list), with ``member`` (an entry without a
    handle), or of ``index``."""
    if not isinstance(raw, list):
        raise InvalidValue(f"{whole} must be a list of {{handle, index}}")
    pairs = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("handle"), str):
            raise InvalidValue(member)
        at = _int(item.get("index", 0), index)
        if not 0 <= at < 2**31:
            raise InvalidValue(f"{index} out of range")
        pairs.append((str(item["handle"]), at))
    return pairs


def _vlist(raw: Any) -> bytes:
    pairs = _handle_indexes(
        raw, whole="vlist data", member="vlist members need a handle", index="vlist index"
    )
    return encode_vlist([ValueRef(handle, index) for handle, index in pairs])


def _site(raw: Any) -> bytes:
    if not isinstance(raw, Mapping):
        raise InvalidValue("site data must be an object")
    try:
        major, minor = (int(p) for p in str(raw.get("protocolVersion", "2.10")).split("."))
        servers = []
        for server in raw.get("servers", []):
            interfaces = tuple(
                Interface(
                    (2 if i.get("query") else 0) | (1 if i.get("admin") else 0),
                    _PROTOCOLS[str(i.get("protocol", "TCP")).upper()],
                    int(i["port"]),
                )
                for i in server.get("interfaces", [])
            )
            # Any data format, "key" and "base64" as HANDLE.NET writes them.
            key = server.get("publicKey")
            key_bytes = b"" if key is None else _data(key)
            servers.append(
                SiteServer(
                    int(server.get("serverId", 1)),
                    SiteServer.pack_address(str(server["address"])),
                    key_bytes,
                    interfaces,
                )
            )
        site = SiteInfo(
            servers=tuple(servers),
            serial=int(raw.get("serialNumber", 1)),
            protocol_version=(major, minor),
            primary=bool(raw.get("primarySite", True)),
            multi_primary=bool(raw.get("multiPrimary", False)),
            hash_option=int(raw.get("hashOption", 2)),
            attributes=tuple((str(a["name"]), str(a["value"])) for a in raw.get("attributes", [])),
            data_format_version=int(raw.get("version", 1)),
        )
        return site.to_bytes()
    except (
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        binascii.Error,
        struct.error,
        OverflowError,
    ) as exc:  # ValueError covers bad addresses; OverflowError, int(Infinity)
        raise InvalidValue(f"invalid site data: {exc}") from None


def _key(raw: Any) -> bytes:
    """HS_PUBKEY data from a JWK: HANDLE.NET's binary record for RSA and DSA, the
    IDIS SDK's ``SM2_PUB_KEY`` record for SM2 (``d`` = SubjectPublicKeyInfo, or
    ``x``/``y``; also ``{"kty": "EC", "crv": "SM2"}`` as generic JOSE tools write
    it). Every number, point and curve is checked before anything is written."""
    if isinstance(raw, Mapping) and str(raw.get("kty", "")).upper() == "EC":
        if str(raw.get("crv", "")).upper() != "SM2":
            raise InvalidValue(
                f"invalid key data: EC keys on curve {raw.get('crv')!r} have no HS_PUBKEY "
                "record (RSA, DSA and SM2 keys have)"
            )
        raw = {"kty": "SM2", "x": raw.get("x", ""), "y": raw.get("y", "")}
    try:
        key = key_from_jwk(dict(raw) if isinstance(raw, Mapping) else raw)
    except KeyFormatError as exc:
        raise InvalidValue(f"invalid key data: {exc}") from None
    return encode_public_key(key)


def _data(raw: Any) -> bytes:
    if isinstance(raw, str):
        return raw.encode("utf-8")
    if not isinstance(raw, Mapping):
        raise InvalidValue("data must be a string or {format, value}")
    fmt = str(raw.get("format", "string")).lower()
    value = raw.get("value")
    if fmt == "string":
        if not isinstance(value, str):
            raise InvalidValue("string data must be a string")
        return value.encode("utf-8")
    if fmt == "base64":
        try:
            return base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidValue("invalid base64 data") from None
    if fmt == "hex":
        try:
            return bytes.fromhex(str(value))
        except ValueError:
            raise InvalidValue("invalid hex data") from None
    if fmt == "admin":
        return _admin(value)
    if fmt == "vlist":
        return _vlist(value)
    if fmt == "site":
        return _site(value)
    if fmt == "key":
        return _key(value)
    raise InvalidValue(f"unknown data format {fmt!r}")


def value_from_json(raw: Any) -> HandleValue:
    if not isinstance(raw, Mapping):
        raise InvalidValue("each value must be an object")
    if "index" not in raw or "type" not in raw or "data" not in raw:
        raise InvalidValue("a value needs index, type and data")
    index = _int(raw["index"], "index")
    value_type = raw["type"]
    if not isinstance(value_type, str) or not value_type:
        raise InvalidValue("type must be a non-empty string")
    ttl_raw = raw.get("ttl", DEFAULT_TTL)
    if isinstance(ttl_raw, str) and not re.fullmatch(r"[0-9]{1,10}", ttl_raw):
        ttl_type, ttl = TTL_ABSOLUTE, parse_iso(ttl_raw)
    else:
        ttl_type, ttl = TTL_RELATIVE, _int(ttl_raw, "ttl")
    if not 0 <= ttl < 2**32:
        raise InvalidValue("ttl out of range")
    permissions = _bits(raw.get("permissions", "1110"), 4, "permissions")
    references = _handle_indexes(
        raw.get("references") or [],
        whole="references",
        member="references need a handle and an index",
        index="reference index",
    )
    return HandleValue(
        index=index,
        type=value_type,
        data=_data(raw["data"]),
        ttl_type=ttl_type,
        ttl=ttl,
        permissions=permissions,
        references=tuple(references),
    )
