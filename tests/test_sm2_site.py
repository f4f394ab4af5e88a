"""The node's optional SM2 site key (``site_sm2_key_file``): made at start (mode
0600), published beside the RSA server key as the HS_PUBKEY at 302:0.NA/<node
prefix> in the IDIS SDK's SM2_PUB_KEY record — resolved here over the native
protocol and the REST API — and, when ``issuer_key_file`` names the same file, the
key the node signs its certificate with: that signature is checked by the openssl
tool against the key as published."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest

from idnode.config import Config, ConfigError, load
from idnode.listen import StartupError
from idnode.site import load_site_sm2_key, site_sm2_pubkey
from registry.crypto import Sm2PrivateKey
from registry.crypto.keys import private_pem
from registry.records import SITE_SM2_KEY_INDEX
from registry.services import Registry
from registry.values import SiteInfo
from resolver.handle import client as cl
from resolver.handle import codec as c
from tests.conftest import ApiClient
from tests.factories import NODE_PREFIX, node_on_loopback
from tests.sm2_tools import OPENSSL, openssl_run, openssl_verifies
from tests.test_keys_json import b64url, idis_forms
from tests.trust_tools import rsa_key

NODE_RECORD = f"0.NA/{NODE_PREFIX}"

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl tool")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def test_the_site_key_is_published_and_signs_the_node_certificate(
    database_url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "sm2-site.pem"
    async with node_on_loopback(
        database_url,
        tmp_path,
        site_sm2_key_file=str(key_file),
        issuer_key_file=str(key_file),  # one SM2 key for both roles
        issuer_algorithm="SM2256",
    ) as (_, servers):
        # The openssl tool reads the key file the node made, and says its public half.
        tool_spki = openssl_run(
            tmp_path, "pkey", "-in", str(key_file), "-pubout", "-outform", "DER"
        )
        published = idis_forms(Sm2PrivateKey.load(key_file.read_bytes()).public_key())
        assert key_file.stat().st_mode & 0o777 == 0o600

        # Native: the HS_PUBKEY at 302, as the IDIS SDK writes it; the HS_SITE keeps RSA.
        answer = await cl.udp_call(
            "127.0.0.1", servers.handle.port, cl.resolution(NODE_RECORD, types=["HS_PUBKEY"])
        )
        assert answer.header.response_code == 1, cl.error_text(answer)
        by_index = {v.index: v for v in cl.values_of(answer)}
        assert by_index[SITE_SM2_KEY_INDEX].data == published["pem record"]
        assert by_index[SITE_SM2_KEY_INDEX].permissions & 0x2  # public read
        site_answer = await cl.udp_call(
            "127.0.0.1", servers.handle.port, cl.resolution(NODE_RECORD, indexes=[1])
        )
        site = SiteInfo.from_bytes(cl.values_of(site_answer)[0].data)
        assert site.servers[0].public_key.startswith(b"\x00\x00\x00\x0bRSA_PUB_KEY")

        # REST: the same key as the IDIS SDK's JWK.
        base = f"http://127.0.0.1:{servers.http.port}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/api/handles/{NODE_RECORD}?index=302&index=400") as resp,
        ):
            body = await resp.json()
    values = {v["index"]: v for v in body["values"]}
    jwk = values[SITE_SM2_KEY_INDEX]["data"]
    assert jwk == {"format": "key", "value": {"kty": "SM2", "d": b64url(tool_spki)}}

    # The node's certificate (HS_CERT at 400, SM2256) verifies, by openssl, under the
    # key read back from the REST answer — the site key signed it.
    certificate = values[400]["data"]["value"]
    header, payload, signature = certificate.split(".")
    assert json.loads(b64url_decode(header)) == {"alg": "SM2256"}
    (tmp_path / "published.der").write_bytes(b64url_decode(jwk["value"]["d"]))
    public_pem = openssl_run(
        tmp_path, "pkey", "-pubin", "-inform", "DER", "-in", "published.der", "-outform", "PEM"
    )
    signed = f"{header}.{payload}".encode()
    assert openssl_verifies(
        tmp_path, public_pem, b64url_decode(signature), signed, "1234567812345678"
    )
    assert not openssl_verifies(
        tmp_path, public_pem, b64url_decode(signature), signed + b".", "1234567812345678"
    )


async def test_published_only_when_set(api: ApiClient, registry: Registry, tmp_path: Path) -> None:
    path = f"/api/handles/{NODE_RECORD}"
    # (Another query than the one after: each answer is cached as it was.)
    _, body = await api.call("GET", f"{path}?type=HS_PUBKEY", token="")
    assert SITE_SM2_KEY_INDEX not in {v["index"] for v in body.get("values", [])}
    config = Config(site_sm2_key_file=str(tmp_path / "site.pem"))
    registry.services.site_sm2_key = site_sm2_pubkey(config)
    _, body = await api.call("GET", path, token="")
    shown = {v["index"]: v for v in body["values"]}[SITE_SM2_KEY_INDEX]
    assert shown["type"] == "HS_PUBKEY" and shown["data"]["value"]["kty"] == "SM2"
    # The same file gives the same key on the next start (another process, say).
    assert site_sm2_pubkey(config) == registry.services.site_sm2_key
    assert site_sm2_pubkey(Config()) == b""


def test_a_key_file_that_is_not_sm2_or_is_open_is_refused(tmp_path: Path) -> None:
    rsa_file = tmp_path / "rsa.pem"
    rsa_file.write_bytes(private_pem(rsa_key()))
    rsa_file.chmod(0o600)
    with pytest.raises(StartupError, match="holds a RSA key, not an SM2 key"):
        load_site_sm2_key(Config(site_sm2_key_file=str(rsa_file)))
    open_file = tmp_path / "open.pem"
    open_file.write_bytes(private_pem(Sm2PrivateKey.generate()))
    open_file.chmod(0o644)
    with pytest.raises(StartupError, match="readable by others"):
        load_site_sm2_key(Config(site_sm2_key_file=str(open_file)))
    broken = tmp_path / "broken.pem"
    broken.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    broken.chmod(0o600)
    with pytest.raises(StartupError, match="site_sm2_key_file") as refused:
        load_site_sm2_key(Config(site_sm2_key_file=str(broken)))
    assert "\n" not in str(refused.value)


def test_settings_of_the_site_key() -> None:
    assert load(environ={}, overrides={"data_dir": "/srv/x"}).site_sm2_key_file == ""
    moved = load(environ={"IDNODE_SITE_SM2_KEY_FILE": "sm2.pem"}, overrides={"data_dir": "/srv/x"})
    assert moved.site_sm2_key_file == "/srv/x/sm2.pem"
    with pytest.raises(ConfigError, match="issuer_algorithm must be SM2256"):
        Config(site_sm2_key_file="k.pem", issuer_key_file="./k.pem").validate()
    Config(site_sm2_key_file="k.pem", issuer_key_file="k.pem", issuer_algorithm="sm2256").validate()
    Config(site_sm2_key_file="sm2.pem", issuer_key_file="rsa.pem").validate()  # two keys


async def test_the_node_machine_keys_are_not_administrators(
    database_url: str, tmp_path: Path
) -> None:
    """The keys the node publishes for itself on ``0.NA/<node prefix>`` — the site
    key (302, synthesized, no identity at all) and the issuer's key (401) — prove
    the node's machine, not its administrator (``300:``): whoever holds the key
    files logs in, yet homing is refused."""
    key_file = tmp_path / "sm2-site.pem"
    async with node_on_loopback(
        database_url,
        tmp_path,
        site_sm2_key_file=str(key_file),
        issuer_key_file=str(key_file),
        issuer_algorithm="SM2256",
    ) as (_, servers):
        machine_key = Sm2PrivateKey.load(key_file.read_bytes())
        outcomes = {}
        for index in (SITE_SM2_KEY_INDEX, 401):
            credentials = cl.KeyPair(NODE_RECORD, index, machine_key)
            session = await cl.TcpSession.open("127.0.0.1", servers.handle.port, credentials)
            try:
                login = await session.login()
                home = c.HandleOnly(f"0.NA/{NODE_PREFIX}.99".encode()).to_bytes()
                refused = await session.call(cl.request(c.OC_HOME_NA, home))
                outcomes[index] = (login.header.response_code, refused.header.response_code)
            finally:
                await session.close()
    # 302 is not a stored key: no login. 401 logs in, and may not home (RC 401).
    # Without a login the node asks for one first (408).
    assert outcomes == {SITE_SM2_KEY_INDEX: (403, 408), 401: (1, 401)}
