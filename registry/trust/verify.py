"""Verifying a record: its signatures, their chains, one verdict.

Each ``HS_SIGNATURE`` of the record is checked against the key that its chain
certifies, and each link of the chain against its issuer's key, dates and
``perms``; the root must be self-issued, at the configured trust-root handle,
with one of the configured root keys. The verdict is the first problem in the
order HANDLE.NET reports them (:class:`Verdict`), so the same record gets the
same verdict from this node as from a HANDLE.NET or IDIS client.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from registry.models import PUBLIC_READ, HandleValue

from .chain import (
    HS_SIGNATURE,
    ChainError,
    Link,
    ValuesOf,
    build_chain,
    forget_certificates,
    prefix_upper,
    same_handle,
)
from .claims import (
    DERIVED_PREFIXES,
    EVERYTHING,
    HANDLES_UNDER_THIS_PREFIX,
    THIS_HANDLE,
    Claims,
    ClaimsError,
    Permission,
    ValueRef,
)
from .digests import UnknownDigest, compare
from .jws import Jws, JwsError, forget_checks, parse_jws
from .keys import PublicKey, same_key

MAX_SIGNATURES = 16
"""Most ``HS_SIGNATURE`` values of one record that are checked: each may cost a
chain of 50 links, so a record cannot make a verifier work without bound."""
CNRI_TRUST_ROOT = "0.0/0.0"
IDIS_TRUST_ROOT = "88.111.1/0.0"


class Verdict(enum.Enum):
    """Outcomes, most serious first: a record gets the first that applies."""

    NO_SIGNATURES = ("no_signatures", "no signatures")
    MALFORMED_SIGNATURE = ("malformed_signature", "exception parsing signature")
    CHAIN_NOT_BUILT = ("chain_not_built", "unable to build chain")
    WRONG_HANDLE = ("wrong_handle", "incorrect handle")
    INVALID_PAYLOAD = ("invalid_payload", "invalid signature payload")
    BAD_SIGNATURE = ("bad_signature", "signature does not verify")
    OUTSIDE_DATES = ("outside_dates", "incorrect date range in signature")
    DIGEST_MISMATCH = ("digest_mismatch", "bad digests")
    VALUES_MISSING = ("values_missing", "missing values")
    CHAIN_NOT_TRUSTED = ("chain_not_trusted", "chain not trusted")
    NOT_AUTHORIZED = ("not_authorized", "unsigned values")
    """A signer's certificate does not cover this handle; HANDLE.NET counts the
    values it signed as unsigned and says so."""
    UNSIGNED_VALUES = ("unsigned_values", "unsigned values")
    TRUSTED = ("trusted", "")

    def __init__(self, code: str, cnri: str) -> None:
        self.code = code
        self.cnri_message = cnri
        """What HANDLE.NET's ``getErrorMessage`` says for it."""


@dataclass(frozen=True, slots=True)
class TrustRoot:
    """Whom to believe: the root handle (``0.0/0.0``, IDIS ``88.111.1/0.0``) and its keys."""

    handle: str = CNRI_TRUST_ROOT
    keys: tuple[PublicKey, ...] = ()

    def accepts(self, claims: Claims) -> bool:
        if claims.sub is None or claims.public_key is None:
            return False
        at_root = same_handle(ValueRef.parse(claims.sub).handle, self.handle)
        return at_root and any(same_key(claims.public_key, key) for key in self.keys)


def authorizes(perms: Sequence[Permission] | None, handle: str) -> bool:
    """Whether a certificate's ``perms`` let its key sign for ``handle`` (HANDLE.NET rules)."""
    target = prefix_upper(handle)
    for permission in perms or ():
        if permission.perm == EVERYTHING:
            return True
        if permission.handle is None:
            continue
        granted = prefix_upper(permission.handle)
        if permission.perm == THIS_HANDLE:
            if target == granted or _under_prefix(target, granted):
                return True
        elif permission.perm == DERIVED_PREFIXES:
            zero_na = "0.NA/" + target.partition("/")[0]
            if _derived(target, granted) or _derived(zero_na, granted):
                return True
        elif permission.perm == HANDLES_UNDER_THIS_PREFIX and _under_prefix(target, granted):
            return True
    return False


def _under_prefix(handle: str, prefix_handle: str) -> bool:
    """``88.111.1/x`` is under ``0.NA/88.111.1``."""
    upper = prefix_handle.upper()
    return upper.startswith("0.NA/") and handle.startswith(upper[5:] + "/")


def _derived(handle: str, ancestor: str) -> bool:
    """``0.NA/88.111.1`` is derived from ``0.NA/88.111``."""
    return handle.upper().startswith("0.NA/") and handle.upper().startswith(ancestor.upper() + ".")


# --- reports ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkReport:
    """One signature of a chain, checked against its issuer."""

    location: str | None
    iss: str | None
    sub: str | None
    alg: str
    exp: int | None
    nbf: int | None
    iat: int | None
    signature_problem: str | None
    """None when the signature verifies with the issuer's key."""
    in_dates: bool
    authorized: bool
    """The issuer's ``perms`` cover the record's handle."""
    self_issued: bool

    @property
    def trustworthy(self) -> bool:
        """HANDLE.NET's ``canTrust``: payload, signature and dates all good."""
        return self.signature_problem is None and self.in_dates

    def to_json(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "iss": self.iss,
            "sub": self.sub,
            "alg": self.alg,
            "exp": self.exp,
            "nbf": self.nbf,
            "iat": self.iat,
            "signatureVerifies": self.signature_problem is None,
            "signatureProblem": self.signature_problem,
            "dateInRange": self.in_dates,
            "authorized": self.authorized,
            "selfIssued": self.self_issued,
        }


@dataclass(frozen=True, slots=True)
class SignatureReport:
    """One ``HS_SIGNATURE`` of the record: its verdict, chain and digests."""

    index: int
    verdict: Verdict
    reason: str
    chain: tuple[LinkReport, ...] = ()
    root_trusted: bool = False
    verified_values: tuple[int, ...] = ()
    bad_digests: tuple[int, ...] = ()
    missing_values: tuple[int, ...] = ()
    unsigned_values: tuple[int, ...] = ()

    @property
    def vouches(self) -> bool:
        """Trusted and authorized from the signature to the root (``canTrustAndAuthorized``)."""
        return self.verdict is Verdict.TRUSTED and all(link.authorized for link in self.chain)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "verdict": self.verdict.code,
            "reason": self.reason,
            "rootTrusted": self.root_trusted,
            "verifiedValues": list(self.verified_values),
            "badDigestValues": list(self.bad_digests),
            "missingValues": list(self.missing_values),
            "unsignedValues": list(self.unsigned_values),
            "chain": [link.to_json() for link in self.chain],
        }


@dataclass(frozen=True, slots=True)
class TrustReport:
    """The verdict on a record, with every signature's report."""

    handle: str
    verdict: Verdict
    reason: str
    signatures: tuple[SignatureReport, ...] = ()
    signed_values: tuple[int, ...] = ()
    unsigned_values: tuple[int, ...] = ()
    trust_root: str = field(default=CNRI_TRUST_ROOT)

    @property
    def trusted(self) -> bool:
        return self.verdict is Verdict.TRUSTED

    def to_json(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "trusted": self.trusted,
            "verdict": self.verdict.code,
            "message": self.verdict.cnri_message,
            "reason": self.reason,
            "trustRoot": self.trust_root,
            "signedValues": list(self.signed_values),
            "unsignedValues": list(self.unsigned_values),
            "signatures": [s.to_json() for s in self.signatures],
        }


# --- verification ------------------------------------------------------------------


def clear_caches() -> None:
    """Forget the certificates read and the signatures checked (benchmarks measure
    verification from nothing with it; nothing else needs it: both are remembered
    by their exact bytes, so a change is never served from memory)."""
    forget_certificates()
    forget_checks()


def needs_signature(value: HandleValue) -> bool:
    """Values a signature must cover: the publicly readable ones but signatures."""
    return value.type.upper() != HS_SIGNATURE and bool(value.permissions & PUBLIC_READ)


async def verify_record(
    handle: str,
    values: Sequence[HandleValue],
    values_of: ValuesOf,
    root: TrustRoot,
    *,
    now: float | None = None,
) -> TrustReport:
    """The verdict on the record ``handle`` holding ``values`` (as anyone reads them)."""
    moment = time.time() if now is None else now
    signature_values = [v for v in values if v.type.upper() == HS_SIGNATURE]
    if not signature_values:
        return TrustReport(handle, Verdict.NO_SIGNATURES, "the record has no HS_SIGNATURE value",
                           trust_root=root.handle)  # fmt: skip
    if len(signature_values) > MAX_SIGNATURES:
        return TrustReport(
            handle,
            Verdict.MALFORMED_SIGNATURE,
            f"the record has {len(signature_values)} HS_SIGNATURE values; "
            f"at most {MAX_SIGNATURES} are verified",
            trust_root=root.handle,
        )
    reports = []
    for value in signature_values:
        location = ValueRef(handle, value.index)
        try:
            jws = parse_jws(value.data)
        except JwsError as exc:
            reports.append(SignatureReport(value.index, Verdict.MALFORMED_SIGNATURE, str(exc)))
            continue
        reports.append(
            await _verify_signature(handle, values, jws, location, values_of, root, moment)
        )
    needing = {v.index for v in values if needs_signature(v)}
    signed = set().union(*(r.verified_values for r in reports if r.vouches))
    unsigned = tuple(sorted(needing - signed))
    verdict, reason = _record_verdict(reports, unsigned)
    return TrustReport(
        handle,
        verdict,
        reason,
        tuple(reports),
        tuple(sorted(signed & needing)),
        unsigned,
        trust_root=root.handle,
    )


def _record_verdict(
    reports: Sequence[SignatureReport], unsigned: tuple[int, ...]
) -> tuple[Verdict, str]:
    # A signature that cannot even be read outranks every chain (HANDLE.NET stops there).
    for report in reports:
        if report.verdict is Verdict.MALFORMED_SIGNATURE:
            return report.verdict, f"HS_SIGNATURE at index {report.index}: {report.reason}"
    for report in reports:
        if report.verdict is not Verdict.TRUSTED:
            return report.verdict, f"HS_SIGNATURE at index {report.index}: {report.reason}"
    if unsigned:
        for report in reports:
            barred = [link for link in report.chain if not link.authorized]
            if barred and set(unsigned) & set(report.verified_values):
                who = barred[0].location or "the signature"
                return Verdict.NOT_AUTHORIZED, (
                    f"the certificate above {who} does not authorize its key over this handle; "
                    f"values {_indexes(unsigned)} are not signed by an authorized key"
                )
        return Verdict.UNSIGNED_VALUES, f"values {_indexes(unsigned)} are not signed"
    return Verdict.TRUSTED, "every public value is signed by a chain to the trust root"


def _indexes(indexes: Sequence[int]) -> str:
    return ", ".join(str(i) for i in indexes)


def _link_report(link: Link, handle: str, now: float) -> LinkReport:
    claims = link.claims
    key = link.issuer.public_key
    problem = (
        link.jws.problem_with(key)
        if key is not None
        else f"the certificate of {link.claims.iss} has no publicKey"
    )
    return LinkReport(
        location=str(link.location) if link.location is not None else None,
        iss=claims.iss,
        sub=claims.sub,
        alg=link.jws.alg,
        exp=claims.exp,
        nbf=claims.nbf,
        iat=claims.iat,
        signature_problem=problem,
        in_dates=claims.in_dates(now),
        authorized=authorizes(link.issuer.perms, handle),
        self_issued=link.self_issued,
    )


async def _verify_signature(
    handle: str,
    values: Sequence[HandleValue],
    jws: Jws,
    location: ValueRef,
    values_of: ValuesOf,
    root: TrustRoot,
    now: float,
) -> SignatureReport:
    index = location.index
    try:
        claims = Claims.from_json(jws.payload)
    except ClaimsError as exc:
        return SignatureReport(index, Verdict.INVALID_PAYLOAD, str(exc))
    try:
        links = await build_chain(jws, claims, values_of, location=location)
    except ChainError as exc:
        return SignatureReport(index, Verdict.CHAIN_NOT_BUILT, str(exc))
    chain = tuple(_link_report(link, handle, now) for link in links)
    root_trusted = root.accepts(links[-1].claims)

    def early(verdict: Verdict, reason: str) -> SignatureReport:
        return SignatureReport(index, verdict, reason, chain, root_trusted)

    if not same_handle(handle, claims.sub):
        return early(Verdict.WRONG_HANDLE, f"it is about {claims.sub}, not {handle}")
    if claims.digests is None:
        return early(Verdict.INVALID_PAYLOAD, "it has no digests")
    try:
        digests = compare(values, claims.digests)
    except UnknownDigest as exc:
        return early(Verdict.INVALID_PAYLOAD, str(exc))
    verdict, reason = _signature_verdict(chain, root_trusted, digests.bad, digests.missing, root)
    return SignatureReport(
        index,
        verdict,
        reason,
        chain,
        root_trusted,
        verified_values=digests.verified,
        bad_digests=digests.bad,
        missing_values=digests.missing,
        unsigned_values=digests.unsigned,
    )


def _signature_verdict(
    chain: tuple[LinkReport, ...],
    root_trusted: bool,
    bad: tuple[int, ...],
    missing: tuple[int, ...],
    root: TrustRoot,
) -> tuple[Verdict, str]:
    own = chain[0]
    if own.signature_problem is not None:
        return Verdict.BAD_SIGNATURE, own.signature_problem
    if not own.in_dates:
        return Verdict.OUTSIDE_DATES, f"valid from {own.nbf} to {own.exp} (seconds)"
    if bad:
        return Verdict.DIGEST_MISMATCH, f"values {_indexes(bad)} changed since they were signed"
    if missing:
        return Verdict.VALUES_MISSING, f"signed values {_indexes(missing)} are not in the record"
    for link in chain[1:]:
        if link.signature_problem is not None:
            return (
                Verdict.CHAIN_NOT_TRUSTED,
                f"certificate {link.location}: {link.signature_problem}",
            )
        if not link.in_dates:
            return Verdict.CHAIN_NOT_TRUSTED, (
                f"certificate {link.location} is outside its dates "
                f"(valid from {link.nbf} to {link.exp})"
            )
    if not root_trusted:
        top = chain[-1]
        return Verdict.CHAIN_NOT_TRUSTED, (
            f"the chain ends at {top.sub} ({top.location}), which is not a configured "
            f"trust root key at {root.handle}"
        )
    return Verdict.TRUSTED, "signature verifies up to the trust root"
