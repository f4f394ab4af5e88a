"""Signing records: through the SNMS extension and the REST API, one or many,
with the enterprise's key or the node's; each signature checked by an independent
verifier (PyJWT, RFC 3651 digests, a chain walk of its own) and by the node's
``verify_record``; re-signed in the writing transaction when the record changes;
bad input refused precisely, with nothing written."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from registry import store
from registry.errors import Forbidden, InvalidRequest, InvalidValue, NotFound
from registry.models import HandleValue
from registry.secrets import NodeKey
from registry.services import Actor, Registry
from registry.services.signing import MAX_SIGN_BATCH
from registry.trust import TrustRoot, verify_record
from registry.trust.issue import FIRST_SIGNATURE_INDEX, jws_public_key
from registry.trust.keys import key_to_jwk
from tests.conftest import ApiClient
from tests.factories import (
    ADMIN_SK,
    USER_PASSWORD,
    hosted_enterprise,
    record,
    run_module,
    user_actor,
)
from tests.issuing_tools import (
    independent_verdict,
    issuing_registry,
    node_issuer,
    public_values,
)
from tests.trust_tools import claims_of, rsa_key, sm2_key

NODE_KEY = rsa_key(7)
ROOT_HANDLE = "0.NA/88.100"
ROOT_JWK = key_to_jwk(NODE_KEY.public_key())
JSON = {"Content-Type": "application/json"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


NODE_IDENTITY = basic("300%3A0.NA/88.100", ADMIN_SK)


@pytest.fixture
async def registry(database_url: str, node_key: NodeKey) -> AsyncIterator[Registry]:
    async with issuing_registry(database_url, node_key, node_issuer(NODE_KEY)) as issuing:
        yield issuing


@pytest.fixture
async def prefix(registry: Registry, admin: Actor) -> str:
    """Enterprise 1's hosted prefix, with two records."""
    allocated = await hosted_enterprise(registry, admin, 1)
    for n in (1, 2):
        await registry.identifiers.create(admin, record(f"{allocated}/sn-{n}", note="批次7"))
    return allocated


async def verdicts(registry: Registry, handle: str) -> tuple[str, str]:
    """(the independent verifier's verdict, the node's own verify_record verdict)."""
    values_of = public_values(registry)
    now = time.time()
    mine = await independent_verdict(
        handle, values_of, root_handle=ROOT_HANDLE, root_jwk=ROOT_JWK, now=now
    )
    root = TrustRoot(ROOT_HANDLE, (jws_public_key(NODE_KEY),))
    report = await verify_record(handle, await values_of(handle) or (), values_of, root, now=now)
    return mine, report.verdict.code


async def stored_values(registry: Registry, handle: str) -> tuple[HandleValue, ...]:
    async with registry.services.read() as conn:
        found = await store.get_identifier(conn, handle)
    assert found is not None
    return found.values


async def test_sign_through_snms_and_verify_independently(
    registry: Registry, api: ApiClient, prefix: str
) -> None:
    handle = f"{prefix}/sn-1"
    before = await stored_values(registry, handle)
    token = await api.login("user1", USER_PASSWORD)
    status, body = await api.call(
        "POST", "/snms/api/trust/sign", json={"handle": handle}, token=token
    )
    assert status == 200 and body["status"] == 1, body
    assert body["data"]["index"] == FIRST_SIGNATURE_INDEX
    assert body["data"]["issuer"] == f"401:0.NA/{prefix}", "the enterprise's own key signs"
    assert await verdicts(registry, handle) == ("trusted", "trusted")
    after = await stored_values(registry, handle)
    # Signing adds the signature and touches nothing else: not a byte, not a timestamp.
    assert [v for v in after if v.type != "HS_SIGNATURE"] == list(before)
    signature = next(v for v in after if v.type == "HS_SIGNATURE")
    claims = claims_of(signature.data)
    signed = [d["index"] for d in claims["digests"]["digests"]]
    assert claims["digests"]["alg"] == "SHA-256"
    assert signed == sorted(v.index for v in before if v.public)
    assert claims["sub"] == handle and claims["nbf"] <= time.time() < claims["exp"]


async def test_signing_again_replaces_the_signature(
    registry: Registry, admin: Actor, prefix: str
) -> None:
    handle = f"{prefix}/sn-1"
    await registry.trust.sign(admin, handle)
    first = [v for v in await stored_values(registry, handle) if v.type == "HS_SIGNATURE"]
    await registry.trust.sign(admin, handle, signer="node")
    signatures = [v for v in await stored_values(registry, handle) if v.type == "HS_SIGNATURE"]
    assert len(signatures) == 1 and signatures[0].index == FIRST_SIGNATURE_INDEX
    assert signatures[0].data != first[0].data
    assert claims_of(signatures[0].data)["iss"] == "401:0.NA/88.100"
    assert await verdicts(registry, handle) == ("trusted", "trusted")


async def test_enterprise_users_may_not_sign_with_the_node_key(
    registry: Registry, prefix: str
) -> None:
    user = await user_actor(registry, 1)
    with pytest.raises(Forbidden, match="node administrators"):
        await registry.trust.sign(user, f"{prefix}/sn-1", signer="node")
    with pytest.raises(InvalidRequest, match="signer"):
        await registry.trust.sign(user, f"{prefix}/sn-1", signer="root")


async def test_resign_on_change_keeps_the_verdict_trusted(
    registry: Registry, api: ApiClient, admin: Actor, prefix: str
) -> None:
    handle = f"{prefix}/sn-1"
    await registry.trust.sign(admin, handle)
    old = next(v for v in await stored_values(registry, handle) if v.type == "HS_SIGNATURE")

    # An SNMS update...
    await registry.identifiers.update(admin, record(handle, url="https://example.com/changed"))
    assert await verdicts(registry, handle) == ("trusted", "trusted")
    new = next(v for v in await stored_values(registry, handle) if v.type == "HS_SIGNATURE")
    assert new.data != old.data

    # ...a Handle REST write adding a public value, and one removing it.
    status, body = await api.call(
        "PUT",
        f"/api/handles/{handle}?index=7",
        data=json.dumps([{"index": 7, "type": "EMAIL", "data": "qa@example.com"}]).encode(),
        token="",
        headers={**NODE_IDENTITY, **JSON},
    )
    assert status in (200, 201), body
    assert await verdicts(registry, handle) == ("trusted", "trusted")
    status, body = await api.call(
        "DELETE", f"/api/handles/{handle}?index=7", token="", headers=NODE_IDENTITY
    )
    assert status == 200, body
    assert await verdicts(registry, handle) == ("trusted", "trusted")


async def test_without_resign_a_change_makes_the_signature_stale(
    database_url: str, node_key: NodeKey, admin: Actor
) -> None:
    issuer = node_issuer(NODE_KEY, resign_on_change=False)
    async with issuing_registry(database_url, node_key, issuer) as plain:
        actor = Actor(admin.principal, "test")
        allocated = await hosted_enterprise(plain, actor, 1)
        handle = f"{allocated}/sn-1"
        await plain.identifiers.create(actor, record(handle))
        await plain.trust.sign(actor, handle)
        assert await verdicts(plain, handle) == ("trusted", "trusted")
        await plain.identifiers.update(actor, record(handle, url="https://example.com/tampered"))
        assert await verdicts(plain, handle) == ("digest_mismatch", "digest_mismatch")


async def test_a_restricted_change_keeps_the_signature(
    registry: Registry, admin: Actor, prefix: str
) -> None:
    """Only public values are signed: a change no anonymous resolver can see leaves
    the signature as it was (no needless re-signing)."""
    handle = f"{prefix}/sn-1"
    await registry.trust.sign(admin, handle)
    old = next(v for v in await stored_values(registry, handle) if v.type == "HS_SIGNATURE")
    await registry.handles.set_values(
        admin,
        handle,
        [HandleValue(9, "SECRET", b"internal", permissions=0x0C)],
        overwrite=True,
    )
    new = next(v for v in await stored_values(registry, handle) if v.type == "HS_SIGNATURE")
    assert new.data == old.data
    assert await verdicts(registry, handle) == ("trusted", "trusted")


async def test_batch_signing_is_per_handle(
    registry: Registry, api: ApiClient, admin: Actor, prefix: str
) -> None:
    other = await hosted_enterprise(registry, admin, 2)
    await registry.identifiers.create(admin, record(f"{other}/theirs"))
    token = await api.login("user1", USER_PASSWORD)
    names = [f"{prefix}/sn-1", f"{prefix}/missing", f"{other}/theirs", f"{prefix}/sn-2"]
    status, body = await api.call(
        "POST", "/snms/api/trust/sign", json={"handles": names}, token=token
    )
    assert status == 200 and body["status"] == 1, body
    results = {r["handle"]: r for r in body["data"]}
    assert results[f"{prefix}/sn-1"]["code"] == 1 and results[f"{prefix}/sn-2"]["code"] == 1
    assert results[f"{prefix}/missing"]["code"] == -2
    assert "not found" in results[f"{prefix}/missing"]["msg"]
    assert results[f"{other}/theirs"]["code"] == -2
    assert "没有权限" in results[f"{other}/theirs"]["msg"]
    for name in (f"{prefix}/sn-1", f"{prefix}/sn-2"):
        assert await verdicts(registry, name) == ("trusted", "trusted")
    assert not any(
        v.type == "HS_SIGNATURE" for v in await stored_values(registry, f"{other}/theirs")
    ), "a refused handle is left untouched"


async def test_too_many_handles_are_refused_whole(
    registry: Registry, api: ApiClient, prefix: str
) -> None:
    names = [f"{prefix}/sn-1"] + [f"{prefix}/x{n}" for n in range(MAX_SIGN_BATCH)]
    status, body = await api.call("POST", "/snms/api/trust/sign", json={"handles": names})
    assert status == 200 and body["status"] == -2
    assert str(MAX_SIGN_BATCH) in body["message"]
    assert not any(v.type == "HS_SIGNATURE" for v in await stored_values(registry, names[0]))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"handles": "88.100.1/x"}, "handles"),
        ({"handles": [42]}, "handles[0]"),
        ({"handles": []}, "handles"),
        ({"handle": "88.100.1/x", "signer": "root"}, "signer"),
        ({}, "handle"),
    ],
)
async def test_bad_snms_bodies_say_what_is_wrong(
    api: ApiClient, body: dict[str, Any], message: str
) -> None:
    status, answer = await api.call("POST", "/snms/api/trust/sign", json=body)
    assert status == 200 and answer["status"] == -2, answer
    assert message in answer["message"]


async def test_unknown_and_foreign_handles(registry: Registry, admin: Actor, prefix: str) -> None:
    with pytest.raises(NotFound):
        await registry.trust.sign(admin, f"{prefix}/nothing-here")
    with pytest.raises(InvalidRequest, match="not kept by this node"):
        await registry.trust.sign(admin, "88.200/elsewhere")
    with pytest.raises(InvalidValue, match="prefix record"):
        await registry.trust.sign(admin, f"0.NA/{prefix}")
    with pytest.raises(InvalidRequest):
        await registry.trust.sign(admin, "no slash at all")


async def test_rest_signs_one_and_many(registry: Registry, api: ApiClient, prefix: str) -> None:
    handle = f"{prefix}/sn-1"
    status, body = await api.call(
        "POST", f"/api/signatures/{handle}", token="", headers=NODE_IDENTITY
    )
    assert status == 200, body
    assert body == {
        "responseCode": 1,
        "handle": handle,
        "index": FIRST_SIGNATURE_INDEX,
        "issuer": f"401:0.NA/{prefix}",
    }
    assert await verdicts(registry, handle) == ("trusted", "trusted")

    many = {"handles": [f"{prefix}/sn-2", f"{prefix}/gone"], "signer": "node"}
    status, body = await api.call(
        "POST",
        "/api/signatures",
        data=json.dumps(many).encode(),
        token="",
        headers={**NODE_IDENTITY, **JSON},
    )
    assert status == 200, body
    assert body["results"][0]["responseCode"] == 1
    assert body["results"][0]["issuer"] == "401:0.NA/88.100"
    assert body["results"][1]["responseCode"] == 100  # handle not found
    assert await verdicts(registry, f"{prefix}/sn-2") == ("trusted", "trusted")


async def test_rest_errors_are_handle_response_codes(api: ApiClient, prefix: str) -> None:
    status, body = await api.call("POST", f"/api/signatures/{prefix}/sn-1", token="")
    assert status == 401 and body["responseCode"] == 402  # authentication needed
    status, body = await api.call(
        "POST", f"/api/signatures/{prefix}/nothing", token="", headers=NODE_IDENTITY
    )
    assert status == 404 and body["responseCode"] == 100 and body["handle"] == f"{prefix}/nothing"
    status, body = await api.call(
        "POST",
        "/api/signatures",
        data=b'{"handles": [1]}',
        token="",
        headers={**NODE_IDENTITY, **JSON},
    )
    assert status == 400 and "handles[0]" in body["message"]


async def test_sm2256_signatures_verify_with_openssl(
    database_url: str, node_key: NodeKey, admin: Actor
) -> None:
    key = sm2_key(3)
    async with issuing_registry(database_url, node_key, node_issuer(key)) as sm2:
        actor = Actor(admin.principal, "test")
        allocated = await hosted_enterprise(sm2, actor, 1)
        handle = f"{allocated}/sm2-1"
        await sm2.identifiers.create(actor, record(handle))
        result = await sm2.trust.sign(actor, handle)
        assert result.ok and result.issuer == f"401:0.NA/{allocated}"
        values_of = public_values(sm2)
        signature = next(v for v in await values_of(handle) or () if v.type == "HS_SIGNATURE")
        assert (
            json.loads(base64.urlsafe_b64decode(signature.data.split(b".")[0] + b"=="))["alg"]
            == "SM2256"
        )
        jwk = key_to_jwk(jws_public_key(key))
        now = time.time()
        verdict = await independent_verdict(
            handle, values_of, root_handle=ROOT_HANDLE, root_jwk=jwk, now=now
        )
        assert verdict == "trusted"  # every link checked by the openssl tool
        root = TrustRoot(ROOT_HANDLE, (jws_public_key(key),))
        report = await verify_record(handle, await values_of(handle) or (), values_of, root)
        assert report.verdict.code == "trusted"
        # Re-signed with SM2 on change, still trusted.
        await sm2.identifiers.update(actor, record(handle, url="https://example.com/sm2"))
        verdict = await independent_verdict(
            handle, values_of, root_handle=ROOT_HANDLE, root_jwk=jwk, now=now
        )
        assert verdict == "trusted"


def test_bench_signs_within_bounds(tmp_path: Path) -> None:
    """The benchmark's smoke run: a few records of each algorithm, every one verified."""
    out = tmp_path / "bench-trust-sign.json"
    done = run_module(
        "loadtest.bench_trust_sign",
        *("--records", "5", "--rounds", "50", "--seconds", "5", "--out", str(out)),
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["ok"] and [r["algorithm"] for r in figures["runs"]] == ["RS256", "SM2256"]
    assert all(r["verified"] and r["sign_ms_median"] > 0 for r in figures["runs"])


async def test_a_handle_named_twice_is_signed_once(
    registry: Registry, admin: Actor, prefix: str
) -> None:
    handle = f"{prefix}/sn-1"
    results = await registry.trust.sign_many(admin, [handle, handle, f"{prefix}/sn-2"])
    assert [r.ok for r in results] == [True, True, True]
    signatures = [v for v in await stored_values(registry, handle) if v.type == "HS_SIGNATURE"]
    assert len(signatures) == 1
    async with registry.services.read() as conn:
        events = await store.outbox_events(conn, after=0, limit=1000)
    signed_events = [
        e for e in events if e["event"] == "identifier.updated" and e["subject"] != "0.NA/88.100"
    ]
    assert sorted(e["subject"] for e in signed_events) == [handle, f"{prefix}/sn-2"]
    assert all(
        any(v["type"] == "HS_SIGNATURE" for v in e["payload"]["values"]) for e in signed_events
    ), "the top-level node is sent the signed record"
    assert await verdicts(registry, handle) == ("trusted", "trusted")
