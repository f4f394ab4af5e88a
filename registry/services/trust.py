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
- A record's signature is the ``HS_SIGNATURE`` at the lowest free index from 400.

Every write goes through :meth:`Services.change`: the record, its audit entry
and its outbox event commit together. Private keys appear in no answer, audit
entry or log line.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import store
from ..crypto import CryptoError, Sm2PrivateKey
from ..crypto.keys import load_private_key, private_pem
from ..errors import (
    Forbidden,
    InvalidRequest,
    InvalidValue,
    NotFound,
    NotServedHere,
    RegistryError,
    Unauthenticated,
)
from ..grammar import HandleName, LimitExceeded, check_value_count, is_under, prefix_handle
from ..models import PERM_RESTRICTED, Enterprise, HandleValue, Identifier, Prefix
from ..records import Directory, Located, StoreDirectory, Where, locate
from ..secrets import open_value, seal_value
from ..trust import issue
from ..trust.chain import HS_CERT
from ..trust.claims import Claims, ValueRef
from ..trust.issue import SigningKey, Validity
from ..values import ADD_VALUE, MODIFY_VALUE, REMOVE_VALUE
from .base import SYSTEM_ACTOR, Actor, Change, Services, managed_prefix
from .handles import Handles
from .identifiers import record_payload, write_record

log = logging.getLogger("idnode.trust")

SIGNER_KEY_INDEX = 401
"""An enterprise's signing key is ``401:0.NA/<prefix>``: its ``HS_PUBKEY`` sits here."""
SEALED_KEY_INDEX = 402
"""An enterprise's private signing key, sealed, on its prefix record."""
SEALED_KEY_TYPE = "IDNODE_SIGNING_KEY"
MAX_SIGN_BATCH = 500
"""Handles one signing call may name: about half a second of RSA signing."""
RSA_BITS = 2048
SIGN_WITH_ENTERPRISE = "enterprise"
SIGN_WITH_NODE = "node"
SIGNERS = (SIGN_WITH_ENTERPRISE, SIGN_WITH_NODE)
_KEY_CACHE = 1024
"""Opened enterprise keys kept in memory (opening and loading one costs more than a signature)."""


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


@dataclass(frozen=True, slots=True)
class SignResult:
    handle: str
    ok: bool
    message: str
    index: int | None = None
    """Where the new ``HS_SIGNATURE`` went."""
    issuer: str | None = None
    error: RegistryError | None = None
    """Why it was refused (each front end words it in its own codes)."""


@dataclass(frozen=True, slots=True)
class _Signed:
    """A record signed, to be written."""

    stored: Identifier
    values: list[HandleValue]
    version: str | None
    """Its template version, as the top-level node is sent it."""
    result: SignResult


class Trust:
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

    def require_issuer(self) -> NodeIssuer:
        if self.issuer is None:
            raise InvalidRequest(
                "本节点未配置签名密钥 (this node issues nothing: issuer_key_file is not set)"
            )
        return self.issuer

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

    # --- signing records ---------------------------------------------------------

    async def sign(self, actor: Actor, name_text: str, *, signer: str | None = None) -> SignResult:
        """Sign one record; errors are raised (nothing written)."""
        self.require_issuer()
        _check_signer(signer)
        async with self.s.change(actor) as change:
            signed = await self._prepare(change, name_text, signer)
            await self._write(change, [signed])
        return signed.result

    async def sign_many(
        self, actor: Actor, names: Sequence[str], *, signer: str | None = None
    ) -> list[SignResult]:
        """Sign up to :data:`MAX_SIGN_BATCH` records in one transaction, each on its
        own: a record that cannot be signed is reported and left untouched (every
        refusal comes before its first write), the others are signed. A failure of
        the database itself fails the call whole: nothing is written."""
        self.require_issuer()
        _check_signer(signer)
        if not names:
            raise InvalidRequest("缺少必要的请求参数: handles")
        if len(names) > MAX_SIGN_BATCH:
            raise InvalidRequest(
                f"批量签名不能超过{MAX_SIGN_BATCH}条 (at most {MAX_SIGN_BATCH} handles a call)"
            )
        results: list[SignResult] = []
        async with self.s.change(actor) as change:
            directory = _TransactionDirectory(change.conn)
            prepared: dict[int, _Signed] = {}
            for name_text in names:
                try:
                    signed = await self._prepare(change, name_text, signer, directory)
                except RegistryError as exc:
                    results.append(SignResult(str(name_text), False, str(exc), error=exc))
                    continue
                # A handle named twice is signed once.
                signed = prepared.setdefault(signed.stored.id, signed)
                results.append(replace(signed.result, handle=name_text))
            await self._write(change, list(prepared.values()))
        return results

    async def _prepare(
        self,
        change: Change,
        name_text: str,
        signer: str | None,
        directory: Directory | None = None,
    ) -> _Signed:
        """A record and its values signed, inside ``change``, not yet written: every
        refusal is raised here, before anything is."""
        if not isinstance(name_text, str) or not name_text:
            raise InvalidRequest("handle 应为非空字符串 (a handle is a non-empty string)")
        name = self.handles.parse(name_text)
        if name.is_prefix_handle:
            raise InvalidValue(
                f"{name.text} is a prefix record, kept by the node: only identifiers are signed"
            )
        located = await locate(
            change.conn,
            name,
            node_prefix=self.s.node_prefix,
            site=self.s.site,
            directory=directory,
            site_sm2_key=self.s.site_sm2_key,
        )
        if located.where is not Where.HERE:
            raise NotServedHere(f"handle {name.text} is not kept by this node")
        if located.prefix is not None and not located.prefix.writable:
            raise Forbidden(f"prefix {located.prefix.prefix} is not enabled and hosted here")
        stored = located.record
        if stored is None:
            raise NotFound(f"handle {name.text} not found")
        needed = ADD_VALUE | (
            MODIFY_VALUE | REMOVE_VALUE if issue.signature_index(stored.values) is not None else 0
        )
        await self._require_rights(change, located, needed)
        issuer_ref, key = await self._signer_for(change, located, signer)
        values = self._with_fresh_signature(stored.name, stored.values, issuer_ref, key, change)
        try:
            check_value_count(len(values))
        except LimitExceeded as exc:
            raise InvalidValue(str(exc)) from None
        version = await self._template_version(change, stored)
        result = SignResult(
            name_text, True, "success", issue.signature_index(values), str(issuer_ref)
        )
        return _Signed(stored, values, version, result)

    async def _write(self, change: Change, signed: Sequence[_Signed]) -> None:
        """The signed records, their audit entries and outbox events: a few statements
        for a whole batch."""
        if not signed:
            return
        await store.replace_values_of_many(change.conn, [(s.stored, s.values) for s in signed])
        await change.record_many(
            [
                store.Entry(
                    "identifier.updated",
                    s.stored.name,
                    record_payload(s.stored.name, s.version, s.values),
                    {"indexes": [v.index for v in s.values], "signedBy": s.result.issuer},
                )
                for s in signed
            ]
        )

    async def _require_rights(self, change: Change, located: Located, bits: int) -> None:
        actor = change.actor
        if actor.anonymous:
            raise Unauthenticated("authentication required")
        held = await self.handles.rights(change.conn, actor, located)
        if held & bits != bits:
            raise Forbidden(f"没有权限 (not allowed to sign {located.name.text})")

    async def _signer_for(
        self, change: Change, located: Located, signer: str | None
    ) -> tuple[ValueRef, SigningKey]:
        """The key a record is signed with: the enterprise's own when it has one,
        else the node's; ``node`` (node administrators) or ``enterprise`` to insist."""
        issuer = self.require_issuer()
        node_signer = (issuer.identity, issuer.key)
        if signer == SIGN_WITH_NODE:
            if not self.handles.is_node_admin(change.actor):
                raise Forbidden(
                    "只有节点管理员可以用节点密钥签名 (the node's key is for node administrators)"
                )
            return node_signer
        prefix = located.prefix
        if prefix is None:
            if signer == SIGN_WITH_ENTERPRISE:
                raise InvalidRequest(f"{located.name.text} belongs to no enterprise")
            return node_signer
        key = await self.enterprise_key(change, prefix.prefix)
        if key is None:
            if signer == SIGN_WITH_ENTERPRISE:
                raise InvalidRequest(
                    f"前缀{prefix.prefix}没有签名密钥 (no enterprise key: ask a node administrator "
                    "to issue the prefix a certificate)"
                )
            return node_signer
        return ValueRef(prefix_handle(prefix.prefix), SIGNER_KEY_INDEX), key

    async def enterprise_key(self, change: Change, prefix_text: str) -> SigningKey | None:
        """The enterprise's signing key the node keeps, opened (None: none held)."""
        name = self.handles.parse(prefix_handle(prefix_text))
        stored = await change.lookup(
            ("trust-identity", name.key), lambda: store.get_identifier(change.conn, name.key)
        )
        sealed = next(
            (v.data for v in (stored.values if stored else ()) if v.index == SEALED_KEY_INDEX),
            None,
        )
        if sealed is None:
            return None
        cached = self._keys.get(sealed)
        if cached is not None:
            self._keys.move_to_end(sealed)
            return cached
        clear = open_value(self.s.node_key, sealed, name_key=name.key, index=SEALED_KEY_INDEX)
        if clear is None or clear == sealed:
            log.warning("the sealed signing key of %s does not open with this node key", name.text)
            return None
        try:
            loaded = load_private_key(clear)
        except CryptoError:
            log.warning("the sealed signing key of %s is not a key", name.text)
            return None
        if not isinstance(loaded, rsa.RSAPrivateKey | Sm2PrivateKey):
            return None
        self._keys[sealed] = loaded
        while len(self._keys) > _KEY_CACHE:
            self._keys.popitem(last=False)
        return loaded

    def _with_fresh_signature(
        self,
        handle: str,
        values: Sequence[HandleValue],
        issuer_ref: ValueRef,
        key: SigningKey,
        change: Change,
    ) -> list[HandleValue]:
        issuer = self.require_issuer()
        now = int(change.now.timestamp())
        jws = issue.signature(
            handle,
            values,
            issuer=issuer_ref,
            key=key,
            validity=Validity.starting(now, issuer.cert_days),
        )
        return issue.with_signature(values, jws, timestamp=now)

    async def _template_version(self, change: Change, stored: Identifier) -> str | None:
        template_id = stored.template_id
        if template_id is None:
            return None
        template = await change.lookup(
            ("template-by-id", template_id),
            lambda: store.get_template_by_id(change.conn, template_id),
        )
        return template.version if template is not None else None

    # --- re-signing on change ------------------------------------------------------

    async def refresh(
        self, change: Change, record_name: str, values: Sequence[HandleValue]
    ) -> list[HandleValue]:
        """The values a changed record is stored with: re-signed, in the writing
        transaction, when a signature this node made (with its own key or with the
        record's enterprise's) no longer matches them."""
        issuer = self.issuer
        if issuer is None or not any(issue.is_signature(v) for v in values):
            return list(values)
        name = self.handles.parse(record_name)
        node_iss = str(issuer.identity)

        def ours(iss: str) -> bool:
            return iss == node_iss or _enterprise_of(iss, name) is not None

        stale = issue.stale_signer(values, ours)
        if stale is None:
            return list(values)
        if stale == node_iss:
            return self._with_fresh_signature(
                name.text, values, issuer.identity, issuer.key, change
            )
        prefix_text = _enterprise_of(stale, name)
        assert prefix_text is not None
        key = await self.enterprise_key(change, prefix_text)
        if key is None:
            log.warning(
                "%s changed, but its signer's key is gone: its signature is stale", name.text
            )
            return list(values)
        signer = ValueRef(prefix_handle(prefix_text), SIGNER_KEY_INDEX)
        return self._with_fresh_signature(name.text, values, signer, key, change)

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


class _TransactionDirectory:
    """Prefixes and enterprises read once per signing call: its records share them,
    and the call changes neither (a :class:`registry.records.Directory`)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._store = StoreDirectory(conn)
        self._prefixes: dict[str, Prefix | None] = {}
        self._enterprises: dict[int, Enterprise | None] = {}

    async def prefix(self, key: str) -> Prefix | None:
        if key not in self._prefixes:
            self._prefixes[key] = await self._store.prefix(key)
        return self._prefixes[key]

    async def enterprise(self, enterprise_id: int) -> Enterprise | None:
        if enterprise_id not in self._enterprises:
            self._enterprises[enterprise_id] = await self._store.enterprise(enterprise_id)
        return self._enterprises[enterprise_id]

    async def foreign(self, key: str) -> store.ForeignRoute | None:
        return await self._store.foreign(key)


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


def _check_signer(signer: str | None) -> None:
    if signer is not None and signer not in SIGNERS:
        raise InvalidRequest(f"signer 应为 {' 或 '.join(SIGNERS)} (got {signer!r})")


def _enterprise_of(iss: str, name: HandleName) -> str | None:
    """The enterprise prefix whose node-kept key ``iss`` names, when that key may
    sign ``name`` (its prefix or one derived from it); None otherwise."""
    ref = ValueRef.parse(iss)
    head, sep, prefix_text = ref.handle.partition("/")
    if ref.index != SIGNER_KEY_INDEX or not sep or head.upper() != "0.NA":
        return None
    if name.is_prefix_handle or not is_under(name.handled_prefix, prefix_text):
        return None
    return prefix_text
