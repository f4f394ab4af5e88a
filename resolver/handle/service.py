"""Answering native-protocol requests, independent of UDP or TCP.

The servers hand over request bytes and get response bytes back. Anonymous
resolutions take the fast path (:mod:`.fastpath`): their whole response is
kept encoded and only patched per request. Everything else is decoded with the
codec (decrypted first when it comes encrypted under a session key), resolved
through the resolver or dispatched — to the sessions (:mod:`.sessions`), the
challenges (:mod:`.challenges`) or the administration (:mod:`.admin`) — and
encoded again (MACed and encrypted inside a session).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from metrics.tally import NO_PREFIX, TALLY
from registry.errors import InvalidName, RegistryError, StorageUnavailable
from registry.grammar import GrammarError
from registry.services import Actor, Registry
from registry.values import HS_PUBKEY

from .. import codes as rc
from ..guard import GuardStage, Label, Wording
from ..limits import Guard
from ..resolution import Query, RecursionBusy, Resolution, Resolver, Status
from . import answers
from . import codec as c
from . import session_codec as sc
from .admin import Administration
from .challenges import RC_LOGIN_FIRST, Busy, Challenges, Proven
from .connection import Connection
from .fastpath import FastPath, Template, patch, shape, template_of
from .identities import IdentityRecords
from .proofs import PrivateKey, sign_response
from .sessions import RC_INVALID_SESSION_SETUP, Session, SessionRefused, Sessions

log = logging.getLogger("idnode.handle")

NOT_HERE_MESSAGE = b"That naming authority doesn't live here"
MAX_RECURSION = 10


@dataclass
class _Context:
    """Where one request stands with respect to sessions."""

    session: Session | None = None
    """The session the answer goes out in (MACed if certified, encrypted if asked)."""
    encrypted: bool = False
    """The request came encrypted: so does its answer."""


class HandleService:
    def __init__(
        self,
        resolver: Resolver,
        registry: Registry,
        *,
        site_serial: int = 1,
        server_key: PrivateKey | None = None,
        site_bytes: Callable[[], bytes | None] = lambda: None,
        clock: Callable[[], float] = time.time,
        guard: Guard | None = None,
        udp_amplification: int = 8,
        sessions: Sessions | None = None,
    ) -> None:
        self.resolver = resolver
        self.registry = registry
        self.site_serial = site_serial
        self.server_key = server_key
        self.site_bytes = site_bytes
        self.clock = clock
        self.replies = answers.Replies(site_serial, clock)
        self.stage = GuardStage(_wording(self.replies), guard, udp_amplification)
        """Per-client limits (``guard``; None: none), answers over UDP at most
        ``udp_amplification`` times their request (0: any size), and the tally."""
        self.fast_path = FastPath(resolver.cache)
        # Identities' records are kept between proofs, evicted with the answers.
        self.identities = IdentityRecords(registry.services, stale=resolver.stale)
        resolver.followers.append(self.identities.on_changes)
        self.challenges = Challenges(registry.services, self.replies, identities=self.identities)
        self.admin = Administration(registry, self.replies)
        self.sessions = sessions if sessions is not None else Sessions(server_key)
        """Session ids are never those of pending challenges (which share the field)."""
        self.sessions.reserved = self.challenges.pending.__contains__

    # --- entry point ----------------------------------------------------------

    def fast(self, data: bytes, *, udp: bool) -> list[bytes] | None:
        """The cached answer to an anonymous resolution, patched; None on a miss."""
        started = time.perf_counter()
        if c.is_encrypted(data):
            return None
        template = self.fast_path.lookup(data, udp)
        if template is None:
            return None
        parts = patch(template, data, int(self.clock()) + answers.EXPIRATION_SECONDS)
        return self.stage.deliver(data, parts, udp, template.label, started)

    def refuse(self, data: bytes, remote: str, *, udp: bool) -> list[bytes] | None:
        """RC 3 (too busy) to a client over its rate, IDIS 603 over its daily
        requests (:meth:`answers.Replies.refusal`); None: answer it."""
        return self.stage.refuse(data, remote, udp)

    def forget(self, connection: Connection) -> None:
        """The connection is gone: so are the challenges it was given and the
        sessions that lived on it."""
        self.challenges.forget(connection)
        self._ended(self.sessions.forget(connection))

    def _ended(self, sessions: list[Session]) -> None:
        for session in sessions:
            self.challenges.forget(session.connection)

    async def handle(self, data: bytes, connection: Connection) -> list[bytes]:
        """Answer one request; UDP answers come as datagrams, TCP as one message."""
        started = time.perf_counter()
        udp = not connection.tcp
        protocol = "handle_udp" if udp else "handle_tcp"
        context = _Context()
        try:
            plain = data
            if c.is_encrypted(data):
                plain, context.session = self.sessions.open_encrypted(data, connection)
                context.encrypted = True
            request = c.Message.from_bytes(plain)
        except c.CodecError as exc:
            TALLY.count(protocol, "error", NO_PREFIX, time.perf_counter() - started)
            return self.replies.garbage(data, str(exc), udp=udp)
        except SessionRefused as exc:
            TALLY.count(protocol, "error", NO_PREFIX, time.perf_counter() - started)
            return self._undecryptable(data, exc, udp=udp)
        if request.is_response:
            return []  # nothing asked
        version = answers.answer_version(request.envelope)
        resolution = request.opcode == c.OC_RESOLUTION
        prefix = NO_PREFIX
        answer: c.Message | list[c.Message] | Template
        try:
            context.session = self.sessions.admit(request, connection, context.session)
            if resolution:
                answer, prefix = await self._resolve(request, version, connection, context)
            else:
                answer = await self._dispatch(request, version, connection, context)
        except SessionRefused as exc:
            answer = self.replies.error(request, version, exc.code, exc.text)
        except sc.InvalidSetup as exc:
            answer = self.replies.error(request, version, RC_INVALID_SESSION_SETUP, str(exc))
        except RegistryError as exc:
            answer = self.replies.error(request, version, rc.rc_of(exc), str(exc))
        except c.CodecError as exc:
            answer = self.replies.error(request, version, rc.RC_PROTOCOL_ERROR, str(exc))
        except StorageUnavailable as exc:
            log.error("storage unavailable for op %s: %s", request.opcode, exc)
            answer = self.replies.error(
                request, version, rc.RC_SERVER_TOO_BUSY, "storage unavailable"
            )
        except (Busy, RecursionBusy) as exc:
            answer = self.replies.error(request, version, rc.RC_SERVER_TOO_BUSY, str(exc))
        if isinstance(answer, Template):
            parts = patch(answer, data, int(self.clock()) + answers.EXPIRATION_SECONDS)
            return self.stage.deliver(data, parts, udp, answer.label, started)
        messages = answer if isinstance(answer, list) else [answer]
        session = context.session
        # Over UDP only successes are signed: a signed error would let a spoofed
        # datagram buy an RSA signature and a reply nine times its size. Inside a
        # session the session key MACs what the server key would sign.
        if request.flag(c.FLAG_CERT) and self.server_key is not None:
            messages = [
                sign_response(m, self.server_key)
                if not self.sessions.signs(m, session)
                and (not udp or m.header.response_code == rc.RC_SUCCESS)
                else m
                for m in messages
            ]
        if session is None:
            encoded = [m.to_bytes() for m in messages]
        else:
            encoded = [
                self.sessions.seal(m, session, encrypt=context.encrypted or m.flag(c.FLAG_ENCR))
                for m in messages
            ]
        # Lists are TCP-only: over UDP there is one message, in datagrams.
        parts = c.fragments(encoded[0]) if udp else encoded
        label: Label | None = None
        if resolution:
            label = (protocol, rc.outcome_of(messages[0].header.response_code), prefix)
        return self.stage.deliver(data, parts, udp, label, started)

    # --- dispatch ---------------------------------------------------------------

    async def _dispatch(
        self,
        request: c.Message,
        version: tuple[int, int],
        connection: Connection,
        context: _Context,
    ) -> c.Message | list[c.Message]:
        op = request.opcode
        if op == c.OC_GET_SITE_INFO:
            return self._site_info(request, version)
        if op == c.OC_SESSION_SETUP:
            return await self._setup(request, version, connection)
        if op == c.OC_SESSION_TERMINATE:
            self._ended([self.sessions.terminate(request, connection, context.session)])
            context.session = None  # the answer is the server's to sign
            return self.replies.response(request, version, rc.RC_SUCCESS)
        if op == c.OC_SESSION_EXCHANGEKEY:
            self.sessions.receive_key(request, connection)
            return self.replies.response(request, version, rc.RC_SUCCESS)
        if op == c.OC_CHALLENGE_RESPONSE:
            return await self._answer(request, version, connection, context)
        if op == c.OC_VERIFY_CHALLENGE:
            return await self.challenges.verify(request, version)
        if op == c.OC_LOGIN_ID_SYSTEM:
            return await self.challenges.login(request, version, connection)
        if op in c.ADMIN_OPCODES:
            if not connection.tcp:
                return self.replies.error(
                    request,
                    version,
                    rc.RC_PROTOCOL_ERROR,
                    "administration needs TCP: UDP is query-only here",
                )
            caller = _caller(connection, context.session)
            if caller.identity is not None:
                return await self.admin.administer(request, version, caller)
            session = context.session
            if session is not None:
                # The session's first administration: once this challenge is
                # answered, the session's requests need none.
                session.challenged = True
                return self.challenges.challenge(
                    request, version, session.connection, session_id=session.id
                )
            if connection.login_attempted:
                return self.replies.error(request, version, RC_LOGIN_FIRST, "please log in first")
            return self.challenges.challenge(request, version, connection)
        return self.replies.error(
            request, version, rc.RC_OPERATION_NOT_SUPPORTED, f"operation {op} is not supported"
        )

    async def _answer(
        self,
        request: c.Message,
        version: tuple[int, int],
        connection: Connection,
        context: _Context,
    ) -> c.Message | list[c.Message]:
        """Op 200. A challenge issued inside a session is answered from any of
        its client's connections (HANDLE.NET opens one per request); its proof
        authenticates the session when it proves the identity the session named."""
        session = self.sessions.find(request.envelope.session_id, connection)
        if session is None or not session.challenged:
            proven = await self.challenges.answer(request, version, connection)
            if not isinstance(proven, Proven):
                return proven
            if proven.login:
                return self.replies.response(proven.request, version, rc.RC_SUCCESS)
            return await self.admin.administer(proven.request, version, connection)
        session.challenged = False
        context.session = session
        proven = await self.challenges.answer(request, version, session.connection)
        identity, session.connection.identity = session.connection.identity, None
        if not isinstance(proven, Proven):
            return proven
        if identity is not None and session.accepts(identity):
            session.identity = identity
        caller = Connection(tcp=connection.tcp, remote=connection.remote, identity=identity)
        return await self.admin.administer(proven.request, version, caller)

    async def _setup(
        self, request: c.Message, version: tuple[int, int], connection: Connection
    ) -> c.Message:
        """Op 400: a new session, its id in the answer's envelope."""
        setup = sc.SessionSetup.from_bytes(request.body)
        exchange_key = None
        if setup.mode == sc.KEY_EXCHANGE_CIPHER_HDL:
            exchange_key = await self._exchange_key(setup.exchange_handle, setup.exchange_index)
        session, body, ended = self.sessions.setup(
            request, setup, version, connection, exchange_key=exchange_key
        )
        self._ended(ended)
        return self.replies.response(
            request, version, rc.RC_SUCCESS, body.to_bytes(), session_id=session.id
        )

    async def _exchange_key(self, handle: bytes, index: int) -> bytes | None:
        """Mode 3's exchange key: the HS_PUBKEY at ``index`` of ``handle`` here
        (index 0 or less: the first)."""
        try:
            key = self.registry.services.grammar.parse(handle.decode("utf-8"), bare_prefix=True).key
        except (UnicodeDecodeError, GrammarError):
            return None
        for value in await self.identities.values(key):
            if value.type.upper() == HS_PUBKEY and (index <= 0 or value.index == index):
                return value.data
        return None

    def _undecryptable(self, data: bytes, refused: SessionRefused, *, udp: bool) -> list[bytes]:
        """The error for an encrypted request that cannot be opened: in the clear,
        under opcode 0 as HANDLE.NET answers it, and never larger than it over UDP."""
        if udp and len(data) < c.ENVELOPE_SIZE + c.HEADER_SIZE:
            return []
        envelope = c.Envelope.from_bytes(data)
        message = c.Message(
            answers.answer_envelope(
                answers.answer_version(envelope),
                request_id=envelope.request_id,
                session_id=envelope.session_id,
            ),
            c.Header(
                opcode=0,
                response_code=refused.code,
                flags=c.FLAG_AUTH,
                site_serial=self.site_serial,
                expiration=int(self.clock()) + answers.EXPIRATION_SECONDS,
            ),
            c.ErrorMessage(refused.text.encode("utf-8")[:200]).to_bytes(),
        )
        return [message.to_bytes()]

    def _site_info(self, request: c.Message, version: tuple[int, int]) -> c.Message:
        site = self.site_bytes()
        if site is None:
            return self.replies.error(
                request, version, rc.RC_OPERATION_NOT_SUPPORTED, "no site information"
            )
        return self.replies.response(request, version, rc.RC_SUCCESS, site)

    # --- resolution -------------------------------------------------------------

    async def _resolve(
        self,
        request: c.Message,
        version: tuple[int, int],
        connection: Connection,
        context: _Context,
    ) -> tuple[c.Message | Template, str]:
        """The answer, and the enterprise prefix it counts for."""
        body = c.ResolutionRequest.from_bytes(request.body)
        try:
            name = self.resolver.parse(body.handle)
        except InvalidName as exc:
            return self.replies.error(request, version, rc.RC_INVALID_HANDLE, str(exc)), NO_PREFIX
        try:
            types = tuple(t.decode("utf-8") for t in body.types)
        except UnicodeDecodeError:
            error = self.replies.error(request, version, rc.RC_PROTOCOL_ERROR, "type is not UTF-8")
            return error, NO_PREFIX
        query = Query(indexes=body.indexes, types=types)
        # Recursion when the client asks (REC) and the node allows it, within the
        # hop limit; past it a referral becomes RC 6 (recursion count too high).
        asked = request.flag(c.FLAG_RECU) and self.resolver.recursion is not None
        depth = request.header.recursion
        recurse = asked and depth + 1 < MAX_RECURSION
        asking = _caller(connection, context.session)
        identity = None if request.flag(c.FLAG_PUBL) else asking.identity
        if identity is not None:
            caller = Actor(None, connection.remote, identity)
            resolution = await self.resolver.resolve(
                name, query, caller, recurse=recurse, depth=depth
            )
            message = self._resolution_message(request, version, resolution, asked=asked)
            return message, resolution.account_prefix
        cacheable = (
            not request.credential and not request.flag(c.FLAG_CERT) and context.session is None
        )
        request_shape = shape(request.to_bytes(), not connection.tcp) if cacheable else None
        if request_shape is None:
            resolution = await self.resolver.resolve(name, query, recurse=recurse, depth=depth)
            message = self._resolution_message(request, version, resolution, asked=asked)
            return message, resolution.account_prefix

        def encode(resolution: Resolution) -> Template:
            message = self._resolution_message(request, version, resolution, asked=asked)
            return template_of(
                message, request, version, resolution.account_prefix, udp=not connection.tcp
            )

        # The shape holds the flags and the recursion count: recursed answers,
        # referrals and RC 6 have slots of their own.
        template = await self.resolver.answer_slot(
            name, query, request_shape, encode, recurse=recurse, depth=depth
        )
        if template.outcome in ("found", "referral"):
            # Misses are cached only briefly: a map entry per made-up name would
            # outlive them, so they take the slow path (still a cache hit).
            self.fast_path.learn(request_shape, name.key)
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
        replies = self.replies
        if status is Status.FOUND:
            return replies.response(
                request,
                version,
                rc.RC_SUCCESS,
                c.HandleValues(handle, resolution.values).to_bytes(),
            )
        if status is Status.NOT_FOUND:
            return replies.error(request, version, rc.RC_HANDLE_NOT_FOUND)
        if status is Status.VALUES_NOT_FOUND:
            return replies.error(request, version, rc.RC_VALUES_NOT_FOUND)
        if status is Status.REFERRAL and asked:
            return replies.error(
                request, version, rc.RC_RECURSION_COUNT_TOO_HIGH, "recursion count too high"
            )
        if status is Status.UNREACHABLE:
            return replies.error(
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
            return replies.response(request, version, code, referral.to_bytes())
        return replies.response(
            request, version, rc.RC_SERVER_NOT_RESP, c.ErrorMessage(NOT_HERE_MESSAGE).to_bytes()
        )


def _caller(connection: Connection, session: Session | None) -> Connection:
    """Who asks: the connection's identity (an IDIS login) or else the one proven
    inside the session the request is in."""
    if connection.identity is not None or session is None or session.identity is None:
        return connection
    return Connection(tcp=connection.tcp, remote=connection.remote, identity=session.identity)


def _wording(replies: answers.Replies) -> Wording[list[bytes]]:
    """The native protocol's words for the guard stage: its answers are datagrams
    (UDP) or one message (TCP)."""
    return Wording("handle_udp", "handle_tcp", replies.refusal, replies.ask_over_tcp, _size)


def _size(parts: list[bytes]) -> int:
    return sum(len(part) for part in parts)
