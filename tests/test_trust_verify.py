"""Verdicts of trusted resolution: one case per verdict, each also judged by the
independent verifier of tests/trust_tools.py (PyJWT, openssl, digests from the RFC)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from idnode.config import Config, ConfigError
from registry.models import PERM_RESTRICTED, HandleValue
from registry.trust import (
    MAX_LINKS,
    Claims,
    Permission,
    PublicKey,
    ResolutionFailed,
    TrustReport,
    TrustRoot,
    Verdict,
    authorizes,
    clear_caches,
    digests_claim,
    key_to_jwk,
    public_key_pem,
    same_key,
    sign_jws,
    verify_record,
)
from tests.trust_tools import (
    ROOT,
    ROOT_ID,
    Pki,
    dsa_key,
    independent_verdict,
    rsa_key,
    sm2_key,
    url,
)

ITEM = "88.111.1/item"
ENT = "300:88.111.1/ent"
PREFIX = "300:0.NA/88.111.1"
UNDER_PREFIX = (Permission("handlesUnderThisPrefix", "0.NA/88.111.1"),)


def three_links(pki: Pki, *, ent_perms: tuple[Permission, ...] = UNDER_PREFIX) -> None:
    """root 0.0/0.0 → prefix 0.NA/88.111.1 → enterprise 88.111.1/ent (DSA)."""
    pki.certify(PREFIX, rsa_key(1), perms=(Permission("derivedPrefixes", "0.NA/88"),))
    pki.certify(ENT, dsa_key(), issuer=PREFIX, signer=rsa_key(1), perms=ent_perms, as_json=True)


def judge(
    pki: Pki, values: list[HandleValue], *, trusted_keys: tuple[PublicKey, ...] = ()
) -> TrustReport:
    keys = trusted_keys or (pki.root_key.public_key(),)
    report = asyncio.run(verify_record(ITEM, values, pki.values_of, TrustRoot(ROOT, keys)))
    independent = independent_verdict(
        ITEM, values, pki.records, [key_to_jwk(k) for k in keys], pki.now
    )
    assert report.verdict.code == independent, (report.reason, independent)
    return report


def signed_item(pki: Pki, *, lifetime: int = 3600, subject: str | None = None) -> list[HandleValue]:
    values = [url(1, "https://a"), url(2, "https://b")]
    return pki.sign_record(ITEM, values, dsa_key(), ENT, lifetime=lifetime, subject=subject)


def test_a_good_three_link_chain_is_trusted() -> None:
    pki = Pki()
    three_links(pki)
    report = judge(pki, signed_item(pki))
    assert report.verdict is Verdict.TRUSTED and report.trusted
    assert report.signed_values == (1, 2) and report.unsigned_values == ()
    chain = report.signatures[0].chain
    assert [link.location for link in chain] == [
        f"400:{ITEM}",
        "400:88.111.1/ent",
        "400:0.NA/88.111.1",
        "400:0.0/0.0",
    ]
    assert [link.alg for link in chain] == ["DS256", "RS256", "RS256", "RS256"]
    assert chain[-1].self_issued and report.signatures[0].root_trusted
    body = report.to_json()
    assert body["verdict"] == "trusted" and body["signatures"][0]["chain"][1]["sub"] == ENT


def test_sm2256_chains_are_trusted_under_rsa_or_sm2_roots() -> None:
    for root_key in (rsa_key(), sm2_key(2)):
        pki = Pki(root_key=root_key)
        pki.certify(PREFIX, sm2_key(1), perms=(Permission("derivedPrefixes", "0.NA/88"),))
        pki.certify(ENT, sm2_key(), issuer=PREFIX, signer=sm2_key(1), perms=UNDER_PREFIX)
        record = pki.sign_record(ITEM, [url(1, "https://a")], sm2_key(), ENT, as_json=True)
        report = judge(pki, record)
        assert report.verdict is Verdict.TRUSTED, report.reason
        assert {link.alg for link in report.signatures[0].chain[:2]} == {"SM2256"}
        forged = pki.sign_record(ITEM, [url(1, "https://a")], sm2_key(3), ENT)
        assert judge(pki, forged).verdict is Verdict.BAD_SIGNATURE


def test_a_tampered_value_is_a_digest_mismatch() -> None:
    pki = Pki()
    three_links(pki)
    record = signed_item(pki)
    record[0] = HandleValue(index=1, type="URL", data=b"https://evil")
    report = judge(pki, record)
    assert report.verdict is Verdict.DIGEST_MISMATCH
    assert report.signatures[0].bad_digests == (1,)
    assert report.verdict.cnri_message == "bad digests"


def test_a_value_removed_after_signing_is_missing() -> None:
    pki = Pki()
    three_links(pki)
    record = signed_item(pki)
    report = judge(pki, record[1:])
    assert report.verdict is Verdict.VALUES_MISSING
    assert report.signatures[0].missing_values == (1,)


def test_an_expired_certificate_leaves_the_chain_untrusted() -> None:
    pki = Pki()
    three_links(pki)
    pki.certify(PREFIX, rsa_key(1), perms=(Permission("everything"),), lifetime=-10)
    report = judge(pki, signed_item(pki))
    assert report.verdict is Verdict.CHAIN_NOT_TRUSTED
    assert "400:0.NA/88.111.1 is outside its dates" in report.reason
    assert not report.signatures[0].chain[2].in_dates


def test_an_expired_signature_is_outside_its_dates() -> None:
    pki = Pki()
    three_links(pki)
    report = judge(pki, signed_item(pki, lifetime=-1))
    assert report.verdict is Verdict.OUTSIDE_DATES


def test_a_certificate_not_covering_the_handle_is_not_authorized() -> None:
    pki = Pki()
    three_links(pki, ent_perms=(Permission("thisHandle", "88.111.1/other"),))
    report = judge(pki, signed_item(pki))
    assert report.verdict is Verdict.NOT_AUTHORIZED
    assert report.unsigned_values == (1, 2)
    assert not report.signatures[0].chain[0].authorized
    assert report.verdict.cnri_message == "unsigned values"


def test_a_chain_that_loops_cannot_be_built() -> None:
    pki = Pki()
    a, b = "300:88.111.1/a", "300:88.111.1/b"
    pki.certify(a, rsa_key(1), issuer=b, signer=rsa_key(2))
    pki.certify(b, rsa_key(2), issuer=a, signer=rsa_key(1))
    record = pki.sign_record(ITEM, [url(1, "x")], rsa_key(1), a)
    report = judge(pki, record)
    assert report.verdict is Verdict.CHAIN_NOT_BUILT
    assert "loops back to 88.111.1/a" in report.reason


def test_a_root_that_is_not_configured_is_not_trusted() -> None:
    pki = Pki()
    three_links(pki)
    report = judge(pki, signed_item(pki), trusted_keys=(rsa_key(3).public_key(),))
    assert report.verdict is Verdict.CHAIN_NOT_TRUSTED
    assert "not a configured trust root key at 0.0/0.0" in report.reason
    # The same key at another handle is no root either.
    other = asyncio.run(
        verify_record(
            ITEM,
            pki.records[ITEM],
            pki.values_of,
            TrustRoot("88.111.1/0.0", (pki.root_key.public_key(),)),
        )
    )
    assert other.verdict is Verdict.CHAIN_NOT_TRUSTED


def test_values_added_after_signing_are_unsigned() -> None:
    pki = Pki()
    three_links(pki)
    secret = HandleValue(index=9, type="SECRET", data=b"x", permissions=PERM_RESTRICTED)
    record = [*signed_item(pki), url(3, "late"), secret]
    report = judge(pki, record)
    assert report.verdict is Verdict.UNSIGNED_VALUES
    assert report.unsigned_values == (3,)  # the restricted value needs no signature


def test_a_signature_about_another_handle_is_the_wrong_handle() -> None:
    pki = Pki()
    three_links(pki)
    report = judge(pki, signed_item(pki, subject="88.111.1/other"))
    assert report.verdict is Verdict.WRONG_HANDLE


def test_a_signature_by_another_key_does_not_verify() -> None:
    pki = Pki()
    three_links(pki)
    record = pki.sign_record(ITEM, [url(1, "x")], dsa_key(1), ENT)
    report = judge(pki, record)
    assert report.verdict is Verdict.BAD_SIGNATURE
    assert report.reason.endswith("DS256 signature does not match")


def test_no_signature_and_unreadable_signature() -> None:
    pki = Pki()
    assert judge_plain(pki, [url(1, "x")]).verdict is Verdict.NO_SIGNATURES
    broken = [
        url(1, "x"),
        HandleValue(index=400, type="HS_SIGNATURE", data=b"eyJhbGciOiJub25lIn0.e30."),
    ]
    report = judge_plain(pki, broken)
    assert report.verdict is Verdict.MALFORMED_SIGNATURE
    assert "signature is empty" in report.reason


def judge_plain(pki: Pki, values: list[HandleValue]) -> TrustReport:
    return asyncio.run(
        verify_record(ITEM, values, pki.values_of, TrustRoot(ROOT, (pki.root_key.public_key(),)))
    )


def _ladder(pki: Pki, links: int) -> list[HandleValue]:
    """A chain of ``links`` signatures below the root: the record's, then certificates."""
    issuer = ROOT_ID
    for n in range(links - 1):
        subject = f"300:88.111.1/level{n}"
        pki.certify(subject, rsa_key(1), issuer=issuer, signer=rsa_key(1) if n else None)
        issuer = subject
    signer = rsa_key(1) if links > 1 else pki.root_key
    return pki.sign_record(ITEM, [url(1, "x")], signer, issuer)


def test_fifty_links_are_walked_and_fifty_one_are_refused() -> None:
    pki = Pki()
    assert judge_plain(pki, _ladder(pki, MAX_LINKS)).verdict is Verdict.TRUSTED
    direct = Pki()
    assert judge_plain(direct, _ladder(direct, 1)).verdict is Verdict.TRUSTED
    longer = Pki()
    report = judge_plain(longer, _ladder(longer, MAX_LINKS + 1))
    assert report.verdict is Verdict.CHAIN_NOT_BUILT
    assert report.reason.endswith("chain is longer than 50 links below its root")


def test_chain_claims_name_the_certificates_to_follow() -> None:
    pki = Pki()
    three_links(pki)
    # The enterprise's certificate also sits at index 401 of a directory handle.
    directory = "88.111.1/certs"
    pki.records[directory] = [
        HandleValue(index=401, type="HS_CERT", data=pki.records["88.111.1/ent"][0].data)
    ]
    del pki.records["88.111.1/ent"]
    claims_chain = pki.sign_record(ITEM, [url(1, "x")], dsa_key(), ENT)
    assert judge_plain(pki, claims_chain).verdict is Verdict.CHAIN_NOT_BUILT
    payload = Claims(
        iss=ENT,
        sub=ITEM,
        iat=pki.now,
        exp=pki.now + 60,
        chain=(f"401:{directory}",),
        digests=digests_claim([url(1, "x")]),
    )
    jws = sign_jws(payload.to_json(), dsa_key())
    record = [url(1, "x"), HandleValue(index=400, type="HS_SIGNATURE", data=jws.compact().encode())]
    report = judge_plain(pki, record)
    assert report.verdict is Verdict.TRUSTED, report.reason
    assert report.signatures[0].chain[1].location == f"401:{directory}"


def test_the_newest_certificate_about_the_signer_is_used() -> None:
    pki = Pki()
    three_links(pki)
    record = signed_item(pki)
    stale = pki.records["88.111.1/ent"][0]
    pki.now -= 1000  # an older certificate of another key, at another index
    pki.certify(ENT, dsa_key(1), issuer=PREFIX, signer=rsa_key(1), index=401)
    pki.records["88.111.1/ent"].append(stale)
    assert judge_plain(pki, record).verdict is Verdict.TRUSTED


def test_an_unreachable_issuer_is_a_chain_not_built() -> None:
    pki = Pki()
    three_links(pki)
    record = signed_item(pki)

    async def unreachable(handle: str) -> list[HandleValue] | None:
        raise ResolutionFailed("the node serving it did not answer")

    report = asyncio.run(
        verify_record(ITEM, record, unreachable, TrustRoot(ROOT, (pki.root_key.public_key(),)))
    )
    assert report.verdict is Verdict.CHAIN_NOT_BUILT
    assert "could not resolve 88.111.1/ent: the node serving it did not answer" in report.reason


@pytest.mark.parametrize(
    ("perm", "granted", "handle", "allowed"),
    [
        ("everything", None, "99.1/x", True),
        ("thisHandle", "88.111.1/X", "88.111.1/X", True),
        ("thisHandle", "88.111.1/X", "88.111.1/x", False),
        ("thisHandle", "0.na/88.111.1", "88.111.1/x", True),
        ("handlesUnderThisPrefix", "0.NA/88.111.1", "88.111.1/x", True),
        ("handlesUnderThisPrefix", "0.NA/88.111.1", "88.111.10/x", False),
        ("handlesUnderThisPrefix", "88.111.1", "88.111.1/x", False),
        ("derivedPrefixes", "0.NA/88.111", "88.111.1/x", True),
        ("derivedPrefixes", "0.NA/88.111", "0.NA/88.111.1", True),
        ("derivedPrefixes", "0.NA/88.111", "88.111/x", False),
        ("derivedPrefixes", "0.NA/88.111", "88.1110/x", False),
        ("unknownPerm", "0.NA/88", "88.1/x", False),
    ],
)
def test_perms_follow_handle_net_rules(
    perm: str, granted: str | None, handle: str, allowed: bool
) -> None:
    assert authorizes([Permission(perm, granted)], handle) is allowed


def test_trust_root_keys_from_files_or_inline(tmp_path: Path) -> None:
    first: PublicKey = rsa_key().public_key()
    second: PublicKey = dsa_key().public_key()
    (tmp_path / "a.pem").write_bytes(public_key_pem(first))
    (tmp_path / "b.pem").write_bytes(public_key_pem(second))
    from_files = Config(trust_root_keys=f"{tmp_path / 'a.pem'}, {tmp_path / 'b.pem'}").trust_root()
    assert from_files.handle == "88.111.1/0.0"
    assert [same_key(a, b) for a, b in zip(from_files.keys, (first, second), strict=True)] == [
        True,
        True,
    ]
    inline = (public_key_pem(first) + public_key_pem(second)).decode()
    assert len(Config(trust_root_keys=inline, trust_root_handle=ROOT).trust_root().keys) == 2
    with pytest.raises(ConfigError, match="cannot read"):
        Config(trust_root_keys=str(tmp_path / "missing.pem")).validate()
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="bad.pem"):
        Config(trust_root_keys=str(tmp_path / "bad.pem")).validate()


def test_remembered_checks_never_hide_a_change() -> None:
    pki = Pki()
    three_links(pki)
    record = signed_item(pki)
    assert judge(pki, record).verdict is Verdict.TRUSTED
    assert judge(pki, record).verdict is Verdict.TRUSTED  # from memory, the same
    three_links(pki, ent_perms=(Permission("thisHandle", "88.111.1/other"),))
    assert judge(pki, record).verdict is Verdict.NOT_AUTHORIZED
    clear_caches()
    assert judge(pki, record).verdict is Verdict.NOT_AUTHORIZED
