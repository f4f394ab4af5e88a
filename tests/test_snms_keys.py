"""Public keys through the SNMS data API: a value of type HS_PUBKEY written as PEM,
base64 DER or an SM2 point in hex is stored as the record IDIS and HANDLE.NET
clients read (the IDIS SDK's SM2_PUB_KEY record, HANDLE.NET's RSA and DSA
records), shown again as PEM, and usable at once: the SM2 identity so made logs
in over the native protocol. Bad keys get the SNMS error and write nothing."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from registry.crypto import Sm2PrivateKey
from registry.crypto.keys import public_pem
from registry.keytext import KeyTextError, key_text, parse_key_text
from resolver.handle import client as cl
from tests.conftest import ApiClient
from tests.native_node import Native
from tests.snms_api import enterprise, failed, ok
from tests.test_keys_json import handle_net_dsa_record, handle_net_rsa_record, idis_forms, idis_pem
from tests.trust_tools import dsa_key, rsa_key

KEY_INDEX = 2001
TEMPLATE = "keys-1"


def key_template(prefix: str) -> dict[str, Any]:
    return {
        "prefix": prefix,
        "version": TEMPLATE,
        "industryCategory": "C",
        "type": 1,
        "description": "身份模板",
        "items": [
            {
                "name": "网址",
                "idType": "URL",
                "idIndex": 2000,
                "required": True,
                "metadata": {"type": "string", "minLength": 1, "maxLength": 255},
            },
            {
                "name": "公钥",
                "idType": "HS_PUBKEY",
                "idIndex": KEY_INDEX,
                "required": True,
                "metadata": {"type": "string", "minLength": 1, "maxLength": 255},
            },
        ],
    }


def identity(handle: str, key_text_value: str) -> dict[str, Any]:
    return {
        "handle": handle,
        "templateVersion": TEMPLATE,
        "value": [
            {"index": 2000, "type": "URL", "data": {"format": "string", "value": "https://k"}},
            {
                "index": KEY_INDEX,
                "type": "HS_PUBKEY",
                "auth": "public",
                "data": {"format": "string", "value": key_text_value},
            },
        ],
    }


@pytest.fixture
async def prefix(api: ApiClient) -> str:
    prefix = await enterprise(api)
    ok(await api.call("POST", "/snms/api/v5/template", json=key_template(prefix)))
    return prefix


def sm2_texts(key: Sm2PrivateKey) -> dict[str, str]:
    public = key.public_key()
    der = public.to_der()
    pem = public.to_pem().decode()
    return {
        "PEM": pem,
        "IDIS PEM (CRLF, 76 columns)": idis_pem(public),
        "PEM on one line": "".join(pem.split("\n")).replace("KEY-----", "KEY----- ", 1),
        "base64 DER": base64.b64encode(der).decode(),
        "base64url DER": base64.urlsafe_b64encode(der).decode().rstrip("="),
        "hex point": public.point.hex(),
        "hex x||y": public.point[1:].hex().upper(),
        "hex compressed": (bytes([2 + (public.point[-1] & 1)]) + public.point[1:33]).hex(),
        "hex DER": der.hex(),
    }


async def stored(native: Native, handle: str) -> bytes:
    answer = await native.udp(cl.resolution(handle, indexes=[KEY_INDEX]))
    assert answer.header.response_code == 1, cl.error_text(answer)
    return cl.values_of(answer)[0].data


async def test_sm2_key_texts_become_the_idis_record_and_log_in(
    api: ApiClient, native: Native, prefix: str
) -> None:
    key = Sm2PrivateKey.generate()
    expected = idis_forms(key.public_key())["pem record"]
    for n, (form, text) in enumerate(sm2_texts(key).items()):
        handle = f"{prefix}/sm2-{n}"
        assert ok(await api.call("POST", "/identityv2/data", json=identity(handle, text))), form
        assert await stored(native, handle) == expected, form
        detail = ok(await api.call("GET", f"/identityv2/data/detail?handle={handle}"))
        shown = {v["index"]: v["data"] for v in detail["value"]}[KEY_INDEX]
        assert shown == {"format": "string", "value": key.public_key().to_pem().decode()}, form
    # The identity is one the native protocol accepts: IDIS login (op 2001) with the key.
    session = await native.session(cl.KeyPair(f"{prefix}/sm2-0", KEY_INDEX, key))
    try:
        login = await session.login()
        assert login.header.response_code == 1, cl.error_text(login)
    finally:
        await session.close()
    # Writing back what detail showed changes no byte (a retried create is no conflict).
    detail = ok(await api.call("GET", f"/identityv2/data/detail?handle={prefix}/sm2-3"))
    again = identity(
        f"{prefix}/sm2-3", {v["index"]: v for v in detail["value"]}[KEY_INDEX]["data"]["value"]
    )
    assert ok(await api.call("PUT", "/identityv2/data", json=again)) is True
    assert await stored(native, f"{prefix}/sm2-3") == expected


async def test_rsa_keys_become_handle_net_records(
    api: ApiClient, native: Native, prefix: str
) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    der = small.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    handle = f"{prefix}/rsa"
    text = base64.b64encode(der).decode()  # 216 characters
    assert ok(await api.call("POST", "/identityv2/data", json=identity(handle, text)))
    assert await stored(native, handle) == handle_net_rsa_record(small)
    # An RSA-2048 key fits no SNMS value (255 characters): refused, not cut.
    long = public_pem(rsa_key().public_key()).decode()
    failed(await api.call("POST", "/identityv2/data", json=identity(f"{prefix}/x", long)))
    failed(await api.call("GET", f"/identityv2/data/detail?handle={prefix}/x"))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("not a key", "neither DER nor an SM2 point"),
        ("a key?", "not PEM, base64 or hex"),
        ("04" + "11" * 64, "not on the curve"),
        ("04" + "11" * 30, "neither an SM2 point nor DER"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "SubjectPublicKeyInfo"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "one BEGIN PUBLIC KEY"),
        ("MFkw!!", "not PEM, base64 or hex"),
        ("QUJD", "neither DER nor an SM2 point"),
    ],
)
async def test_bad_keys_get_the_snms_error_and_write_nothing(
    api: ApiClient, prefix: str, text: str, words: str
) -> None:
    handle = f"{prefix}/bad"
    message = failed(await api.call("POST", "/identityv2/data", json=identity(handle, text)))
    if text:  # an empty value is refused by the template first
        assert f"HS_PUBKEY at index {KEY_INDEX}" in message and words in message, message
    failed(await api.call("GET", f"/identityv2/data/detail?handle={handle}"))


async def test_a_p256_key_and_an_off_curve_der_are_refused_in_a_batch(
    api: ApiClient, native: Native, prefix: str
) -> None:
    p256 = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    off_curve = bytearray(Sm2PrivateKey.generate().public_key().to_der())
    off_curve[-1] ^= 1
    good = Sm2PrivateKey.generate()
    batch = [
        identity(f"{prefix}/p256", base64.b64encode(p256).decode()),
        identity(f"{prefix}/off", base64.b64encode(bytes(off_curve)).decode()),
        identity(f"{prefix}/good", good.public_key().point.hex()),
    ]
    results = ok(await api.call("POST", "/identityv2/data/batchCreate", json=batch))
    assert [r["handle"] for r in results] == [f"{prefix}/p256", f"{prefix}/off", f"{prefix}/good"]
    assert "EC keys have no HS_PUBKEY record" in results[0]["msg"]
    assert "not on the curve" in results[1]["msg"]
    assert results[2]["msg"] == "success"
    assert await stored(native, f"{prefix}/good") == idis_forms(good.public_key())["pem record"]
    failed(await api.call("GET", f"/identityv2/data/detail?handle={prefix}/p256"))


def test_key_texts_of_every_kind() -> None:
    rsa_public = rsa_key().public_key()
    pkcs1 = rsa_public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    ).decode()
    assert parse_key_text(pkcs1).public_numbers() == rsa_public.public_numbers()  # type: ignore[union-attr]
    dsa_public = dsa_key().public_key()
    dsa_pem = public_pem(dsa_public).decode()
    parsed = parse_key_text(dsa_pem)
    assert handle_net_dsa_record(parsed) == handle_net_dsa_record(dsa_public)  # type: ignore[arg-type]
    # key_text shows the key of any stored form, or None.
    sm2 = Sm2PrivateKey.generate().public_key()
    for data in idis_forms(sm2).values():
        assert key_text(data) == sm2.to_pem().decode()
    assert key_text(handle_net_rsa_record(rsa_public)) == public_pem(rsa_public).decode()
    assert key_text(b"https://example.org") is None
    with pytest.raises(KeyTextError, match="Ed25519"):
        parse_key_text(public_pem(ed25519.Ed25519PrivateKey.generate().public_key()).decode())
