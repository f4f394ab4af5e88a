"""HS_PUBKEY values in the Handle REST JSON as HANDLE.NET 9 writes them (data format
``key``: RSA and DSA JWK-like objects) and as the IDIS SDK writes SM2 keys
(``{"kty": "SM2", "d": <SubjectPublicKeyInfo>}``): read from every stored form
without touching the bytes, written back in the canonical form, refused when
malformed — over real HTTP, with pyhandle, and checked against the ``openssl``
tool and numbers computed here."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, rsa
from pyhandle.handleclient import PyHandleClient

from registry.crypto import Sm2PrivateKey, Sm2PublicKey
from registry.models import HandleValue
from registry.services import Actor, Registry
from registry.values import SiteInfo, SiteServer
from resolver.http.values_json import site_json, value_from_json, value_json
from tests.conftest import ApiClient
from tests.factories import ADMIN_SK, hosted_enterprise
from tests.sm2_tools import OPENSSL, openssl_run
from tests.test_rest import ADMIN, JSON, call
from tests.trust_tools import dsa_key, rsa_key

USER = "300:0.NA/88.100"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned(number: int) -> bytes:
    return number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")


def java_signed(number: int) -> bytes:
    """``BigInteger.toByteArray``: big-endian with a sign byte where the top bit is set."""
    return number.to_bytes(number.bit_length() // 8 + 1, "big")


def field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def handle_net_rsa_record(key: rsa.RSAPublicKey) -> bytes:
    """HANDLE.NET's ``Util.getBytesFromPublicKey`` layout, written out here."""
    numbers = key.public_numbers()
    return (
        field(b"RSA_PUB_KEY")
        + b"\0\0"
        + field(java_signed(numbers.e))
        + field(java_signed(numbers.n))
    )


def handle_net_dsa_record(key: dsa.DSAPublicKey) -> bytes:
    numbers = key.public_numbers()
    params = numbers.parameter_numbers
    return (
        field(b"DSA_PUB_KEY")
        + b"\0\0"
        + b"".join(field(java_signed(n)) for n in (params.q, params.p, params.g, numbers.y))
    )


def idis_pem(key: Sm2PublicKey) -> str:
    """PEM as the IDIS SDK writes it (Java's MIME base64: 76 columns, CRLF)."""
    body = base64.b64encode(key.to_der()).decode()
    lines = [body[i : i + 76] for i in range(0, len(body), 76)]
    return "\r\n".join(["-----BEGIN PUBLIC KEY-----", *lines, "-----END PUBLIC KEY-----", ""])


def idis_forms(key: Sm2PublicKey) -> dict[str, bytes]:
    """The three ways an SM2 key sits in an HS_PUBKEY: the IDIS SDK's record with
    PEM text, the record with DER, bare PEM."""
    return {
        "pem record": field(b"SM2_PUB_KEY") + b"\0\0" + field(idis_pem(key).encode()),
        "der record": field(b"SM2_PUB_KEY") + b"\0\0" + field(key.to_der()),
        "bare pem": key.to_pem(),
    }


def openssl_spki(directory: Path, pem: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a PEM key, as the openssl tool writes it."""
    (directory / "key.pem").write_bytes(pem)
    return openssl_run(directory, "pkey", "-pubin", "-in", "key.pem", "-outform", "DER")


def pubkey(data: bytes, index: int = 300) -> HandleValue:
    return HandleValue(index, "HS_PUBKEY", data)


# --- the codec --------------------------------------------------------------------------


def test_rsa_and_dsa_keys_as_handle_net_writes_them() -> None:
    public = rsa_key().public_key()
    numbers = public.public_numbers()
    data = value_json(pubkey(handle_net_rsa_record(public)))["data"]
    assert data == {
        "format": "key",
        "value": {"kty": "RSA", "n": b64url(unsigned(numbers.n)), "e": "AQAB"},
    }
    assert list(data["value"]) == ["kty", "n", "e"]  # HANDLE.NET's order
    written = value_from_json({"index": 300, "type": "HS_PUBKEY", "data": data})
    assert written.data == handle_net_rsa_record(public)

    dsa_public = dsa_key().public_key()
    dnum = dsa_public.public_numbers()
    params = dnum.parameter_numbers
    data = value_json(pubkey(handle_net_dsa_record(dsa_public)))["data"]
    assert data["value"] == {
        "kty": "DSA",
        "y": b64url(unsigned(dnum.y)),
        "p": b64url(unsigned(params.p)),
        "q": b64url(unsigned(params.q)),
        "g": b64url(unsigned(params.g)),
    }
    assert list(data["value"]) == ["kty", "y", "p", "q", "g"]
    written = value_from_json({"index": 300, "type": "HS_PUBKEY", "data": data})
    assert written.data == handle_net_dsa_record(dsa_public)


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl tool")
def test_sm2_key_in_every_stored_form_is_one_jwk(tmp_path: Path) -> None:
    key = Sm2PrivateKey.generate().public_key()
    spki = openssl_spki(tmp_path, key.to_pem())  # the tool's DER, not ours
    expected = {"format": "key", "value": {"kty": "SM2", "d": b64url(spki)}}
    forms = idis_forms(key)
    for form, data in forms.items():
        stored = pubkey(data)
        assert value_json(stored)["data"] == expected, form
        assert stored.data == data  # reading never rewrites
    # Written back: the IDIS SDK's record with PEM text, whatever form was read.
    for shown in (expected, {"format": "KEY", "value": {"kty": "sm2", "d": b64url(spki)}}):
        written = value_from_json({"index": 301, "type": "HS_PUBKEY", "data": shown})
        assert written.data == forms["pem record"]
    # Coordinates, as some JOSE tools write an SM2 key, are read too.
    x, y = key.point[1:33], key.point[33:]
    for jwk in (
        {"kty": "SM2", "x": b64url(x), "y": b64url(y)},
        {"kty": "EC", "crv": "SM2", "x": b64url(x), "y": b64url(y)},
    ):
        written = value_from_json(
            {"index": 301, "type": "HS_PUBKEY", "data": {"format": "key", "value": jwk}}
        )
        assert written.data == forms["pem record"]


def test_round_trip_of_a_non_canonical_form_keeps_the_key_not_the_bytes() -> None:
    """Documented: ``key`` writes the canonical bytes; ``base64`` keeps them."""
    key = Sm2PrivateKey.generate().public_key()
    forms = idis_forms(key)
    for form in ("der record", "bare pem"):
        shown = value_json(pubkey(forms[form]))
        rewritten = value_from_json(shown)
        assert rewritten.data == forms["pem record"] != forms[form]
        assert value_json(rewritten)["data"] == shown["data"]  # the same key
        kept = value_from_json(
            {**shown, "data": {"format": "base64", "value": base64.b64encode(forms[form]).decode()}}
        )
        assert kept.data == forms[form]


def test_values_that_hold_no_key_fall_back_as_handle_net_does() -> None:
    group = dh.generate_parameters(2, 512).parameter_numbers()
    dh_record = (
        field(b"DH_PUB_KEY")
        + b"\0\0"
        + b"".join(field(java_signed(n)) for n in (5, group.p, group.g))
    )
    cases = {
        b"not a key": {"format": "string", "value": "not a key"},
        b"\x00\x00\x00\x0bRSA_PUB_KEY": {"format": "base64", "value": "AAAAC1JTQV9QVUJfS0VZ"},
        dh_record: {"format": "base64", "value": base64.b64encode(dh_record).decode()},
    }
    for data, shown in cases.items():
        assert value_json(pubkey(data))["data"] == shown
    # A P-256 key in PEM is a key, but none an HS_PUBKEY may hold: shown as text.
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = p256.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert value_json(pubkey(pem))["data"] == {"format": "string", "value": pem.decode()}
    # The same bytes under another type stay what they were.
    rsa_record = handle_net_rsa_record(rsa_key().public_key())
    assert value_json(HandleValue(5, "BLOB", rsa_record))["data"]["format"] == "base64"


def test_site_server_keys_as_handle_net_writes_them() -> None:
    public = rsa_key().public_key()
    server = SiteServer(1, SiteServer.pack_address("192.0.2.1"), handle_net_rsa_record(public), ())
    shown = site_json(SiteInfo(servers=(server,)))["servers"][0]["publicKey"]
    assert shown["format"] == "key" and shown["value"]["kty"] == "RSA"
    odd = SiteServer(1, SiteServer.pack_address("192.0.2.1"), b"\x01\x02", ())
    assert site_json(SiteInfo(servers=(odd,)))["servers"][0]["publicKey"] == {
        "format": "base64",
        "value": "AQI=",
    }
    # Read back in any data format: the key, its bytes, or hex.
    site = site_json(SiteInfo(servers=(server,)))
    for key_data in (
        shown,
        {"format": "base64", "value": base64.b64encode(server.public_key).decode()},
        {"format": "hex", "value": server.public_key.hex()},
    ):
        site["servers"][0]["publicKey"] = key_data
        written = value_from_json(
            {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": site}}
        )
        assert SiteInfo.from_bytes(written.data).servers[0].public_key == server.public_key


# --- over HTTP --------------------------------------------------------------------------


@pytest.fixture
async def prefix(registry: Registry, admin: Actor) -> str:
    return await hosted_enterprise(registry, admin, 1, prefix="88.100.1")


async def stored_bytes(registry: Registry, handle: str, index: int) -> bytes:
    async with registry.services.read() as conn:
        located = await registry.handles.locate(conn, registry.handles.parse(handle))
    assert located.record is not None
    return next(v.data for v in located.record.values if v.index == index)


async def test_keys_written_and_read_over_http(
    api: ApiClient, registry: Registry, prefix: str
) -> None:
    sm2 = Sm2PrivateKey.generate().public_key()
    forms = idis_forms(sm2)
    rsa_public = rsa_key().public_key()
    sm2_jwk = {"kty": "SM2", "d": b64url(sm2.to_der())}
    values = [
        {"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": sm2_jwk}},
        {
            "index": 301,
            "type": "HS_PUBKEY",
            "data": value_json(pubkey(handle_net_rsa_record(rsa_public)))["data"],
        },
        {
            "index": 302,
            "type": "HS_PUBKEY",
            "data": {"format": "base64", "value": base64.b64encode(forms["der record"]).decode()},
        },
        {"index": 303, "type": "HS_PUBKEY", "data": forms["bare pem"].decode()},
    ]
    path = f"/api/handles/{prefix}/keys"
    status, body = await call(api, "PUT", path, body={"values": values}, headers={**ADMIN, **JSON})
    assert (status, body["responseCode"]) == (201, 1), body

    assert await stored_bytes(registry, f"{prefix}/keys", 300) == forms["pem record"]
    assert await stored_bytes(registry, f"{prefix}/keys", 301) == handle_net_rsa_record(rsa_public)
    status, body = await call(api, "GET", path)
    shown = {v["index"]: v["data"] for v in body["values"]}
    for index in (300, 302, 303):
        assert shown[index] == {"format": "key", "value": sm2_jwk}
    assert shown[301]["value"]["kty"] == "RSA"
    # Serving them changed no stored byte.
    assert await stored_bytes(registry, f"{prefix}/keys", 302) == forms["der record"]
    assert await stored_bytes(registry, f"{prefix}/keys", 303) == forms["bare pem"]


BAD_JWKS: list[tuple[Any, str]] = [
    ("a string", "not a JSON object"),
    ({"n": "AQAB", "e": "AQAB"}, "no kty"),
    ({"kty": "OKP", "crv": "Ed25519", "x": "AA"}, "unsupported"),
    ({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, "P-256"),
    ({"kty": "RSA", "n": "AQAB"}, "lacks 'e'"),
    ({"kty": "DSA", "y": "AQ", "p": "AQ", "q": "AQ"}, "lacks 'g'"),
    ({"kty": "RSA", "n": "AQ+B", "e": "AQAB"}, "not base64url"),
    ({"kty": "RSA", "n": "A", "e": "AQAB"}, "not base64url"),
    ({"kty": "RSA", "n": 5, "e": "AQAB"}, "not base64url"),
    ({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "not a key"),
    ({"kty": "DSA", "y": "AQ", "p": "AQ", "q": "AQ", "g": "AQ"}, "not a key"),
    ({"kty": "SM2", "d": "AAAA"}, "SubjectPublicKeyInfo"),
    ({"kty": "SM2"}, "32-byte"),
    ({"kty": "SM2", "x": b64url(b"\x01" * 32), "y": b64url(b"\x01" * 32)}, "SM2"),
]


def off_curve_spki() -> bytes:
    """An SM2 SubjectPublicKeyInfo whose point is one off the curve."""
    der = bytearray(Sm2PrivateKey.generate().public_key().to_der())
    der[-1] ^= 1
    return bytes(der)


def other_curve_spki() -> bytes:
    """A P-256 key: the EC algorithm, but not the SM2 curve's OID."""
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def rsa_spki() -> bytes:
    return (
        rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


async def test_malformed_keys_are_refused_with_rc_202_and_write_nothing(
    api: ApiClient, prefix: str
) -> None:
    cases = [
        *BAD_JWKS,
        ({"kty": "SM2", "d": b64url(off_curve_spki())}, "curve"),
        ({"kty": "SM2", "d": b64url(other_curve_spki())}, "SubjectPublicKeyInfo"),
        ({"kty": "SM2", "d": b64url(rsa_spki())}, "SubjectPublicKeyInfo"),
    ]
    path = f"/api/handles/{prefix}/bad-key"
    good = {"index": 1, "type": "URL", "data": "https://example.org/k"}
    for jwk, words in cases:
        value = {"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": jwk}}
        status, body = await call(
            api, "PUT", path, body={"values": [good, value]}, headers={**ADMIN, **JSON}
        )
        assert (status, body["responseCode"]) == (400, 202), (jwk, body)
        assert words in body["message"] and body["message"].startswith("invalid key data"), (
            jwk,
            body,
        )
    status, body = await call(api, "GET", path)
    assert (status, body["responseCode"]) == (404, 100)  # no half-written record
    # A site whose server key is a bad JWK is refused the same way.
    site = {
        "servers": [
            {
                "address": "192.0.2.1",
                "publicKey": {"format": "key", "value": {"kty": "RSA", "n": "AQAB"}},
                "interfaces": [{"query": True, "admin": False, "protocol": "TCP", "port": 2641}],
            }
        ]
    }
    value = {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": site}}
    status, body = await call(api, "PUT", path, body=[value], headers={**ADMIN, **JSON})
    assert (status, body["responseCode"]) == (400, 202), body


async def test_raw_http_body_and_answer(api: ApiClient, prefix: str) -> None:
    """The bytes on the wire, not a client's reading of them."""
    key = Sm2PrivateKey.generate().public_key()
    d = b64url(key.to_der())
    raw = (
        '[{"index":300,"type":"HS_PUBKEY","data":{"format":"key","value":{"kty":"SM2","d":"'
        + d
        + '"}}}]'
    ).encode()
    status, body = await api.call(
        "PUT", f"/api/handles/{prefix}/raw", data=raw, token="", headers={**ADMIN, **JSON}
    )
    assert status == 201, body
    async with api.session.get(f"{api.base}/api/handles/{prefix}/raw?index=300") as resp:
        text = await resp.text()
    assert '"data":{"format":"key","value":{"kty":"SM2","d":"' + d + '"}}' in text.replace(" ", "")
    assert json.loads(text)["values"][0]["type"] == "HS_PUBKEY"


async def test_pyhandle_reads_and_writes_keys(
    api: ApiClient, registry: Registry, prefix: str
) -> None:
    warnings.simplefilter("ignore")  # pyhandle warns about plain HTTP
    rsa_public = rsa_key().public_key()
    values = [
        {"index": 1, "type": "URL", "data": "https://example.org/py"},
        {
            "index": 300,
            "type": "HS_PUBKEY",
            "data": {
                "format": "base64",
                "value": base64.b64encode(handle_net_rsa_record(rsa_public)).decode(),
            },
        },
    ]
    status, _ = await call(
        api, "PUT", f"/api/handles/{prefix}/py", body={"values": values}, headers={**ADMIN, **JSON}
    )
    assert status == 201
    reader = await asyncio.to_thread(
        PyHandleClient("rest").instantiate_for_read_access, handle_server_url=api.base
    )
    shown = await asyncio.to_thread(reader.get_value_from_handle, f"{prefix}/py", "HS_PUBKEY")
    numbers = rsa_public.public_numbers()
    assert shown == {"kty": "RSA", "n": b64url(unsigned(numbers.n)), "e": "AQAB"}

    # pyhandle sends a value's data as given: an SM2 key as the IDIS SDK's JWK.
    sm2 = Sm2PrivateKey.generate().public_key()
    jwk = {"kty": "SM2", "d": b64url(sm2.to_der())}
    writer = await asyncio.to_thread(
        PyHandleClient("rest").instantiate_with_username_and_password, api.base, USER, ADMIN_SK
    )
    await asyncio.to_thread(
        writer.modify_handle_value, f"{prefix}/py", HS_PUBKEY={"format": "key", "value": jwk}
    )
    assert await stored_bytes(registry, f"{prefix}/py", 300) == idis_forms(sm2)["pem record"]
    shown = await asyncio.to_thread(reader.get_value_from_handle, f"{prefix}/py", "HS_PUBKEY")
    assert shown == jwk
    record = await asyncio.to_thread(reader.retrieve_handle_record_json, f"{prefix}/py")
    assert [v["data"]["format"] for v in record["values"]] == ["string", "key"]
