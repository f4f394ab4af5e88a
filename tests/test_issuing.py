"""The node as an issuer of trust: its own certificate (self-rooted or imported from
the national root), its enterprises' certificates issued on approval with ``perms``
over their prefixes, re-issue and revocation — and that no private key is ever
served, sent upward or written to the audit log."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from idnode.config import Config, load
from idnode.listen import StartupError
from idnode.site import load_issuer
from registry import store
from registry.crypto.keys import private_pem
from registry.errors import Forbidden, InvalidRequest, NotFound
from registry.models import PUBLIC_READ, HandleValue
from registry.schema import audit_log, outbox
from registry.secrets import NodeKey, is_sealed_value
from registry.services import Actor, Registry
from registry.services.signing import SEALED_KEY_INDEX, SIGNER_KEY_INDEX
from registry.services.trust import NodeIssuer
from registry.trust.claims import Claims, Permission, ValueRef
from registry.trust.issue import CERT_INDEX, IssueError, Validity, certificate, jws_public_key
from registry.trust.jws import parse_jws
from registry.trust.keys import key_to_jwk
from registry.values import decode_public_key
from resolver.resolution import Resolver
from tests.factories import (
    ADMIN_AK,
    ADMIN_SK,
    application,
    hosted_enterprise,
    node_on_loopback,
    user_actor,
)
from tests.issuing_tools import (
    NODE_IDENTITY,
    issuing_registry,
    node_issuer,
    public_values,
)
from tests.test_cli import run_idnode
from tests.trust_tools import claims_of, independently_verifies, rsa_key, sm2_key

NODE_KEY = rsa_key(7)


@pytest.fixture
async def registry(database_url: str, node_key: NodeKey) -> AsyncIterator[Registry]:
    async with issuing_registry(database_url, node_key, node_issuer(NODE_KEY)) as issuing:
        yield issuing


def _at(values: Sequence[HandleValue] | None, index: int) -> HandleValue | None:
    return next((v for v in values or () if v.index == index), None)


def _cert(values: Sequence[HandleValue] | None) -> HandleValue:
    found = _at(values, CERT_INDEX)
    assert found is not None and found.type == "HS_CERT"
    return found


async def test_self_rooted_node_certificate(registry: Registry) -> None:
    values = await public_values(registry)("0.NA/88.100")
    assert values is not None
    cert = _at(values, CERT_INDEX)
    assert cert is not None and cert.type == "HS_CERT"
    claims = claims_of(cert.data)
    assert claims["sub"] == claims["iss"] == NODE_IDENTITY
    assert claims["publicKey"] == key_to_jwk(NODE_KEY.public_key())
    assert {(p["perm"], p["handle"]) for p in claims["perms"]} == {
        ("thisHandle", "0.NA/88.100"),
        ("handlesUnderThisPrefix", "0.NA/88.100"),
        ("derivedPrefixes", "0.NA/88.100"),
    }
    assert claims["nbf"] <= time.time() < claims["exp"]
    assert independently_verifies(cert.data, claims["publicKey"])
    pubkey = _at(values, SIGNER_KEY_INDEX)
    assert pubkey is not None and pubkey.type == "HS_PUBKEY"
    published = decode_public_key(pubkey.data)
    assert isinstance(published, rsa.RSAPublicKey)
    assert published.public_numbers() == NODE_KEY.public_key().public_numbers()

    # Publishing again changes nothing while the certificate is current.
    view = await registry.trust.publish_node_certificate()
    assert view.certificate == cert.data.decode()


async def test_enterprise_certificate_on_approval(registry: Registry, admin: Actor) -> None:
    _, prefix = await registry.enterprises.apply(admin, application(1))
    handle = f"0.NA/{prefix.prefix}"
    values = await public_values(registry)(handle)
    assert values is not None
    cert = _at(values, CERT_INDEX)
    assert cert is not None
    claims = claims_of(cert.data)
    assert claims["sub"] == f"401:{handle}"
    assert claims["iss"] == NODE_IDENTITY
    assert sorted(claims["perms"], key=lambda p: p["perm"]) == [
        {"handle": handle, "perm": "derivedPrefixes"},
        {"handle": handle, "perm": "handlesUnderThisPrefix"},
        {"handle": handle, "perm": "thisHandle"},
    ]
    # Signed by the node's key, checked by PyJWT.
    assert independently_verifies(cert.data, key_to_jwk(NODE_KEY.public_key()))
    # The enterprise's public key is published; its private key is never served.
    assert _at(values, SIGNER_KEY_INDEX) is not None
    assert _at(values, SEALED_KEY_INDEX) is None
    view = await registry.trust.certificate_of(await user_actor(registry, 1), prefix.prefix)
    assert view.key_held and view.claims.sub == f"401:{handle}"


async def test_private_keys_stay_sealed_and_unsent(registry: Registry, admin: Actor) -> None:
    _, prefix = await registry.enterprises.apply(admin, application(2))
    async with registry.services.read() as conn:
        stored = await store.get_identifier(conn, f"0.NA/{prefix.prefix}")
        assert stored is not None
        sealed = _at(stored.values, SEALED_KEY_INDEX)
        assert sealed is not None and is_sealed_value(sealed.data)
        assert not sealed.permissions & PUBLIC_READ
        events = [json.dumps(row.payload) for row in await conn.execute(select(outbox.c.payload))]
        audits = [json.dumps(row.detail) for row in await conn.execute(select(audit_log.c.detail))]
    for text in events + audits:
        assert "PRIVATE KEY" not in text and "IDNODE_SIGNING_KEY" not in text
    # Even the node administrator's own resolution never shows the sealed key.
    resolver = Resolver(registry)
    seen = await resolver.resolve(resolver.parse(f"0.NA/{prefix.prefix}"), caller=admin)
    assert all(v.index != SEALED_KEY_INDEX for v in seen.values)


async def test_reissue_replaces_the_certificate_and_revoke_grants_nothing(
    registry: Registry, admin: Actor
) -> None:
    _, prefix = await registry.enterprises.apply(admin, application(3))
    values_of = public_values(registry)
    first = claims_of(_cert(await values_of(f"0.NA/{prefix.prefix}")).data)
    with pytest.raises(Forbidden):
        await registry.trust.reissue(await user_actor(registry, 3), prefix.prefix)

    view = await registry.trust.reissue(admin, prefix.prefix)
    values = await values_of(f"0.NA/{prefix.prefix}")
    assert values is not None
    certs = [v for v in values if v.type == "HS_CERT"]
    assert len(certs) == 1, "the old certificate is replaced, not kept beside the new one"
    second = claims_of(certs[0].data)
    assert second["publicKey"] != first["publicKey"], "a re-issue certifies a new key"
    assert view.claims.public_key is not None and view.key_held

    revoked = await registry.trust.reissue(admin, prefix.prefix, revoke=True)
    assert revoked.claims.perms == () and not revoked.key_held
    values = await values_of(f"0.NA/{prefix.prefix}")
    assert values is not None
    assert _at(values, SIGNER_KEY_INDEX) is None
    assert claims_of(_cert(values).data)["perms"] == []


async def test_revoking_what_was_never_issued_is_not_found(
    registry: Registry, admin: Actor
) -> None:
    with pytest.raises(NotFound):
        await registry.trust.reissue(admin, "88.100.99", revoke=True)


async def test_hosted_prefix_keeps_its_certificate(registry: Registry, admin: Actor) -> None:
    prefix = await hosted_enterprise(registry, admin, 4)
    view = await registry.trust.certificate_of(admin, prefix)
    assert (
        view.claims.perms is not None
        and Permission("thisHandle", f"0.NA/{prefix}") in view.claims.perms
    )


async def test_sm2_issuer_certificates_verify_with_openssl(
    database_url: str, node_key: NodeKey, admin: Actor
) -> None:
    key = sm2_key(1)
    async with issuing_registry(database_url, node_key, node_issuer(key)) as sm2:
        actor = Actor((await sm2.accounts.login(ADMIN_AK, ADMIN_SK)).principal, "test")
        _, prefix = await sm2.enterprises.apply(actor, application(5))
        values_of = public_values(sm2)
        node_cert = _cert(await values_of("0.NA/88.100"))
        ent_cert = _cert(await values_of(f"0.NA/{prefix.prefix}"))
        node_claims = claims_of(node_cert.data)
        assert node_claims["publicKey"]["kty"] == "SM2"
        assert parse_jws(node_cert.data).alg == "SM2256"
        assert independently_verifies(node_cert.data, node_claims["publicKey"])
        assert independently_verifies(ent_cert.data, node_claims["publicKey"])
        assert claims_of(ent_cert.data)["publicKey"]["kty"] == "SM2"
        published = _at(await values_of("0.NA/88.100"), SIGNER_KEY_INDEX)
        assert published is not None and published.data.startswith(b"\x00\x00\x00\x0bSM2_PUB_KEY")
        assert decode_public_key(published.data) == key.public_key()


async def test_imported_certificate_is_published_as_given(
    database_url: str, node_key: NodeKey
) -> None:
    root_key = rsa_key(8)
    now = int(time.time())
    imported = certificate(
        subject=ValueRef.parse(NODE_IDENTITY),
        subject_key=jws_public_key(NODE_KEY),
        issuer=ValueRef("88.111.1/0.0", 301),
        issuer_key=root_key,
        perms=(Permission("derivedPrefixes", "0.NA/88.100"),),
        validity=Validity.starting(now, 30),
    )
    issuer = node_issuer(NODE_KEY, imported=imported)
    async with issuing_registry(database_url, node_key, issuer) as registry:
        cert = _at(await public_values(registry)("0.NA/88.100"), CERT_INDEX)
        assert cert is not None and cert.data == imported.encode()
        # The national root's certificate, as given.
        payload = parse_jws(cert.data).payload
        assert Claims.from_json(payload).iss == "301:88.111.1/0.0"


def test_imported_certificate_for_another_key_is_refused() -> None:
    other = certificate(
        subject=ValueRef.parse(NODE_IDENTITY),
        subject_key=jws_public_key(rsa_key(9)),
        issuer=ValueRef("88.111.1/0.0", 301),
        issuer_key=rsa_key(8),
        perms=(Permission("everything"),),
        validity=Validity.starting(int(time.time()), 30),
    )
    with pytest.raises(IssueError, match="another key"):
        node_issuer(NODE_KEY, imported=other)
    with pytest.raises(IssueError, match="not a JWS"):
        node_issuer(NODE_KEY, imported="not a certificate")
    with pytest.raises(IssueError, match="0.NA/88.100"):
        node_issuer(NODE_KEY, identity="401:88.200/x")
    with pytest.raises(IssueError, match="RS256 needs an RSA key"):
        NodeIssuer.configured(
            sm2_key(2),
            algorithm="RS256",
            identity="",
            node_prefix="88.100",
            imported=None,
            cert_days=1,
            resign_on_change=False,
            now=0,
        )


async def test_issuing_not_configured_says_so(
    database_url: str, node_key: NodeKey, admin: Actor
) -> None:
    async with issuing_registry(database_url, node_key, None) as plain:
        with pytest.raises(InvalidRequest, match="issuer_key_file"):
            await plain.trust.sign(admin, "88.100.1/x")


@pytest.mark.parametrize(
    ("content", "mode", "algorithm", "expected"),
    [
        (
            b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
            0o600,
            "RS256",
            "issuer_key_file",
        ),
        (b"", 0o600, "RS256", "issuer_key_file"),
        (None, 0o644, "RS256", "readable by others"),
        (None, 0o600, "SM2256", "SM2256 needs an SM2 key"),
    ],
)
def test_bad_issuer_key_file_is_one_line_at_start(
    tmp_path: Path, content: bytes | None, mode: int, algorithm: str, expected: str
) -> None:
    path = tmp_path / "issuer.pem"
    path.write_bytes(content if content is not None else private_pem(NODE_KEY))
    path.chmod(mode)
    config = Config(issuer_key_file=str(path), issuer_algorithm=algorithm)
    with pytest.raises(StartupError, match=expected) as caught:
        load_issuer(config)
    assert "\n" not in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value).replace("PRIVATE KEY-----", "")


def test_issuer_key_is_made_on_first_start(tmp_path: Path) -> None:
    path = tmp_path / "issuer.pem"
    made = load_issuer(Config(issuer_key_file=str(path), issuer_algorithm="SM2256"))
    assert made is not None and made.algorithm == "SM2256"
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_issuer(Config(issuer_key_file=str(path), issuer_algorithm="sm2256"))
    assert again is not None and again.key.public_key() == made.key.public_key()
    assert str(again.identity) == NODE_IDENTITY
    assert load_issuer(Config()) is None


def test_issuer_key_file_follows_the_data_dir_only_when_set() -> None:
    assert load(environ={}, overrides={"data_dir": "/srv/idnode"}).issuer_key_file == ""
    moved = load(environ={"IDNODE_ISSUER_KEY_FILE": "issuer.pem"}, overrides={"data_dir": "/srv/x"})
    assert moved.issuer_key_file == "/srv/x/issuer.pem"


async def test_a_node_started_as_issuer_publishes_its_certificate(
    database_url: str, tmp_path: Path
) -> None:
    """The composition root's path: the key made at start, the certificate published
    before the node serves, the issuer shown by the SNMS extension."""
    key_file = tmp_path / "issuer.pem"
    async with node_on_loopback(
        database_url, tmp_path, issuer_key_file=str(key_file), issuer_algorithm="SM2256"
    ) as (_, servers):
        base = f"http://127.0.0.1:{servers.http.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/api/handles/0.NA/88.100?index=400") as resp:
                body = await resp.json()
            cert = body["values"][0]
            assert cert["type"] == "HS_CERT" and cert["index"] == 400
            assert claims_of(cert["data"]["value"].encode())["sub"] == NODE_IDENTITY
            login = {"username": ADMIN_AK, "password": ADMIN_SK}
            async with session.post(f"{base}/identity/token", json=login) as resp:
                token = (await resp.json())["data"]["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{base}/snms/api/trust/issuer", headers=headers) as resp:
                issuer = (await resp.json())["data"]
    assert issuer["algorithm"] == "SM2256" and issuer["selfRooted"]
    assert issuer["certificate"]["publicKey"]["kty"] == "SM2"
    assert "PRIVATE" not in json.dumps(issuer)
    assert key_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
def test_idnode_refuses_a_bad_issuer_key_in_one_line(tmp_path: Path) -> None:
    assert run_idnode("migrate", cwd=tmp_path).returncode == 0
    (tmp_path / "issuer.pem").write_bytes(
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    (tmp_path / "issuer.pem").chmod(0o600)
    done = run_idnode("serve", cwd=tmp_path, env={"IDNODE_ISSUER_KEY_FILE": "issuer.pem"})
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("idnode: cannot start: issuer_key_file issuer.pem"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
