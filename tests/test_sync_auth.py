"""Signed sync requests (sync/PROTOCOL.md §2)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.secrets import NodeKey
from sync import auth

NOW = 1_790_000_000.0
PATH = "/sync/v1/events"
BODY = b'{"node": "88.100", "events": []}'


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return auth.signing_key(NodeKey.generate())


def check(
    key: Ed25519PrivateKey,
    headers: dict[str, str],
    *,
    method: str = "POST",
    path: str = PATH,
    body: bytes = BODY,
    now: float = NOW,
    nonces: auth.NonceMemory | None = None,
) -> str:
    return auth.verify(
        headers,
        method,
        path,
        body,
        key.public_key(),
        now=now,
        nonces=nonces or auth.NonceMemory(),
    )


def test_a_signed_request_verifies_once(key: Ed25519PrivateKey) -> None:
    headers = auth.sign(key, "POST", PATH, "88.100", BODY, now=NOW)
    assert set(headers) == set(auth.HEADERS)
    nonces = auth.NonceMemory()
    assert check(key, headers, nonces=nonces) == "88.100"
    with pytest.raises(auth.AuthError) as replay:
        check(key, headers, nonces=nonces, now=NOW + 10)
    assert replay.value.code == "replayed"
    # Past the memory the nonce is forgotten, but then the timestamp is stale anyway.
    with pytest.raises(auth.AuthError) as late:
        check(key, headers, nonces=nonces, now=NOW + auth.NONCE_MEMORY_SECONDS + 1)
    assert late.value.code == "stale-timestamp"


def test_the_key_is_the_node_keys(key: Ed25519PrivateKey) -> None:
    node_key = NodeKey.generate()
    one, two = auth.signing_key(node_key), auth.signing_key(node_key)
    assert auth.public_bytes(one.public_key()) == auth.public_bytes(two.public_key())
    assert auth.public_key(auth.public_bytes(one.public_key())) is not None
    other = auth.signing_key(NodeKey.generate())
    headers = auth.sign(other, "POST", PATH, "88.100", BODY, now=NOW)
    with pytest.raises(auth.AuthError) as refused:
        check(key, headers)
    assert refused.value.code == "bad-signature"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"method": "PUT"}, "bad-signature"),
        ({"path": PATH + "?x=1"}, "bad-signature"),
        ({"body": BODY + b" "}, "bad-signature"),
        ({"now": NOW + auth.WINDOW_SECONDS + 1}, "stale-timestamp"),
        ({"now": NOW - auth.WINDOW_SECONDS - 1}, "stale-timestamp"),
    ],
)
def test_anything_changed_is_refused(
    key: Ed25519PrivateKey, change: dict[str, object], code: str
) -> None:
    headers = auth.sign(key, "POST", PATH, "88.100", BODY, now=NOW)
    with pytest.raises(auth.AuthError) as refused:
        check(key, headers, **change)  # type: ignore[arg-type]
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        (auth.NODE, "88.200", "bad-signature"),  # another node's name on our signature
        (auth.NODE, "", "unsigned"),
        (auth.SIGNATURE, "", "unsigned"),
        (auth.SIGNATURE, "not base64!", "bad-signature"),
        (auth.SIGNATURE, "AAAA", "bad-signature"),
        (auth.NONCE, "short", "unsigned"),
        (auth.TIMESTAMP, "-5", "unsigned"),
        (auth.TIMESTAMP, "1e9", "unsigned"),
    ],
)
def test_bad_headers_are_refused(
    key: Ed25519PrivateKey, header: str, value: str, code: str
) -> None:
    headers = auth.sign(key, "POST", PATH, "88.100", BODY, now=NOW)
    headers[header] = value
    with pytest.raises(auth.AuthError) as refused:
        check(key, headers)
    assert refused.value.code == code


def test_a_forged_request_does_not_spend_the_nonce(key: Ed25519PrivateKey) -> None:
    nonces = auth.NonceMemory()
    real = auth.sign(key, "POST", PATH, "88.100", BODY, now=NOW)
    forged = dict(real, **{auth.SIGNATURE: real[auth.SIGNATURE][:-4] + "AAA="})
    with pytest.raises(auth.AuthError):
        check(key, forged, nonces=nonces)
    assert check(key, real, nonces=nonces) == "88.100"


def test_a_full_memory_refuses_rather_than_forgets(key: Ed25519PrivateKey) -> None:
    nonces = auth.NonceMemory(max_nonces=3)
    for i in range(3):
        check(key, auth.sign(key, "POST", PATH, "88.100", BODY, now=NOW + i), nonces=nonces)
    with pytest.raises(auth.AuthError) as busy:
        check(key, auth.sign(key, "POST", PATH, "88.100", BODY, now=NOW + 3), nonces=nonces)
    assert busy.value.code == "busy"
    later = NOW + auth.NONCE_MEMORY_SECONDS + 10  # the first three have expired
    check(key, auth.sign(key, "POST", PATH, "88.100", BODY, now=later), nonces=nonces, now=later)


@settings(max_examples=100, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT"]),
    path=st.text(min_size=1, max_size=80),
    body=st.binary(max_size=200),
    offset=st.integers(-auth.WINDOW_SECONDS, auth.WINDOW_SECONDS),
)
def test_every_request_signed_verifies(method: str, path: str, body: bytes, offset: int) -> None:
    key = auth.signing_key(NodeKey(b"k" * 32))
    headers = auth.sign(key, method, path, "88.100", body, now=NOW)
    assert check(key, headers, method=method, path=path, body=body, now=NOW + offset) == "88.100"
