"""Pure building blocks: secrets, tokens, HS_ADMIN data, the audit chain, config."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idnode.config import Config, ConfigError, Endpoint, load
from registry.audit import GENESIS_HASH, entry_hash, verify_chain
from registry.models import AuditEntry
from registry.passwords import StoredSecret, hash_secret, verify_plain, verify_secret
from registry.secrets import NodeKey, NodeKeyError, dated_digest, sha256_hex
from registry.tokens import InvalidToken, TokenIssuer
from registry.values import AdminRef, ValueFormatError

# --- secrets ------------------------------------------------------------------


def test_snms_login_vector() -> None:
    # shared/vectors/README.md: the /identity/token/v1 example password.
    digest = sha256_hex("123456")
    assert digest == "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92"
    assert dated_digest(digest, "2019-08-15") == (
        "58e2c92c46485fdbc35fdcd0814d6c0f000cad5aa156848ca5edaf29406b7661"
    )


def test_salted_hash_verifies_and_differs_each_time() -> None:
    a, b = hash_secret("s3cret"), hash_secret("s3cret")
    assert a != b
    assert verify_secret("s3cret", a) and verify_secret("s3cret", b)
    assert not verify_secret("s3cret!", a)
    assert not verify_secret("s3cret", "garbage")
    assert not verify_secret("s3cret", "md5$1$2$3$x$y")


def test_stored_secret_seals_digest_not_plaintext() -> None:
    key = NodeKey.generate()
    stored = StoredSecret.from_plain("hunter2", key)
    assert b"hunter2" not in stored.digest_sealed
    assert sha256_hex("hunter2").encode() not in stored.digest_sealed
    assert key.unseal(stored.digest_sealed) == sha256_hex("hunter2").encode()
    assert verify_plain("hunter2", stored.hash)
    with pytest.raises(Exception):  # noqa: B017 - another key must not open it
        NodeKey.generate().unseal(stored.digest_sealed)


def test_node_key_file_is_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key = NodeKey.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert NodeKey.load_or_create(path).material == key.material
    os.chmod(path, 0o644)
    with pytest.raises(NodeKeyError, match="chmod 600"):
        NodeKey.load_or_create(path)
    os.chmod(path, 0o600)
    path.write_text("not base64!\n")
    with pytest.raises(NodeKeyError):
        NodeKey.load_or_create(path)


# --- tokens -------------------------------------------------------------------


def test_tokens_expire_after_24_hours_and_are_bound_to_the_key() -> None:
    key = NodeKey.generate()
    issuer = TokenIssuer(key)
    token = issuer.issue(7, "ak", fingerprint="f1", access_key_id=3, now=1_000_000)
    claims = issuer.verify(token, now=1_000_000 + 24 * 3600 - 1)
    assert (claims.user_id, claims.via, claims.access_key_id, claims.fingerprint) == (
        7,
        "ak",
        3,
        "f1",
    )
    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify(token, now=1_000_000 + 24 * 3600)
    with pytest.raises(InvalidToken):
        TokenIssuer(NodeKey.generate()).verify(token, now=1_000_001)
    with pytest.raises(InvalidToken):
        issuer.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), now=1_000_001)
    with pytest.raises(InvalidToken):
        issuer.verify("not-a-token")


# --- HS_ADMIN -----------------------------------------------------------------


def test_hs_admin_vector() -> None:
    # shared/reference/handle.md §5: 0.NA/88.111 index 200 perms 011111110011.
    data = bytes.fromhex("07f30000000b302e4e412f38382e313131000000c8")
    ref = AdminRef.from_bytes(data)
    assert ref == AdminRef("0.NA/88.111", 200, 0x07F3)
    assert ref.to_bytes() == data
    # The legacy form with two trailing bytes decodes to the same record.
    assert AdminRef.from_bytes(data + b"\x00\x00") == ref


@given(st.text(max_size=40), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF))
def test_hs_admin_round_trip(handle: str, index: int, perms: int) -> None:
    ref = AdminRef(handle, index, perms)
    assert AdminRef.from_bytes(ref.to_bytes()) == ref


@pytest.mark.parametrize("data", [b"", b"\x00" * 9, bytes.fromhex("0fff00000010") + b"ab"])
def test_hs_admin_truncated(data: bytes) -> None:
    with pytest.raises(ValueFormatError):
        AdminRef.from_bytes(data)


# --- audit chain --------------------------------------------------------------


def chain(n: int) -> list[AuditEntry]:
    entries, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        fields = dict(
            seq=seq,
            at=datetime(2026, 1, 1, 0, 0, seq, tzinfo=UTC),
            actor="ak:admin",
            action="identifier.created",
            target=f"88.100.1/{seq}",
            detail={"n": seq},
            remote="127.0.0.1",
            prev_hash=prev,
        )
        digest = entry_hash(**fields)  # type: ignore[arg-type]
        entries.append(AuditEntry(**fields, hash=digest))  # type: ignore[arg-type]
        prev = digest
    return entries


def test_intact_chain_verifies() -> None:
    assert verify_chain(chain(5)) == []


def test_edit_delete_and_reorder_are_detected() -> None:
    edited = chain(5)
    edited[2] = dataclasses.replace(edited[2], target="88.100.1/forged")
    assert [p.seq for p in verify_chain(edited)] == [3]
    deleted = chain(5)
    del deleted[2]
    assert verify_chain(deleted)
    reordered = chain(5)
    reordered[1], reordered[2] = reordered[2], reordered[1]
    assert verify_chain(reordered)


# --- configuration ------------------------------------------------------------


def test_config_precedence_toml_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "idnode.toml"
    toml.write_text(
        'node_prefix = "88.200"\nhttp = "127.0.0.1:9000"\n'
        'database_url = "sqlite+aiosqlite:///a.db"\n'
    )
    env = {"IDNODE_HTTP": "[::1]:9100", "IDNODE_SUFFIX_CASE_SENSITIVE": "false"}
    cfg = load(
        config_file=str(toml), environ=env, overrides={"database_url": "sqlite+aiosqlite:///b"}
    )
    assert cfg.node_prefix == "88.200"
    assert cfg.http == Endpoint("::1", 9100)
    assert str(cfg.http) == "[::1]:9100"
    assert cfg.suffix_case_sensitive is False
    assert cfg.database_url == "sqlite+aiosqlite:///b"
    assert load(environ={}) == Config()


def test_config_errors_are_specific(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('node_prefx = "88.1"\n')
    with pytest.raises(ConfigError, match="unknown keys node_prefx"):
        load(config_file=str(bad), environ={})
    with pytest.raises(ConfigError, match="bad port"):
        load(environ={"IDNODE_HTTP": "127.0.0.1:99999"})
    with pytest.raises(ConfigError, match="true or false"):
        load(environ={"IDNODE_SUFFIX_CASE_SENSITIVE": "maybe"})
    with pytest.raises(ConfigError, match="bootstrap_admin"):
        load(environ={"IDNODE_BOOTSTRAP_ADMIN": "no-colon"})
    with pytest.raises(ConfigError, match="cannot read"):
        load(config_file=str(tmp_path / "missing.toml"), environ={})


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("127.0.0.1:0", Endpoint("127.0.0.1", 0)),
        ("[::1]:53", Endpoint("::1", 53)),
        ("8000", Endpoint("127.0.0.1", 8000)),
        (":80", Endpoint("0.0.0.0", 80)),
    ],
)
def test_endpoint_forms(text: str, endpoint: Endpoint) -> None:
    assert Endpoint.parse(text) == endpoint
    assert Endpoint.parse(str(endpoint)) == endpoint


@pytest.mark.parametrize("text", ["::1", "::1:53", "2001:db8::1:8000", "[::1]", "host", "h:x"])
def test_endpoints_that_say_no_port_plainly_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="bad"):
        Endpoint.parse(text)


def test_private_files_are_created_once(tmp_path: Path) -> None:
    from registry.secrets import create_private_file, load_or_create_server_key

    path = tmp_path / "k"
    assert create_private_file(path, b"first")
    assert not create_private_file(path, b"second")  # a second starter loses the race
    assert path.read_bytes() == b"first" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temporary files left
    key = load_or_create_server_key(tmp_path / "server.pem")
    again = load_or_create_server_key(tmp_path / "server.pem")
    assert key.private_numbers() == again.private_numbers()
