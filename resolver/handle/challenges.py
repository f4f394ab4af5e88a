"""Native authentication: challenges, the proofs that answer them, and logins.

An administrative request (or an IDIS login) from a connection that has proven
nothing is answered RC 402 with a nonce; the request waits here, under a new
session id, for the op-200 answer that proves an identity (HS_SECKEY or
HS_PUBKEY: RSA, DSA, or SM2 as IDIS signs it, with the identity's handle as the
user ID). PBKDF2 proofs cost the server what the client chose, so they run
in a small thread pool with a bounded queue.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace

from registry.errors import LockedOut
from registry.grammar import GrammarError, HandleName
from registry.models import HandleValue
from registry.permissions import HandleIdentity
from registry.secrets import open_value
from registry.services.base import Services
from registry.values import HS_PUBKEY, HS_SECKEY

from .. import codes as rc
from . import codec as c
from . import credentials as cred
from .answers import Replies
from .connection import Connection
from .identities import IdentityRecords
from .proofs import challenge_message, verify_public_key_proof, verify_secret_key_proof

CHALLENGE_SECONDS = 60.0
RC_RELOGIN = 407
RC_LOGIN_FIRST = 408
RC_AUTHEN_TIMEOUT = 405
MAX_PENDING = 10_000
"""Challenges awaiting an answer, all connections together."""
MAX_PENDING_PER_CONNECTION = 8
SLOW_PROOF_THREADS = 2
MAX_SLOW_PROOFS_WAITING = 32
"""PBKDF2 proofs run off the event loop, a few at a time; beyond this queue, RC 3."""


class Busy(Exception):
    """A bound on concurrent work is reached: RC 3, try again later."""


@dataclass
class _Pending:
    """An admin request waiting for the answer to its challenge."""

    request: c.Message
    nonce: bytes
    digest: bytes
    expires: float
    connection: Connection
    login: bool = False


@dataclass(frozen=True, slots=True)
class Proven:
    """A challenge answered with a valid proof: the request it held back (under
    the answer's request id), which the connection may now have answered."""

    request: c.Message
    login: bool
    """The request was a login: nothing more to do than say so."""


class Challenges:
    """The native service's pending challenges and the proofs that answer them."""

    def __init__(
        self, services: Services, replies: Replies, *, identities: IdentityRecords | None = None
    ) -> None:
        self.services = services
        self.identities = identities if identities is not None else IdentityRecords(services)
        """Where proofs find the identities' stored keys and secrets."""
        self.grammar = services.grammar
        self.replies = replies
        self.pending: dict[int, _Pending] = {}
        """By session id, in the order issued (so also in the order they expire)."""
        self._slow_proofs = asyncio.Semaphore(SLOW_PROOF_THREADS)
        self._slow_proofs_waiting = 0
        """PBKDF2 proofs queued for a thread or running in one."""

    def challenge(
        self,
        request: c.Message,
        version: tuple[int, int],
        connection: Connection,
        *,
        login: bool = False,
        session_id: int = 0,
    ) -> c.Message:
        """RC 402: a nonce under a new session id (or under ``session_id``: a
        challenge inside a native session, which replaces one pending there);
        the request waits for the answer."""
        self._expire()
        if session_id in self.pending:
            self._drop(session_id)
        if connection.challenges >= MAX_PENDING_PER_CONNECTION or len(self.pending) >= MAX_PENDING:
            raise Busy("too many challenges awaiting an answer")
        session = session_id or int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF or 1
        while not session_id and session in self.pending:
            session = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF or 1
        connection.challenges += 1
        nonce = os.urandom(c.NONCE_SIZE)
        digest = c.request_digest(request, version)
        self.pending[session] = _Pending(
            request,
            nonce,
            digest[1:],
            time.monotonic() + CHALLENGE_SECONDS,
            connection,
            login=login,
        )
        return self.replies.response(
            request,
            version,
            rc.RC_AUTHENTICATION_NEEDED,
            cred.Challenge(nonce).to_bytes(),
            session_id=session,
            digest=True,
        )

    def _expire(self) -> None:
        now = time.monotonic()
        while self.pending:
            session, pending = next(iter(self.pending.items()))
            if pending.expires >= now:
                break  # the rest were issued later
            self._drop(session)

    def _drop(self, session: int) -> _Pending:
        pending = self.pending.pop(session)
        pending.connection.challenges -= 1
        return pending

    def forget(self, connection: Connection) -> None:
        """The connection is gone: so are the challenges it was given."""
        if connection.challenges:
            for session in [s for s, p in self.pending.items() if p.connection is connection]:
                self._drop(session)

    async def login(
        self, request: c.Message, version: tuple[int, int], connection: Connection
    ) -> c.Message:
        """IDIS op 2001: a challenge for the identity to bind to the connection."""
        if not connection.tcp:
            return self.replies.error(request, version, rc.RC_PROTOCOL_ERROR, "log in over TCP")
        cred.Login.from_bytes(request.body)  # malformed bodies are protocol errors
        if connection.identity is not None:
            return self.replies.error(
                request, version, RC_RELOGIN, f"already logged in as {connection.identity}"
            )
        connection.login_attempted = True
        return self.challenge(request, version, connection, login=True)

    async def answer(
        self, request: c.Message, version: tuple[int, int], connection: Connection
    ) -> c.Message | Proven:
        """Op 200: an error, or the request the proof now lets through (and the
        connection holds the identity proven)."""
        session = request.envelope.session_id
        pending = self.pending.get(session)
        if pending is not None and pending.connection is connection:
            self._drop(session)  # one answer per challenge, right or wrong
        else:
            pending = None  # another connection's challenge is none of this one's business
        if pending is None or pending.expires < time.monotonic():
            return self.replies.error(
                request,
                version,
                RC_AUTHEN_TIMEOUT,
                "no challenge pending for this session (expired?)",
            )
        answer = cred.ChallengeAnswer.from_bytes(request.body)
        original = pending.request
        # The answer to the original request goes out under the op-200 request id.
        original = replace(
            original, envelope=replace(original.envelope, request_id=request.envelope.request_id)
        )
        lockout = self.services.lockout
        name = self._claimed(answer)
        account = self._account(answer, name)
        try:
            self.services.refuse_if_locked(account, connection.remote, "proof")
        except LockedOut as exc:
            return self.replies.error(original, version, rc.RC_AUTHENTICATION_FAILED, str(exc))
        identity = await self._check_proof(answer, pending, name)
        if identity is None:
            self.services.auth_failed("proof")
            lockout.failed(account, connection.remote)
            return self.replies.error(
                original, version, rc.RC_AUTHENTICATION_FAILED, "authentication failed"
            )
        lockout.succeeded(account)
        connection.identity = identity
        return Proven(original, pending.login)

    def _claimed(self, answer: cred.ChallengeAnswer) -> HandleName | None:
        """The identity's name a challenge answer claims; None: no valid handle."""
        try:
            return self.grammar.parse(answer.handle.decode("utf-8"), bare_prefix=True)
        except (UnicodeDecodeError, GrammarError):
            return None

    @staticmethod
    def _account(answer: cred.ChallengeAnswer, name: HandleName | None) -> str:
        """The lockout's name for the identity a challenge answer claims (the same
        as for Handle secrets over HTTP Basic: ``index:name key``)."""
        key = name.key if name is not None else answer.handle.decode("utf-8", "replace")
        return f"{answer.index}:{key}"

    async def _check_proof(
        self, answer: cred.ChallengeAnswer, pending: _Pending, name: HandleName | None
    ) -> HandleIdentity | None:
        if name is None:
            return None
        handle = answer.handle.decode("utf-8")
        if pending.login:
            wanted = cred.Login.from_bytes(pending.request.body)
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
                    self.services.node_key,
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
                and verify_public_key_proof(
                    value.data, answer.signed_response, message, identity=handle
                )
            ):
                return HandleIdentity(handle, value.index, name.key)
        return None

    async def _secret_proof_holds(
        self, secret: bytes, signed_response: bytes, message: bytes
    ) -> bool:
        """Check an HS_SECKEY proof. PBKDF2 ones cost milliseconds of hashing at
        the client's chosen strength: they run in threads, a few at a time, so
        no client can stall the event loop."""
        if signed_response[:1] != bytes([cred.MAC_PBKDF2_HMAC_SHA1]):
            return verify_secret_key_proof(secret, signed_response, message)
        if self._slow_proofs_waiting >= MAX_SLOW_PROOFS_WAITING:
            raise Busy("too many key derivations waiting")
        self._slow_proofs_waiting += 1
        try:
            async with self._slow_proofs:
                return await asyncio.to_thread(
                    verify_secret_key_proof, secret, signed_response, message
                )
        finally:
            self._slow_proofs_waiting -= 1

    async def _record(self, key: str) -> tuple[HandleValue, ...]:
        return await self.identities.values(key)

    async def verify(self, request: c.Message, version: tuple[int, int]) -> c.Message:
        """Op 201: does this HS_SECKEY proof hold for an identity stored here?"""
        ask = cred.VerifyChallenge.from_bytes(request.body)
        try:
            name = self.grammar.parse(ask.handle.decode("utf-8"), bare_prefix=True)
        except (UnicodeDecodeError, GrammarError):
            return self.replies.error(request, version, rc.RC_INVALID_HANDLE, "invalid handle")
        valid = False
        for value in await self._record(name.key):
            if value.type.upper() == HS_SECKEY and ask.index in (0, value.index):
                secret = open_value(
                    self.services.node_key,
                    value.data,
                    name_key=name.key,
                    index=value.index,
                )
                message = challenge_message(ask.nonce, ask.digest)
                valid = valid or (
                    secret is not None
                    and await self._secret_proof_holds(secret, ask.signed_response, message)
                )
        return self.replies.response(request, version, rc.RC_SUCCESS, bytes([1 if valid else 0]))
