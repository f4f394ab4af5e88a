"""Session bodies and HS_MAC credentials as bytes: HANDLE.NET's captured HomeNA flow
(tests/vectors/cnri-homena-session.json) decoded and re-encoded byte for byte, the
MAC layouts by version checked against independent constructions, and malformed
setup bodies refused precisely."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from resolver.handle import codec as c
from resolver.handle import credentials as cred
from resolver.handle import session_codec as sc
from resolver.handle import session_crypto as crypto
from tests import vectors

OAKLEY_GROUP_2 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)
"""RFC 2409's second Oakley group: what the JDK hands HANDLE.NET's 1024-bit DH keys."""


def homena() -> list[bytes]:
    """HomeNA's captured flow: every message's bytes, in order."""
    flow = vectors.load("cnri-homena-session.json")
    return [bytes.fromhex(m["hex"]) for m in flow["messages"]]


def test_captured_session_setup_decodes_and_reencodes_byte_for_byte() -> None:
    raw = homena()[2]
    request = c.Message.from_bytes(raw)
    assert request.opcode == c.OC_SESSION_SETUP and request.envelope.version == (2, 5)
    assert request.flag(c.FLAG_CERT) and request.flag(c.FLAG_RRDG)
    setup = sc.SessionSetup.from_bytes(request.body)
    assert setup.mode == sc.KEY_EXCHANGE_DH
    assert setup.timeout == 86_400
    assert (setup.identity_handle, setup.identity_index) == (b"0.NA/88.100.1", 300)
    assert setup.trailer == b"\x00\x00"  # the 2-byte mode sized as 4
    key = sc.DhPublicKey.from_bytes(setup.public_key)
    assert (key.p, key.g) == (OAKLEY_GROUP_2, 2)
    assert key.y.bit_length() > 1000
    crypto.check_dh(key)  # a real client's value passes the server's checks
    assert key.to_bytes() == setup.public_key
    assert setup.to_bytes() == request.body
    assert request.to_bytes() == raw


def test_captured_session_answer_decodes_and_reencodes_byte_for_byte() -> None:
    messages = homena()
    request, raw = c.Message.from_bytes(messages[2]), messages[3]
    answer = c.Message.from_bytes(raw)
    assert answer.header.response_code == 1 and answer.envelope.session_id == 1
    # The request digest (SHA-1 at 2.5) leads the body, then mode, data and trailer.
    digest = c.request_digest(request, (2, 5))
    assert answer.body.startswith(digest)
    body = sc.SessionSetupAnswer.from_bytes(answer.body[len(digest) :])
    assert body.mode == sc.KEY_EXCHANGE_DH and body.trailer == b"\x00\x00"
    cipher, record = sc.split_cipher(body.data)
    assert cipher == sc.CIPHER_DES  # the 7.3.1 reference server's default cipher
    server = sc.DhPublicKey.from_bytes(record)
    assert (server.p, server.g) == (OAKLEY_GROUP_2, 2)
    assert sc.with_cipher(cipher, server.to_bytes()) == body.data
    assert digest + body.to_bytes() == answer.body
    signed = cred.Credential.from_bytes(answer.credential)
    assert signed.signature_type == b"HS_SIGNED"  # setups are signed with the server key


@pytest.mark.parametrize(("at", "counter"), [(4, 1), (5, 1), (7, 2)])
def test_captured_hs_mac_credentials(at: int, counter: int) -> None:
    message = c.Message.from_bytes(homena()[at])
    assert message.envelope.session_id == 1
    assert sc.is_mac(message.credential)
    mac = cred.Credential.from_bytes(message.credential)
    assert mac.signer_index == counter  # the session counter, where HS_SIGNED puts an index
    assert mac.digest_algorithm == sc.mac_name((2, 5)) == b"\x02"
    assert len(mac.signature) == 20  # SHA-1
    assert sc.mac_credential(counter, mac.digest_algorithm, mac.signature) == message.credential
    assert message.to_bytes() == homena()[at]


def test_the_challenge_answer_inside_the_session_carries_no_mac() -> None:
    answer = c.Message.from_bytes(homena()[6])
    assert answer.opcode == c.OC_CHALLENGE_RESPONSE and answer.envelope.session_id == 1
    assert answer.credential == b""


def _message(version: tuple[int, int], suggested: tuple[int, int] = (2, 11)) -> c.Message:
    return c.Message(
        c.Envelope(version[0], version[1], suggested[0], suggested[1], 7, 99),
        c.Header(c.OC_HOME_NA, flags=c.FLAG_CERT, expiration=1_800_000_000),
        c.HandleOnly(b"0.NA/88.100.8").to_bytes(),
    )


def test_mac_layout_from_2_7_and_2_8() -> None:
    key = bytes(range(32))
    for version, lead in (((2, 7), b"\x02\x07"), ((2, 11), b"\x02\x0b\x02\x0b")):
        message = _message(version)
        expected = lead + struct.pack(">III", 7, 99, 5) + message.signed_part
        assert sc.mac_covered(message, 5, key) == expected
        assert crypto.mac(message, 5, key, b"HMAC-SHA256") == hmac.digest(key, expected, "sha256")
    # At 2.8 a peer that wrote no suggested version is taken at its own.
    quiet = _message((2, 8), (0, 0))
    assert sc.mac_covered(quiet, 1, key)[:4] == b"\x02\x08\x02\x08"


def test_mac_layout_of_2_5_and_2_6_covers_no_ids() -> None:
    key = bytes(range(100, 132))
    message = _message((2, 5))
    hb = message.signed_part
    # HANDLE.NET's buffer: the key's first 4 bytes survive, then header and body,
    # the key, and zeros — neither ids nor counter.
    expected = key[:4] + hb + key + bytes(len(key) + 10)
    assert sc.mac_covered(message, 1, key) == expected
    assert sc.mac_covered(message, 2, key) == expected
    assert crypto.mac(message, 1, key, b"\x02") == hashlib.sha1(expected).digest()
    assert crypto.mac(_message((2, 6)), 1, key, b"SHA1") is not None
    assert crypto.mac(message, 1, key, b"HMAC-SHA256") is None  # HANDLE.NET has no such MAC there


def test_mac_before_2_5_is_keyed_sha1_of_header_and_body() -> None:
    key = b"k" * 16
    message = _message((2, 4))
    assert sc.mac_covered(message, 3, key) == message.signed_part
    expected = hashlib.sha1(key + message.signed_part + key).digest()
    assert crypto.mac(message, 3, key, b"\x02") == expected


def _setup(mode: int = sc.KEY_EXCHANGE_DH, key: bytes = b"") -> bytes:
    return sc.SessionSetup(mode, 600, b"0.NA/88.100", 300, public_key=key).to_bytes()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "ends early"),
        (_setup(key=b"x" * 40)[:30], "ends early"),
        (struct.pack(">H", 9) + _setup()[2:], "unknown key-exchange mode 9"),
        (
            struct.pack(">Hi", 4, 60) + b"\x00\x00\x00\x00" + struct.pack(">iI", -1, 100_000),
            "100000-byte public key",
        ),
        (_setup(key=b"k") + b"\x00" * 40, "stray bytes"),
    ],
)
def test_malformed_setup_bodies_are_invalid_setups(body: bytes, says: str) -> None:
    with pytest.raises(sc.InvalidSetup, match=says):
        sc.SessionSetup.from_bytes(body)


@pytest.mark.parametrize("y", [0, 1, OAKLEY_GROUP_2 - 1, OAKLEY_GROUP_2])
def test_degenerate_dh_public_values_are_refused(y: int) -> None:
    with pytest.raises(sc.InvalidSetup, match="out of range"):
        crypto.dh_exchange(sc.DhPublicKey(y, OAKLEY_GROUP_2, 2))


@pytest.mark.parametrize(("bits", "says"), [(512, "512-bit"), (4096, "4096-bit")])
def test_dh_groups_out_of_bounds_are_refused(bits: int, says: str) -> None:
    p = (1 << bits) - 1
    with pytest.raises(sc.InvalidSetup, match=says):
        crypto.dh_exchange(sc.DhPublicKey(2, p, 2))


def test_dh_session_key_is_handle_nets() -> None:
    # Leading zero bytes of the secret are skipped while 32 bytes remain.
    p = OAKLEY_GROUP_2
    secret = int.from_bytes(b"\x00\x00" + bytes(range(1, 127)), "big")
    assert crypto.dh_session_key(secret, p, sc.CIPHER_AES) == bytes(range(1, 33))
    assert crypto.dh_session_key(0x1234, p, sc.CIPHER_AES) == bytes(30) + b"\x12\x34"
