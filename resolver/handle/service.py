"""Answering native-protocol requests, independent of UDP or TCP.

The servers hand over request bytes and get response bytes back. Anonymous
resolutions take a fast path: the whole response, encoded once, is kept in
the engine's answer cache and only the request id, session id, expiration
and request digest are patched in — no decode, no encode. Everything else
is decoded with the codec, answered through the engine or the registry's
Handle operations, and encoded again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from metrics.instruments import RATE_LIMITED
from metrics.tally import NO_PREFIX, TALLY
from registry import store
from registry.errors import InvalidName, LockedOut, RegistryError
from registry.grammar import GrammarError
from registry.models import HandleValue
from registry.permissions import HandleIdentity
from registry.secrets import open_value
from registry.services import Actor, Registry
from registry.values import (
    HS_PUBKEY,
    HS_SECKEY,
)

from .. import codes as rc
from ..engine import Engine, Query, Resolution, Status
from ..limits import Guard, Limit
from ..recursion import RecursionBusy
from . import answers
from . import codec as c
from .proofs import (
    PrivateKey,
    challenge_message,
    sign_response,
    verify_public_key_proof,
    verify_secret_key_proof,
)

log = logging.getLogger("idnode.handle")

CHALLENGE_SECONDS = 60.0
NOT_HERE_MESSAGE = b"That naming authority doesn't live here"
RC_RELOGIN = 407
RC_LOGIN_FIRST = 408
RC_AUTHEN_TIMEOUT = 405
MAX_RECURSION = 10
_FAST_CACHE_LIMIT = 100_000
MAX_PENDING = 10_000
"""Challenges awaiting an answer, all connections together."""
MAX_PENDING_PER_CONNECTION = 8
SLOW_PROOF_THREADS = 2
MAX_SLOW_PROOFS_WAITING = 32
"""PBKDF2 proofs run off the event loop, a few at a time; beyond this queue, RC 3."""
LIST_MESSAGE_BYTES = 60_000
"""List answers longer than this go out as several messages, CN set on all but the last."""

# Byte offsets in a message (envelope 20, header 24).
_SESSION = slice(4, 8)
_REQUEST_ID = slice(8, 12)
_SEQUENCE = slice(12, 16)
_EXPIRATION = slice(36, 40)
_HEADER_FLAGS = slice(28, 32)
_BODY = 44


@dataclass
class Connection:
    """What one TCP connection has proven (UDP requests have no such state)."""

    tcp: bool
    remote: str = ""
    identity: HandleIdentity | None = None
    login_attempted: bool = False
    challenges: int = 0
    """Challenges issued on this connection and not yet answered or expired."""


@dataclass
class _Pending:
    """An admin request waiting for the answer to its challenge."""

    request: c.Message
    nonce: bytes
    digest: bytes
    expires: float
    connection: Connection
    login: bool = False


@dataclass
class _Template:
    """A cached response (one datagram or more), to be patched per request."""

    parts: list[bytes]
    code: int = rc.RC_SUCCESS
    digest_at: int | None = None
    """Offset of the request digest in the first part (RD requests), if any."""
    digest_code: int = 0
    outcome: str = "found"
    prefix: str = NO_PREFIX
    """How the answer counts (metrics.tally): outcome, and the enterprise's prefix."""


@dataclass
class HandleService:
    engine: Engine
    registry: Registry
    site_serial: int = 1
    server_key: PrivateKey | None = None
    site_bytes: Callable[[], bytes | None] = lambda: None
    clock: Callable[[], float] = time.time
    _pending: dict[int, _Pending] = field(default_factory=dict)
    """By session id, in the order issued (so also in the order they expire)."""
    _shapes: dict[bytes, str] = field(default_factory=dict)
    _slow_proofs: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(SLOW_PROOF_THREADS)
    )
    _slow_proofs_waiting: int = 0
    """Request shape → name key, learned on the slow path, for the fast path."""
    guard: Guard | None = None
    """Per-client limits (resolver.limits); None: none."""
    udp_amplification: int = 8
    """A UDP answer may be at most this many times its request's size; 0: any size."""

    # --- entry point ----------------------------------------------------------

    def fast(self, data: bytes, *, udp: bool) -> list[bytes] | None:
        """The cached answer to an anonymous resolution, patched; None on a miss."""
        started = time.perf_counter()
        if len(data) < _BODY + 4:
            return None
        shape = _shape(data, udp)
        if shape is None:
            return None
        key = self._shapes.get(shape)
        if key is None:
            return None
        template: _Template | None = self.engine.cache.get(key, shape)
        if template is None:
            return None
        parts = _patch(template, data, int(self.clock()) + answers.EXPIRATION_SECONDS)
        if udp and self._too_large(data, parts):
            return self._ask_over_tcp(data)
        protocol = "handle_udp" if udp else "handle_tcp"
        TALLY.count(protocol, template.outcome, template.prefix, time.perf_counter() - started)
        return parts

    def refuse(self, data: bytes, remote: str, *, udp: bool) -> list[bytes] | None:
        """RC 3 (too busy) to a client over its rate, IDIS 603 over its daily
        requests; the answer is no larger than a short error, whatever was asked."""
        if self.guard is None:
            return None
        refusal = self.guard.client(remote)
        if refusal is None:
            return None
        protocol = "handle_udp" if udp else "handle_tcp"
        RATE_LIMITED.labels(protocol, "refused").inc()
        daily = refusal.limit is Limit.DAILY
        try:
            answer = self._error_for(
                data,
                rc.RC_REQUEST_LIMIT_DAILY if daily else rc.RC_SERVER_TOO_BUSY,
                f"{'daily request limit' if daily else 'too many requests'}; "
                f"retry in {refusal.retry_after_header} s",
            )
        except c.CodecError as exc:
            return answers.garbage(
                data, str(exc), udp=udp, site_serial=self.site_serial, now=self.clock()
            )
        return c.fragments(answer.to_bytes()) if udp else [answer.to_bytes()]

    def _error_for(self, data: bytes, code: int, text: str) -> c.Message:
        """An error answering the request in ``data`` (CodecError: it is no message)."""
        request = c.Message.from_bytes(data)
        return self._error(request, answers.answer_version(request.envelope), code, text)

    def _too_large(self, request: bytes, answer: list[bytes]) -> bool:
        """Whether a UDP answer would be more than ``udp_amplification`` times its
        request: a spoofed request must not buy its victim a flood."""
        if not self.udp_amplification:
            return False
        if sum(len(part) for part in answer) <= self.udp_amplification * len(request):
            return False
        RATE_LIMITED.labels("handle_udp", "truncated").inc()
        return True

    def _ask_over_tcp(self, request: bytes) -> list[bytes]:
        """RC 2 in one small datagram, instead of an answer too large for UDP: what
        makes HANDLE.NET's resolver ask the same server again over TCP at once
        (RC 3 it takes as final; silence costs it seconds). Not a resolution yet:
        not counted as one."""
        try:
            error = self._error_for(request, rc.RC_ERROR, "answer too large for UDP: ask over TCP")
        except c.CodecError:
            return []
        return [error.to_bytes()]

    async def handle(self, data: bytes, connection: Connection) -> list[bytes]:
        """Answer one request; UDP answers come as datagrams, TCP as one message."""
        started = time.perf_counter()
        udp = not connection.tcp
        protocol = "handle_udp" if udp else "handle_tcp"
        try:
            request = c.Message.from_bytes(data)
        except c.CodecError as exc:
            TALLY.count(protocol, "error", NO_PREFIX, time.perf_counter() - started)
            return answers.garbage(
                data, str(exc), udp=udp, site_serial=self.site_serial, now=self.clock()
            )
        if request.is_response:
            return []  # nothing asked
        version = answers.answer_version(request.envelope)
        resolution = request.opcode == c.OC_RESOLUTION
        prefix = NO_PREFIX
        answer: c.Message | list[c.Message] | _Template
        try:
            if resolution:
                answer, prefix = await self._resolve(request, version, connection)
            else:
                answer = await self._dispatch(request, version, connection)
        except RegistryError as exc:
            answer = self._error(request, version, rc.rc_of(exc), str(exc))
        except c.CodecError as exc:
            answer = self._error(request, version, rc.RC_PROTOCOL_ERROR, str(exc))
        except (DBAPIError, PoolTimeout, OSError) as exc:
            log.error("storage unavailable for op %s: %s", request.opcode, exc)
            answer = self._error(request, version, rc.RC_SERVER_TOO_BUSY, "storage unavailable")
        except (_Busy, RecursionBusy) as exc:
            answer = self._error(request, version, rc.RC_SERVER_TOO_BUSY, str(exc))
        if isinstance(answer, _Template):
            parts = _patch(answer, data, int(self.clock()) + answers.EXPIRATION_SECONDS)
            if udp and self._too_large(data, parts):
                return self._ask_over_tcp(data)
            TALLY.count(protocol, answer.outcome, answer.prefix, time.perf_counter() - started)
            return parts
        messages = answer if isinstance(answer, list) else [answer]
        # Over UDP only successes are signed: a signed error would let a spoofed
        # datagram buy an RSA signature and a reply nine times its size.
        if request.flag(c.FLAG_CERT) and self.server_key is not None:
            messages = [
                sign_response(m, self.server_key)
                if not udp or m.header.response_code == rc.RC_SUCCESS
                else m
                for m in messages
            ]
        if udp:
            parts = c.fragments(messages[0].to_bytes())  # lists are TCP-only
            if self._too_large(data, parts):
                return self._ask_over_tcp(data)
        else:
            parts = [m.to_bytes() for m in messages]
        if resolution:
            outcome = rc.outcome_of(messages[0].header.response_code)
            TALLY.count(protocol, outcome, prefix, time.perf_counter() - started)
        return parts

    # --- building answers -----------------------------------------------------

    def _response(
        self,
        request: c.Message,
        version: tuple[int, int],
        code: int,
        body: bytes = b"",
        *,
        flags: int = 0,
        session_id: int | None = None,
        digest: bool | None = None,
    ) -> c.Message:
        return answers.response(
            request,
            version,
            code,
            body,
            site_serial=self.site_serial,
            now=self.clock(),
            flags=flags,
            session_id=session_id,
            digest=digest,
        )

    def _error(
        self, request: c.Message, version: tuple[int, int], code: int, text: str = ""
    ) -> c.Message:
        return answers.error(
            request, version, code, text, site_serial=self.site_serial, now=self.clock()
        )

    # --- dispatch ---------------------------------------------------------------

    async def _dispatch(
        self, request: c.Message, version: tuple[int, int], connection: Connection
    ) -> c.Message | list[c.Message] | _Template:
        op = request.opcode
        if op == c.OC_GET_SITE_INFO:
            return self._site_info(request, version)
        if op == c.OC_CHALLENGE_RESPONSE:
            return await self._challenge_answer(request, version, connection)
        if op == c.OC_VERIFY_CHALLENGE:
            return await self._verify_challenge(request, version)
        if op == c.OC_LOGIN_ID_SYSTEM:
            return await self._login(request, version, connection)
        if op in c.ADMIN_OPCODES:
            if not connection.tcp:
                return self._error(
                    request,
                    version,
                    rc.RC_PROTOCOL_ERROR,
                    "administration needs TCP: UDP is query-only here",
                )
            if connection.identity is None:
                if connection.login_attempted:
                    return self._error(request, version, RC_LOGIN_FIRST, "please log in first")
                return self._challenge(request, version, connection)
            return await self._administer(request, version, connection)
        return self._error(
            request, version, rc.RC_OPERATION_NOT_SUPPORTED, f"operation {op} is not supported"
        )

    # --- resolution -------------------------------------------------------------

    async def _resolve(
        self, request: c.Message, version: tuple[int, int], connection: Connection
    ) -> tuple[c.Message | _Template, str]:
        """The answer, and the enterprise prefix it counts for."""
        body = c.ResolutionRequest.from_bytes(request.body)
        try:
            name = self.engine.parse(body.handle)
        except InvalidName as exc:
            return self._error(request, version, rc.RC_INVALID_HANDLE, str(exc)), NO_PREFIX
        try:
            types = tuple(t.decode("utf-8") for t in body.types)
        except UnicodeDecodeError:
            error = self._error(request, version, rc.RC_PROTOCOL_ERROR, "type is not UTF-8")
            return error, NO_PREFIX
        query = Query(indexes=body.indexes, types=types)
        # Recursion when the client asks (REC) and the node allows it, within the
        # hop limit; past it a referral becomes RC 6 (recursion count too high).
        asked = request.flag(c.FLAG_RECU) and self.engine.recursion is not None
        depth = request.header.recursion
        recurse = asked and depth + 1 < MAX_RECURSION
        identity = None if request.flag(c.FLAG_PUBL) else connection.identity
        if identity is not None:
            caller = Actor(None, connection.remote, identity)
            resolution = await self.engine.resolve(
                name, query, caller, recurse=recurse, depth=depth
            )
            message = self._resolution_message(request, version, resolution, asked=asked)
            return message, resolution.account_prefix
        cacheable = not request.credential and not request.flag(c.FLAG_CERT)
        shape = _shape(request.to_bytes(), not connection.tcp) if cacheable else None
        if shape is None:
            resolution = await self.engine.resolve(name, query, recurse=recurse, depth=depth)
            message = self._resolution_message(request, version, resolution, asked=asked)
            return message, resolution.account_prefix

        def encode(resolution: Resolution) -> _Template:
            return self._template(request, version, resolution, udp=not connection.tcp, asked=asked)

        # The shape holds the flags and the recursion count: recursed answers,
        # referrals and RC 6 have slots of their own.
        template = await self.engine.answer_slot(
            name, query, shape, encode, recurse=recurse, depth=depth
        )
        if template.outcome in ("found", "referral"):
            # Misses are cached only briefly: a map entry per made-up name would
            # outlive them, so they take the slow path (still a cache hit).
            if len(self._shapes) >= _FAST_CACHE_LIMIT:
                self._shapes.clear()
            self._shapes[shape] = name.key
        return template, template.prefix

    def _resolution_message(
        self,
        request: c.Message,
        version: tuple[int, int],
        resolution: Resolution,
        *,
        asked: bool = False,
    ) -> c.Message:
        """``asked``: the client asked for recursion and the node allows it."""
        status = resolution.status
        handle = resolution.name.text.encode("utf-8")
        if status is Status.FOUND:
            return self._response(
                request,
                version,
                rc.RC_SUCCESS,
                c.HandleValues(handle, resolution.values).to_bytes(),
            )
        if status is Status.NOT_FOUND:
            return self._error(request, version, rc.RC_HANDLE_NOT_FOUND)
        if status is Status.VALUES_NOT_FOUND:
            return self._error(request, version, rc.RC_VALUES_NOT_FOUND)
        if status is Status.REFERRAL and asked:
            return self._error(
                request, version, rc.RC_RECURSION_COUNT_TOO_HIGH, "recursion count too high"
            )
        if status is Status.UNREACHABLE:
            return self._error(
                request, version, rc.RC_SERVER_NOT_RESP, "the node serving this name did not answer"
            )
        if status is Status.REFERRAL and not request.flag(c.FLAG_DNRF):
            code = (
                rc.RC_PREFIX_REFERRAL
                if resolution.name.is_prefix_handle
                else rc.RC_SERVICE_REFERRAL
            )
            referral = c.HandleValues(
                resolution.referral_handle.encode("utf-8"), resolution.referral
            )
            return self._response(request, version, code, referral.to_bytes())
        return self._response(
            request, version, rc.RC_SERVER_NOT_RESP, c.ErrorMessage(NOT_HERE_MESSAGE).to_bytes()
        )

    def _template(
        self,
        request: c.Message,
        version: tuple[int, int],
        resolution: Resolution,
        *,
        udp: bool,
        asked: bool = False,
    ) -> _Template:
        message = self._resolution_message(request, version, resolution, asked=asked)
        encoded = message.to_bytes()
        parts = c.fragments(encoded) if udp else [encoded]
        code = message.header.response_code
        digest_at, digest_code = None, 0
        if request.flag(c.FLAG_RRDG):
            digest_at, digest_code = _BODY + 1, c.digest_code_for(version)
        outcome, prefix = rc.outcome_of(code), resolution.account_prefix
        return _Template(parts, code, digest_at, digest_code, outcome, prefix)

    def _site_info(self, request: c.Message, version: tuple[int, int]) -> c.Message:
        site = self.site_bytes()
        if site is None:
            return self._error(
                request, version, rc.RC_OPERATION_NOT_SUPPORTED, "no site information"
            )
        return self._response(request, version, rc.RC_SUCCESS, site)

    # --- authentication ---------------------------------------------------------

    def _challenge(
        self,
        request: c.Message,
        version: tuple[int, int],
        connection: Connection,
        *,
        login: bool = False,
    ) -> c.Message:
        """RC 402: a nonce under a new session id; the request waits for the answer."""
        self._expire_pending()
        if connection.challenges >= MAX_PENDING_PER_CONNECTION or len(self._pending) >= MAX_PENDING:
            raise _Busy("too many challenges awaiting an answer")
        session = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF or 1
        while session in self._pending:
            session = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF or 1
        connection.challenges += 1
        nonce = os.urandom(c.NONCE_SIZE)
        digest = c.request_digest(request, version)
        self._pending[session] = _Pending(
            request,
            nonce,
            digest[1:],
            time.monotonic() + CHALLENGE_SECONDS,
            connection,
            login=login,
        )
        return self._response(
            request,
            version,
            rc.RC_AUTHENTICATION_NEEDED,
            c.Challenge(nonce).to_bytes(),
            session_id=session,
            digest=True,
        )

    def _expire_pending(self) -> None:
        now = time.monotonic()
        while self._pending:
            session, pending = next(iter(self._pending.items()))
            if pending.expires >= now:
                break  # the rest were issued later
            self._drop_pending(session)

    def _drop_pending(self, session: int) -> _Pending:
        pending = self._pending.pop(session)
        pending.connection.challenges -= 1
        return pending

    def forget(self, connection: Connection) -> None:
        """The connection is gone: so are the challenges it was given."""
        if connection.challenges:
            for session in [s for s, p in self._pending.items() if p.connection is connection]:
                self._drop_pending(session)

    async def _login(
        self, request: c.Message, version: tuple[int, int], connection: Connection
    ) -> c.Message:
        if not connection.tcp:
            return self._error(request, version, rc.RC_PROTOCOL_ERROR, "log in over TCP")
        c.Login.from_bytes(request.body)  # malformed bodies are protocol errors
        if connection.identity is not None:
            return self._error(
                request, version, RC_RELOGIN, f"already logged in as {connection.identity}"
            )
        connection.login_attempted = True
        return self._challenge(request, version, connection, login=True)

    async def _challenge_answer(
        self, request: c.Message, version: tuple[int, int], connection: Connection
    ) -> c.Message | list[c.Message]:
        session = request.envelope.session_id
        pending = self._pending.get(session)
        if pending is not None and pending.connection is connection:
            self._drop_pending(session)  # one answer per challenge, right or wrong
        else:
            pending = None  # another connection's challenge is none of this one's business
        if pending is None or pending.expires < time.monotonic():
            return self._error(
                request,
                version,
                RC_AUTHEN_TIMEOUT,
                "no challenge pending for this session (expired?)",
            )
        answer = c.ChallengeAnswer.from_bytes(request.body)
        original = pending.request
        # The answer to the original request goes out under the op-200 request id.
        original = replace(
            original, envelope=replace(original.envelope, request_id=request.envelope.request_id)
        )
        lockout = self.registry.services.lockout
        account = self._account(answer)
        try:
            self.registry.services.refuse_if_locked(account, connection.remote, "proof")
        except LockedOut as exc:
            return self._error(original, version, rc.RC_AUTHENTICATION_FAILED, str(exc))
        identity = await self._check_proof(answer, pending)
        if identity is None:
            self.registry.services.auth_failed("proof")
            lockout.failed(account, connection.remote)
            return self._error(
                original, version, rc.RC_AUTHENTICATION_FAILED, "authentication failed"
            )
        lockout.succeeded(account)
        connection.identity = identity
        if pending.login:
            return self._response(original, version, rc.RC_SUCCESS)
        answered = await self._administer(original, version, connection)
        return answered

    def _account(self, answer: c.ChallengeAnswer) -> str:
        """The lockout's name for the identity a challenge answer claims (the same
        as for Handle secrets over HTTP Basic: ``index:name key``)."""
        try:
            handle = answer.handle.decode("utf-8")
            key = self.registry.services.grammar.parse(handle, bare_prefix=True).key
        except (UnicodeDecodeError, GrammarError):
            key = answer.handle.decode("utf-8", "replace")
        return f"{answer.index}:{key}"

    async def _check_proof(
        self, answer: c.ChallengeAnswer, pending: _Pending
    ) -> HandleIdentity | None:
        try:
            handle = answer.handle.decode("utf-8")
            name = self.registry.services.grammar.parse(handle, bare_prefix=True)
        except (UnicodeDecodeError, GrammarError):
            return None
        if pending.login:
            wanted = c.Login.from_bytes(pending.request.body)
            if wanted.handle != answer.handle or wanted.index not in (0, answer.index):
                return None
        record = await self._record(name.key)
        message = challenge_message(pending.nonce, pending.digest)
        auth_type = answer.auth_type.upper()
        for value in record:
            if answer.index not in (0, value.index):
                continue
            if auth_type == b"HS_SECKEY" and value.type.upper() == HS_SECKEY:
                secret = open_value(
                    self.registry.services.node_key,
                    value.data,
                    name_key=name.key,
                    index=value.index,
                )
                if secret is not None and await self._secret_proof_holds(
                    secret, answer.signed_response, message
                ):
                    return HandleIdentity(handle, value.index, name.key)
            elif (
                auth_type == b"HS_PUBKEY"
                and value.type.upper() == HS_PUBKEY
                and verify_public_key_proof(value.data, answer.signed_response, message)
            ):
                return HandleIdentity(handle, value.index, name.key)
        return None

    async def _secret_proof_holds(
        self, secret: bytes, signed_response: bytes, message: bytes
    ) -> bool:
        """Check an HS_SECKEY proof. PBKDF2 ones cost milliseconds of hashing at
        the client's chosen strength: they run in threads, a few at a time, so
        no client can stall the event loop."""
        if signed_response[:1] != bytes([c.MAC_PBKDF2_HMAC_SHA1]):
            return verify_secret_key_proof(secret, signed_response, message)
        if self._slow_proofs_waiting >= MAX_SLOW_PROOFS_WAITING:
            raise _Busy("too many key derivations waiting")
        self._slow_proofs_waiting += 1
        try:
            async with self._slow_proofs:
                return await asyncio.to_thread(
                    verify_secret_key_proof, secret, signed_response, message
                )
        finally:
            self._slow_proofs_waiting -= 1

    async def _record(self, key: str) -> tuple[HandleValue, ...]:
        async with self.registry.services.read() as conn:
            record = await store.get_identifier(conn, key)
        return record.values if record else ()

    async def _verify_challenge(self, request: c.Message, version: tuple[int, int]) -> c.Message:
        """Op 201: does this HS_SECKEY proof hold for an identity stored here?"""
        ask = c.VerifyChallenge.from_bytes(request.body)
        try:
            name = self.registry.services.grammar.parse(
                ask.handle.decode("utf-8"), bare_prefix=True
            )
        except (UnicodeDecodeError, GrammarError):
            return self._error(request, version, rc.RC_INVALID_HANDLE, "invalid handle")
        valid = False
        for value in await self._record(name.key):
            if value.type.upper() == HS_SECKEY and ask.index in (0, value.index):
                secret = open_value(
                    self.registry.services.node_key,
                    value.data,
                    name_key=name.key,
                    index=value.index,
                )
                message = challenge_message(ask.nonce, ask.digest)
                valid = valid or (
                    secret is not None
                    and await self._secret_proof_holds(secret, ask.signed_response, message)
                )
        return self._response(request, version, rc.RC_SUCCESS, bytes([1 if valid else 0]))

    # --- administration -----------------------------------------------------------

    async def _administer(
        self, request: c.Message, version: tuple[int, int], connection: Connection
    ) -> c.Message | list[c.Message]:
        actor = Actor(None, connection.remote, connection.identity)
        self.registry.services.admit(actor, "handle_tcp")
        handles = self.registry.handles
        op = request.opcode
        try:
            if op in (c.OC_CREATE_HANDLE, c.OC_ADD_VALUE, c.OC_MODIFY_VALUE):
                body = c.HandleValues.from_bytes(request.body)
                name = _text(body.handle)
                if op == c.OC_CREATE_HANDLE:
                    result = await handles.create(
                        actor,
                        name,
                        body.values,
                        overwrite=request.flag(c.FLAG_OVRW),
                        mint_suffix=request.flag(c.FLAG_MINT),
                    )
                    flags = c.FLAG_OVRW if result.overwritten else 0
                    return self._response(
                        request,
                        version,
                        rc.RC_SUCCESS,
                        c.HandleOnly(result.handle.encode()).to_bytes(),
                        flags=flags,
                    )
                if op == c.OC_MODIFY_VALUE:
                    await handles.modify_values(actor, name, body.values)
                else:
                    await handles.set_values(
                        actor, name, body.values, overwrite=request.flag(c.FLAG_OVRW)
                    )
            elif op == c.OC_REMOVE_VALUE:
                remove = c.RemoveValues.from_bytes(request.body)
                await handles.remove_values(actor, _text(remove.handle), remove.indexes)
            elif op == c.OC_DELETE_HANDLE:
                await handles.delete(actor, _text(c.HandleOnly.from_bytes(request.body).handle))
            elif op == c.OC_LIST_HANDLES:
                prefix = _text(c.HandleOnly.from_bytes(request.body).handle)
                listing = await handles.list_handles(actor, prefix, offset=0, limit=None)
                names = [n.encode("utf-8") for n in listing.handles]
                return self._list(request, version, names)
            elif op in (c.OC_HOME_NA, c.OC_UNHOME_NA):
                prefix = _text(c.HandleOnly.from_bytes(request.body).handle)
                await handles.home(actor, prefix, homed=op == c.OC_HOME_NA)
            elif op == c.OC_LIST_HOMED_NAS:
                names = [f"0.NA/{p}".encode() for p in await handles.homed_prefixes()]
                return self._list(request, version, names)
        except UnicodeDecodeError:
            return self._error(request, version, rc.RC_INVALID_HANDLE, "handle is not UTF-8")
        return self._response(request, version, rc.RC_SUCCESS)

    def _list(
        self, request: c.Message, version: tuple[int, int], names: list[bytes]
    ) -> list[c.Message]:
        """A list answer, continued (CN) over as many messages as it takes, as
        HANDLE.NET streams long listings."""
        chunks: list[list[bytes]] = [[]]
        size = 0
        for name in names:
            if size + len(name) + 4 > LIST_MESSAGE_BYTES and chunks[-1]:
                chunks.append([])
                size = 0
            chunks[-1].append(name)
            size += len(name) + 4
        messages = [
            self._response(request, version, rc.RC_SUCCESS, c.HandleList(tuple(chunk)).to_bytes())
            for chunk in chunks
        ]
        return [
            replace(m, header=replace(m.header, flags=m.header.flags | c.FLAG_CONT))
            for m in messages[:-1]
        ] + messages[-1:]


class _Busy(Exception):
    """A bound on concurrent work is reached: RC 3, try again later."""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8")


def _shape(data: bytes, udp: bool) -> bytes | None:
    """What decides an anonymous resolution's answer: versions, opcode, flags,
    recursion and the body — not the ids, the expiration or the credential."""
    if data[20:24] != b"\x00\x00\x00\x01" or data[24:28] != b"\x00\x00\x00\x00":
        return None  # not a resolution request
    flags = int.from_bytes(data[_HEADER_FLAGS], "big")
    if flags & c.FLAG_CERT:
        return None
    body_length = int.from_bytes(data[40:44], "big")
    end = _BODY + body_length
    if (
        len(data) < end
        or int.from_bytes(data[16:20], "big") != len(data) - c.ENVELOPE_SIZE
        or data[end : end + 4] not in (b"", b"\x00\x00\x00\x00")
        or len(data) > end + 4
    ):
        return None  # truncated, a credential, or trailing bytes: take the full path
    return (b"U" if udp else b"T") + data[0:4] + data[20:36] + data[_BODY:end]


def _patch(template: _Template, request: bytes, expiration: int) -> list[bytes]:
    """The cached answer, made this request's: ids, expiration, request digest."""
    ids = request[_SESSION] + request[_REQUEST_ID]
    expires = struct.pack(">I", expiration & 0xFFFFFFFF)
    digest = None
    if template.digest_at is not None:
        body_length = int.from_bytes(request[40:44], "big")
        name = "sha256" if template.digest_code == c.DIGEST_SHA256 else "sha1"
        digest = hashlib.new(name, request[20 : _BODY + body_length]).digest()
    out = []
    for n, part in enumerate(template.parts):
        patched = bytearray(part)
        patched[4:12] = ids
        if n == 0:
            patched[_EXPIRATION] = expires
            if digest is not None:
                assert template.digest_at is not None
                patched[template.digest_at : template.digest_at + len(digest)] = digest
        out.append(bytes(patched))
    return out
