"""Signing records: ``HS_SIGNATURE`` values made with an enterprise's key or the
node's, one record or a batch at a time, and again in the writing transaction
whenever a signed record changes (:class:`RecordSigning`, part of
:class:`registry.services.trust.Trust`, which holds the keys and certificates).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import store
from ..crypto import CryptoError, Sm2PrivateKey
from ..crypto.keys import load_private_key
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
from ..models import Enterprise, HandleValue, Identifier, Prefix
from ..records import Directory, Located, StoreDirectory, Where, locate
from ..secrets import open_value
from ..trust import issue
from ..trust.claims import ValueRef
from ..trust.issue import SigningKey, Validity
from ..values import ADD_VALUE, MODIFY_VALUE, REMOVE_VALUE
from .base import Actor, Change, Services
from .handles import Handles
from .identifiers import record_payload

if TYPE_CHECKING:
    from .trust import NodeIssuer

log = logging.getLogger("idnode.trust")

SIGNER_KEY_INDEX = 401
"""An enterprise's signing key is ``401:0.NA/<prefix>``: its ``HS_PUBKEY`` sits here."""
SEALED_KEY_INDEX = 402
"""An enterprise's private signing key, sealed, on its prefix record."""
MAX_SIGN_BATCH = 500
"""Handles one signing call may name: about half a second of RSA signing."""
SIGN_WITH_ENTERPRISE = "enterprise"
SIGN_WITH_NODE = "node"
SIGNERS = (SIGN_WITH_ENTERPRISE, SIGN_WITH_NODE)
_KEY_CACHE = 1024
"""Opened enterprise keys kept in memory (opening and loading one costs more than a signature)."""


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


class RecordSigning:
    """Signing records, for :class:`registry.services.trust.Trust`."""

    s: Services
    handles: Handles
    issuer: NodeIssuer | None
    _keys: OrderedDict[bytes, SigningKey]

    def require_issuer(self) -> NodeIssuer:
        if self.issuer is None:
            raise InvalidRequest(
                "本节点未配置签名密钥 (this node issues nothing: issuer_key_file is not set)"
            )
        return self.issuer

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
