"""The node as an issuer of trust: its own certificate, its enterprises'
certificates and signing keys, and the signatures of records.

Where things live (docs/operations.md, Trusted resolution):

- The node's signing key is a file (``issuer_key_file``); its certificate is the
  ``HS_CERT`` at index 400 of the node's identity handle (``0.NA/<node prefix>``
  by default), its public key the ``HS_PUBKEY`` at the identity's index (401).
  The certificate is either imported from the national root or, in a
  self-rooted pilot, issued by the node to itself.
- An enterprise's signing key is made by the node when the enterprise is
  approved and kept on the enterprise's prefix record ``0.NA/<prefix>``: the
  certificate at 400, the public key at 401, the private key at 402 sealed
  with the node key (bound to that place; never served, never sent upward).
- A record's signature is the ``HS_SIGNATURE`` at the lowest free index from 400
  (made by :mod:`.signing`).

Every write goes through :meth:`Services.change`: the record, its audit entry
and its outbox event commit together. Private keys appear in no answer, audit
entry or log line.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from .. import store
from ..crypto import Sm2PrivateKey
from ..crypto.keys import private_pem
from ..errors import (
    InvalidValue,
    NotFound,
)
from ..grammar import HandleName, prefix_handle
from ..models import PERM_RESTRICTED, HandleValue, Identifier
from ..secrets import seal_value
from ..trust import issue
from ..trust.chain import HS_CERT
from ..trust.claims import Claims, ValueRef
from ..trust.issue import SigningKey, Validity
from .base import SYSTEM_ACTOR, Actor, Change, Services, managed_prefix
from .handles import Handles
from .identifiers import write_record
from .signing import SEALED_KEY_INDEX, SIGNER_KEY_INDEX, RecordSigning

log = logging.getLogger("idnode.trust")

SEALED_KEY_TYPE = "IDNODE_SIGNING_KEY"
RSA_BITS = 2048


@dataclass(frozen=True)
class NodeIssuer:
    """The node's settings as an issuer (idnode.config ``issuer_*``), checked."""

    key: SigningKey
    identity: ValueRef
    """The ``iss`` of what the node issues and signs (``401:0.NA/<node prefix>``)."""
    imported: str | None = None
    """The node's certificate from the national root; None: self-rooted."""
    cert_days: int = 365
    resign_on_change: bool = True

    @property
    def algorithm(self) -> str:
        return issue.algorithm_of(self.key)

    @classmethod
    def configured(
        cls,
        key: SigningKey,
        *,
        algorithm: str,
        identity: str,
        node_prefix: str,
        imported: str | None,
        cert_days: int,
        resign_on_change: bool,
        now: int,
    ) -> NodeIssuer:
        """IssueError naming what is wrong: a key of another algorithm, an identity
        the node cannot write, a certificate for another key or identity."""
        issue.check_algorithm(key, algorithm)
        ref = ValueRef.parse(identity) if identity else ValueRef(prefix_handle(node_prefix), 401)
        if ref.index <= 0 or ref.index == issue.CERT_INDEX:
            raise issue.IssueError(
                f"issuer_identity {identity!r}: write index:handle with an index other than 0 "
                f"and {issue.CERT_INDEX} (where its certificate goes)"
            )
        handled = ref.handle.split("/", 1)
        served = handled[1] if handled[0].upper() == "0.NA" else handled[0]
        if served.upper() != node_prefix.upper() or len(handled) != 2:
            raise issue.IssueError(
                f"issuer_identity {identity!r}: the handle must be 0.NA/{node_prefix} "
                f"or {node_prefix}/<name>, a record this node keeps"
            )
        certificate = None
        if imported is not None:
            try:
                certificate = issue.check_imported(imported, identity=ref, key=key, now=now).jws
            except issue.IssueError as exc:
                raise issue.IssueError(f"issuer_cert_file {exc}") from None
        return cls(key, ref, certificate, cert_days, resign_on_change)


def new_signing_key(algorithm: str) -> SigningKey:
    """A fresh signing key of ``algorithm`` (RS256: RSA-2048; SM2256: SM2)."""
    if algorithm == "SM2256":
        return Sm2PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


@dataclass(frozen=True, slots=True)
class CertificateView:
    """An identity's published certificate, as the API shows it (never a private key)."""

    identity: str
    certificate: str
    claims: Claims
    key_held: bool
    """Whether the node holds the private key (and so can sign with it)."""


class Trust(RecordSigning):
    """Issuing certificates and signing records (see the module's description)."""

    def __init__(self, services: Services, handles: Handles, issuer: NodeIssuer | None) -> None:
        self.s = services
        self.handles = handles
        self.issuer = issuer
        self._keys: OrderedDict[bytes, SigningKey] = OrderedDict()
        if issuer is not None and issuer.resign_on_change:
            services.before_record_write = self.refresh

    @property
    def enabled(self) -> bool:
        return self.issuer is not None

    def _now(self) -> int:
        return int(self.s.now().timestamp())

    def _validity(self, issuer: NodeIssuer) -> Validity:
        return Validity.starting(self._now(), issuer.cert_days)

    # --- the node's own certificate ------------------------------------------

    async def publish_node_certificate(self) -> CertificateView:
        """Publish the node's certificate and public key on its identity record:
        the imported one, or a self-issued one — renewed when it certifies another
        key or has less than a tenth of its lifetime left. Idempotent."""
        issuer = self.require_issuer()
        identity = issuer.identity
        name = self.handles.parse(identity.handle)
        public = issue.jws_public_key(issuer.key)
        async with self.s.change(SYSTEM_ACTOR) as change:
            stored = await store.get_identifier(change.conn, name.key)
            current = {v.index: v for v in stored.values} if stored else {}
            _check_free(name, current, {issue.CERT_INDEX: HS_CERT, identity.index: "HS_PUBKEY"})
            placed: list[HandleValue] = []
            cert = current.get(issue.CERT_INDEX)
            if issuer.imported is not None:
                if cert is None or cert.data != issuer.imported.encode("ascii"):
                    placed.append(issue.cert_value(issuer.imported))
            elif not issue.certificate_current(
                cert,
                subject=identity,
                key=public,
                now=self._now(),
                renew_before=issuer.cert_days * 86400 // 10,
            ):
                jws = issue.certificate(
                    subject=identity,
                    subject_key=public,
                    issuer=identity,
                    issuer_key=issuer.key,
                    perms=issue.prefix_permissions(self.s.node_prefix),
                    validity=self._validity(issuer),
                )
                placed.append(issue.cert_value(jws))
            pubkey = issue.pubkey_value(identity.index, issuer.key)
            held = current.get(identity.index)
            if held is None or held.data != pubkey.data:
                placed.append(pubkey)
            if placed:
                values = issue.identity_values(
                    stored.values if stored else (), placed, timestamp=self._now()
                )
                await self._save(change, name, stored, values, prefix_id=None)
                await change.audit(
                    "trust.certified",
                    str(identity),
                    {"selfIssued": issuer.imported is None, "indexes": [v.index for v in placed]},
                )
        view = await self.node_certificate()
        assert view is not None
        return view

    async def node_certificate(self) -> CertificateView | None:
        issuer = self.require_issuer()
        return await self._view(issuer.identity, key_held=True)

    # --- enterprises -----------------------------------------------------------

    def new_enterprise_key(self) -> SigningKey | None:
        """A key for an enterprise about to be approved (None: the node issues nothing).
        Made before the approval's transaction: RSA key generation takes a while."""
        return new_signing_key(self.issuer.algorithm) if self.issuer is not None else None

    async def certify_enterprise(self, change: Change, prefix_text: str, key: SigningKey) -> str:
        """Inside ``change``: certify ``key`` as the signing key of ``prefix_text``
        (``401:0.NA/<prefix>``, perms over the prefix) and keep it sealed on the
        prefix record; a certificate already there is replaced (re-issue)."""
        issuer = self.require_issuer()
        subject = ValueRef(prefix_handle(prefix_text), SIGNER_KEY_INDEX)
        name = self.handles.parse(subject.handle)
        stored = await store.get_identifier(change.conn, name.key)
        current = {v.index: v for v in stored.values} if stored else {}
        _check_free(name, current, _ENTERPRISE_INDEXES)
        jws = issue.certificate(
            subject=subject,
            subject_key=issue.jws_public_key(key),
            issuer=issuer.identity,
            issuer_key=issuer.key,
            perms=issue.prefix_permissions(prefix_text),
            validity=self._validity(issuer),
        )
        sealed = seal_value(
            self.s.node_key, private_pem(key), name_key=name.key, index=SEALED_KEY_INDEX
        )
        placed = [
            issue.cert_value(jws),
            issue.pubkey_value(SIGNER_KEY_INDEX, key),
            HandleValue(SEALED_KEY_INDEX, SEALED_KEY_TYPE, sealed, permissions=PERM_RESTRICTED),
        ]
        values = issue.identity_values(
            stored.values if stored else (), placed, timestamp=int(change.now.timestamp())
        )
        await self._save(change, name, stored, values, prefix_id=None)
        await change.audit(
            "trust.certified",
            str(subject),
            {
                "issuer": str(issuer.identity),
                "perms": f"0.NA/{prefix_text}",
                "replaced": bool(current.get(issue.CERT_INDEX)),
            },
        )
        return jws

    async def reissue(
        self, actor: Actor, prefix_text: str, *, revoke: bool = False
    ) -> CertificateView:
        """A new certificate for an enterprise prefix, replacing the old one (node
        administrators). With a new key: signatures made with the old one no longer
        verify. ``revoke``: the new certificate grants nothing, and the node forgets
        the key — nothing signed with it is trusted any more."""
        principal = actor.require_admin()
        issuer = self.require_issuer()
        key = None if revoke else new_signing_key(issuer.algorithm)
        async with self.s.change(actor) as change:
            prefix = await managed_prefix(change.conn, principal, prefix_text)
            if key is not None:
                await self.certify_enterprise(change, prefix.prefix, key)
            else:
                await self._revoke(change, issuer, prefix.prefix)
        view = await self._view(
            ValueRef(prefix_handle(prefix.prefix), SIGNER_KEY_INDEX), key_held=None
        )
        assert view is not None
        return view

    async def _revoke(self, change: Change, issuer: NodeIssuer, prefix_text: str) -> None:
        subject = ValueRef(prefix_handle(prefix_text), SIGNER_KEY_INDEX)
        name = self.handles.parse(subject.handle)
        stored = await store.get_identifier(change.conn, name.key)
        current = {v.index: v for v in stored.values} if stored else {}
        old = (
            issue.read_certificate(current[issue.CERT_INDEX].data)
            if issue.CERT_INDEX in current
            else None
        )
        if stored is None or old is None or old.claims.public_key is None:
            raise NotFound(f"前缀{prefix_text}没有证书 (no certificate to revoke)")
        jws = issue.certificate(
            subject=subject,
            subject_key=old.claims.public_key,
            issuer=issuer.identity,
            issuer_key=issuer.key,
            perms=(),
            validity=self._validity(issuer),
        )
        kept = [v for v in stored.values if v.index not in (SIGNER_KEY_INDEX, SEALED_KEY_INDEX)]
        values = issue.identity_values(
            kept, [issue.cert_value(jws)], timestamp=int(change.now.timestamp())
        )
        await self._save(change, name, stored, values, prefix_id=None)
        await change.audit("trust.revoked", str(subject), {"issuer": str(issuer.identity)})

    async def certificate_of(self, actor: Actor, prefix_text: str) -> CertificateView:
        """The certificate of an enterprise prefix (its managers and node administrators)."""
        principal = actor.require()
        async with self.s.read() as conn:
            prefix = await managed_prefix(conn, principal, prefix_text)
        view = await self._view(
            ValueRef(prefix_handle(prefix.prefix), SIGNER_KEY_INDEX), key_held=None
        )
        if view is None:
            raise NotFound(f"前缀{prefix.prefix}没有证书 (no certificate issued)")
        return view

    async def _view(self, identity: ValueRef, *, key_held: bool | None) -> CertificateView | None:
        name = self.handles.parse(identity.handle)
        async with self.s.read() as conn:
            stored = await store.get_identifier(conn, name.key)
        current = {v.index: v for v in stored.values} if stored else {}
        cert = current.get(issue.CERT_INDEX)
        found = issue.read_certificate(cert.data) if cert is not None else None
        if found is None:
            return None
        held = key_held if key_held is not None else SEALED_KEY_INDEX in current
        return CertificateView(str(identity), found.jws, found.claims, held)

    # --- writing identity records ------------------------------------------------

    async def _save(
        self,
        change: Change,
        name: HandleName,
        stored: Identifier | None,
        values: list[HandleValue],
        *,
        prefix_id: int | None,
    ) -> None:
        await write_record(
            self.s,
            change,
            name,
            stored,
            values,
            prefix_id=prefix_id,
            template_id=stored.template_id if stored else None,
            template_version=None,
            action="identifier.updated" if stored else "identifier.created",
        )


_ENTERPRISE_INDEXES = {
    issue.CERT_INDEX: HS_CERT,
    SIGNER_KEY_INDEX: "HS_PUBKEY",
    SEALED_KEY_INDEX: SEALED_KEY_TYPE,
}


def _check_free(name: HandleName, current: dict[int, HandleValue], wanted: dict[int, str]) -> None:
    """InvalidValue when an index the trust values go to holds a value of another type."""
    for index, kind in wanted.items():
        held = current.get(index)
        if held is not None and held.type.upper() != kind.upper():
            raise InvalidValue(
                f"index {index} of {name.text} holds a {held.type} value, where its {kind} goes; "
                "move or remove it first"
            )
