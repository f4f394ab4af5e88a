"""A small native-protocol client on the same codec: UDP with retries, TCP
one-shot or persistent with challenge–response, inside a session (HS_MACs,
encryption) when given one (:mod:`.session_client` sets sessions up). Tests,
``idnode resolve`` and the load tests use it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from registry.models import HandleValue
from registry.values import (
    INTERFACE_QUERY,
    PROTOCOL_TCP,
    PROTOCOL_UDP,
    SiteInfo,
    ValueFormatError,
)

from ..codes import RC_ERROR
from . import codec as c
from . import credentials as cred
from . import session_codec as sc
from . import session_crypto
from .proofs import PrivateKey, challenge_message, encode_secret_key_proof, public_key_proof

UDP_RETRIES = (0.5, 1.0, 1.5)


class ClientError(Exception):
    """No usable answer: timeout, a broken reply, a digest that does not match."""


def next_request_id() -> int:
    """Random, so that an off-path sender cannot guess which answer we wait for."""
    return int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF or 1


def request(
    opcode: int,
    body: bytes = b"",
    *,
    flags: int = 0,
    version: tuple[int, int] = c.OUR_VERSION,
    request_id: int | None = None,
    session_id: int = 0,
    recursion: int = 0,
) -> c.Message:
    """A request as a CNRI client builds it: expiration now + 12 h, serial unknown."""
    return c.Message(
        envelope=c.Envelope(
            major=version[0],
            minor=version[1],
            suggested_major=c.OUR_VERSION[0],
            suggested_minor=c.OUR_VERSION[1],
            session_id=session_id,
            request_id=next_request_id() if request_id is None else request_id,
        ),
        header=c.Header(
            opcode=opcode, flags=flags, recursion=recursion, expiration=int(time.time()) + 43_200
        ),
        body=body,
    )


def resolution(
    name: str,
    *,
    indexes: Sequence[int] = (),
    types: Sequence[str] = (),
    flags: int = c.FLAG_RECU | c.FLAG_CACR | c.FLAG_PUBL,
    version: tuple[int, int] = c.OUR_VERSION,
    recursion: int = 0,
) -> c.Message:
    body = c.ResolutionRequest(
        name.encode("utf-8"), tuple(indexes), tuple(t.encode("utf-8") for t in types)
    )
    return request(
        c.OC_RESOLUTION, body.to_bytes(), flags=flags, version=version, recursion=recursion
    )


@dataclass(frozen=True)
class SecretKey:
    """Prove an identity with its HS_SECKEY. As HANDLE.NET's client: PBKDF2-HMAC-SHA1
    from 2.7, SHA-1 before (what servers of those versions check); ``mac_code`` fixes one."""

    handle: str
    index: int
    secret: bytes
    mac_code: int | None = None

    def answer(
        self, nonce: bytes, digest: bytes, version: tuple[int, int] = c.OUR_VERSION
    ) -> cred.ChallengeAnswer:
        code = self.mac_code
        if code is None:
            code = cred.MAC_PBKDF2_HMAC_SHA1 if version >= (2, 7) else cred.MAC_SHA1
        proof = encode_secret_key_proof(
            code, self.secret, challenge_message(nonce, digest), salt=os.urandom(16)
        )
        return cred.ChallengeAnswer(b"HS_SECKEY", self.handle.encode(), self.index, proof)


@dataclass(frozen=True)
class KeyPair:
    """Prove an identity with the private half of its HS_PUBKEY."""

    handle: str
    index: int
    key: PrivateKey

    def answer(
        self, nonce: bytes, digest: bytes, version: tuple[int, int] = c.OUR_VERSION
    ) -> cred.ChallengeAnswer:
        message = challenge_message(nonce, digest)
        proof = public_key_proof(self.key, message, version, identity=self.handle)
        return cred.ChallengeAnswer(b"HS_PUBKEY", self.handle.encode(), self.index, proof)


Credentials = SecretKey | KeyPair


@dataclass
class SessionKey:
    """A session agreed with a server: it MACs requests with the session key and
    its counter, checks the server's MACs, and encrypts and decrypts messages."""

    session_id: int
    key: bytes
    cipher: int
    version: tuple[int, int]
    """The session's version: its requests are sent at it (as HANDLE.NET's are)."""
    sent: int = 0
    """The last session counter used."""

    def sign(self, message: c.Message, *, counter: int | None = None) -> c.Message:
        """``message`` inside the session: its id and version, and an HS_MAC with the
        next counter (or ``counter``, to replay one)."""
        if counter is None:
            self.sent += 1
            counter = self.sent
        envelope = replace(
            message.envelope,
            major=self.version[0],
            minor=self.version[1],
            session_id=self.session_id,
        )
        message = replace(message, envelope=envelope)
        name = sc.mac_name(self.version)
        mac = session_crypto.mac(message, counter, self.key, name)
        assert mac is not None  # the session version's own MAC
        return replace(message, credential=sc.mac_credential(counter, name, mac))

    def verify(self, answer: c.Message) -> bool:
        """Whether an answer carries a valid HS_MAC of this session."""
        if not sc.is_mac(answer.credential):
            return False
        mac = cred.Credential.from_bytes(answer.credential)
        return session_crypto.mac_holds(
            answer, mac.signer_index, self.key, mac.digest_algorithm, mac.signature
        )

    def seal(self, encoded: bytes) -> bytes:
        """An encoded message encrypted under the session key (envelope EC set)."""
        envelope, rest = c.split_envelope(encoded)
        ciphertext = session_crypto.encrypt(self.cipher, self.key, rest)
        return replace(envelope, encrypted=True, length=len(ciphertext)).to_bytes() + ciphertext

    def open(self, data: bytes) -> bytes:
        """An encrypted message's plain encoding (CodecError: not under this key)."""
        envelope, rest = c.split_envelope(data)
        plain = session_crypto.decrypt(self.cipher, self.key, rest[: envelope.length])
        return replace(envelope, encrypted=False, length=len(plain)).to_bytes() + plain


def _decoded(data: bytes, session: SessionKey | None) -> c.Message:
    """A received message, decrypted first when it says it is encrypted."""
    if c.is_encrypted(data):
        if session is None:
            raise ClientError("an encrypted answer outside any session")
        data = session.open(data)
    return c.Message.from_bytes(data)


# --- UDP ------------------------------------------------------------------------


class UdpAnswer:
    """Collects the datagrams of the answer to one request (pure: the caller reads
    the socket, however it does that)."""

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.reassembly: c.Reassembly | None = None

    def add(self, data: bytes) -> bytes | None:
        """Take a datagram; the whole answer once it is complete. Datagrams of
        other requests, and broken ones, are ignored."""
        try:
            envelope = c.Envelope.from_bytes(data)
        except c.CodecError:
            return None
        if envelope.request_id != self.request_id:
            return None
        if envelope.length <= len(data) - c.ENVELOPE_SIZE and envelope.sequence == 0:
            return data
        if self.reassembly is None:
            self.reassembly = c.Reassembly(envelope)
        with contextlib.suppress(c.CodecError):
            return self.reassembly.add(envelope.sequence, data[c.ENVELOPE_SIZE :])
        return None


class _UdpReceiver(asyncio.DatagramProtocol):
    def __init__(self, request_id: int) -> None:
        self.answer = UdpAnswer(request_id)
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.done.done():
            return
        whole = self.answer.add(data)
        if whole is not None:
            self.done.set_result(whole)


async def udp_call(
    host: str,
    port: int,
    message: c.Message,
    retries: Sequence[float] = UDP_RETRIES,
    *,
    session: SessionKey | None = None,
    encrypt: bool = False,
) -> c.Message:
    """One exchange over UDP; ``encrypt``: under ``session``'s key, both ways."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _UdpReceiver(message.envelope.request_id), remote_addr=(host, port)
    )
    encoded = message.to_bytes()
    if encrypt and session is not None:
        encoded = session.seal(encoded)
    try:
        for wait in retries:
            for part in c.fragments(encoded):
                transport.sendto(part)
            try:
                raw = await asyncio.wait_for(asyncio.shield(protocol.done), wait)
            except TimeoutError:
                continue
            return checked(message, _decoded(raw, session))
        raise ClientError(f"no UDP answer from {host}:{port}")
    finally:
        transport.close()


# --- TCP ------------------------------------------------------------------------


async def _read_message(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(c.ENVELOPE_SIZE)
    length = c.message_length(head)
    if length > c.MAX_MESSAGE:
        raise ClientError(f"answer of {length} bytes is too long")
    return head + await reader.readexactly(length)


def checked(sent: c.Message, answer: c.Message) -> c.Message:
    """Verify the request digest of an answer that carries one."""
    if answer.flag(c.FLAG_RRDG) and answer.header.response_code != 0:
        digest = c.request_digest(sent, answer.envelope.version)
        if answer.body[: len(digest)] != digest:
            raise ClientError("the answer's request digest does not match the request")
        answer = c.Message(
            answer.envelope, answer.header, answer.body[len(digest) :], answer.credential
        )
    return answer


class TcpSession:
    """One TCP connection; several requests may be in flight (matched by id).
    With a native ``session`` its requests go MACed inside it (encrypted when
    ``encrypt``); an answer that comes encrypted is decrypted with it."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        credentials: Credentials | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.credentials = credentials
        self.timeout = timeout
        self.session: SessionKey | None = None
        self.encrypt = False
        self._waiting: dict[int, asyncio.Future[c.Message]] = {}
        self._continued: dict[int, list[c.Message]] = {}
        """Messages of answers still coming (CN set), by request id."""
        self._pump = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        credentials: Credentials | None = None,
        time_limit: float = 10.0,
    ) -> TcpSession:
        """Connect; every exchange on the session then waits at most ``time_limit``."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), time_limit)
        return cls(reader, writer, credentials, time_limit)

    async def _read_loop(self) -> None:
        try:
            while True:
                message = _decoded(await _read_message(self.reader), self.session)
                request_id = message.envelope.request_id
                if request_id not in self._waiting:
                    continue
                if message.flag(c.FLAG_CONT):
                    self._continued.setdefault(request_id, []).append(message)
                    continue
                future = self._waiting.pop(request_id)
                earlier = self._continued.pop(request_id, [])
                if not future.done():
                    future.set_result(_joined(earlier, message) if earlier else message)
        except (asyncio.IncompleteReadError, ConnectionError, c.CodecError, ClientError) as exc:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ClientError(f"connection ended: {exc}"))
            self._waiting.clear()

    async def send(self, message: c.Message, *, answering: c.Message | None = None) -> c.Message:
        """One exchange, no authentication handling. ``answering``: the request whose
        digest the answer carries (the original one, after a challenge)."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[message.envelope.request_id] = future
        if self.encrypt and self.session is not None:
            envelope = replace(message.envelope, session_id=self.session.session_id)
            encoded = self.session.seal(replace(message, envelope=envelope).to_bytes())
        else:
            encoded = message.to_bytes()
        self.writer.write(encoded)
        await self.writer.drain()
        try:
            answer = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            self._waiting.pop(message.envelope.request_id, None)
            raise ClientError("no TCP answer in time") from None
        return checked(answering or message, answer)

    async def call(self, message: c.Message) -> c.Message:
        """An exchange that answers a challenge (RC 402) with the connection's
        credentials; inside the native session if there is one (the answer to the
        challenge goes without MAC, as HANDLE.NET sends it)."""
        if self.session is not None and not message.credential:
            message = self.session.sign(message)
        answer = await self.send(message)
        if answer.header.response_code != 402 or self.credentials is None:
            return answer
        challenge = cred.Challenge.from_bytes(answer.body)
        digest = c.request_digest(message, answer.envelope.version)[1:]
        proof = self.credentials.answer(challenge.nonce, digest, answer.envelope.version)
        reply = request(
            c.OC_CHALLENGE_RESPONSE,
            proof.to_bytes(),
            session_id=answer.envelope.session_id,
            version=answer.envelope.version,
        )
        # The final answer is the original request's, with its digest.
        return await self.send(reply, answering=message)

    async def login(self) -> c.Message:
        """IDIS op 2001: bind the session's identity to this connection."""
        if self.credentials is None:
            raise ClientError("no credentials to log in with")
        body = cred.Login(self.credentials.handle.encode(), self.credentials.index)
        return await self.call(request(c.OC_LOGIN_ID_SYSTEM, body.to_bytes(), flags=c.FLAG_RRDG))

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def tcp_call(
    host: str,
    port: int,
    message: c.Message,
    *,
    credentials: Credentials | None = None,
    time_limit: float = 10.0,
) -> c.Message:
    """One request on its own connection (as HANDLE.NET's tools do)."""
    session = await TcpSession.open(host, port, credentials, time_limit)
    try:
        return await session.call(message)
    finally:
        await session.close()


def _joined(earlier: list[c.Message], last: c.Message) -> c.Message:
    """One list answer from the messages it was continued over."""
    names: list[bytes] = []
    for part in [*earlier, last]:
        body = _checked_body(part)
        names.extend(c.HandleList.from_bytes(body).handles)
    digest = last.body[: len(last.body) - len(_checked_body(last))]
    return replace(last, body=digest + c.HandleList(tuple(names)).to_bytes())


def _checked_body(message: c.Message) -> bytes:
    """A list message's body without its request digest (checked by the caller)."""
    if message.flag(c.FLAG_RRDG) and message.body:
        return message.body[1 + c.digest_size(message.body[0]) :]
    return message.body


def values_of(answer: c.Message) -> tuple[HandleValue, ...]:
    """The values of a successful resolution answer."""
    if answer.header.response_code != 1:
        raise ClientError(f"response code {answer.header.response_code}")
    return c.HandleValues.from_bytes(answer.body).values


def error_text(answer: c.Message) -> str:
    try:
        return c.ErrorMessage.from_bytes(answer.body).message.decode("utf-8", "replace")
    except c.CodecError:
        return ""


Target = tuple[str, int, bool]
"""Where to ask: (address, port, over UDP?)."""


def query_interfaces(referral: Sequence[HandleValue], *, udp_first: bool = True) -> list[Target]:
    """Where these HS_SITE values answer queries, UDP first (or TCP first)."""
    found: list[Target] = []
    for value in referral:
        try:
            site = SiteInfo.from_bytes(value.data)
        except ValueFormatError:
            continue
        for server in site.servers:
            for interface in server.interfaces:
                if interface.type & INTERFACE_QUERY and interface.protocol in (
                    PROTOCOL_UDP,
                    PROTOCOL_TCP,
                ):
                    found.append(
                        (server.address_text, interface.port, interface.protocol == PROTOCOL_UDP)
                    )
    return sorted(found, key=lambda entry: entry[2] != udp_first)


MAX_REFERRALS = 10
"""Referrals followed for one name before giving up (HANDLE.NET's recursion limit)."""


@dataclass(frozen=True)
class Hop:
    """One server asked on the way to an answer, and what it said."""

    host: str
    port: int
    udp: bool
    code: int


async def ask_first(
    targets: Sequence[Target],
    message: c.Message,
    *,
    retries: Sequence[float] = UDP_RETRIES,
    time_limit: float = 10.0,
    require_digest: bool = False,
) -> tuple[c.Message, Hop]:
    """Ask each target in turn until one answers usably. ``require_digest``: an
    answer must prove it answers this very request (RD), as a server relaying
    it to its own client must insist on."""
    failures = []
    for host, port, udp in targets:
        try:
            if udp:
                answer = await udp_call(host, port, message, retries=retries)
                if answer.header.response_code == RC_ERROR:
                    # As HANDLE.NET's resolver does: the server said no over UDP
                    # (an answer too large for it, say): the same server over TCP.
                    answer = await tcp_call(host, port, message, time_limit=time_limit)
                    udp = False
            else:
                answer = await tcp_call(host, port, message, time_limit=time_limit)
        except (ClientError, OSError, c.CodecError) as exc:
            failures.append(f"{host}:{port}: {exc}")
            continue
        if require_digest and not answer.flag(c.FLAG_RRDG):
            failures.append(f"{host}:{port}: the answer has no request digest")
            continue
        return answer, Hop(host, port, udp, answer.header.response_code)
    raise ClientError("; ".join(failures) or "no query interface to ask")


async def follow(
    name: str,
    targets: Sequence[Target],
    *,
    indexes: Sequence[int] = (),
    types: Sequence[str] = (),
    flags: int = c.FLAG_CACR | c.FLAG_PUBL,
    recursion: int = 0,
    udp_first: bool = True,
    max_referrals: int = MAX_REFERRALS,
    retries: Sequence[float] = UDP_RETRIES,
    time_limit: float = 10.0,
    require_digest: bool = False,
) -> tuple[c.Message, list[Hop]]:
    """Resolve ``name`` at ``targets`` and follow service and prefix referrals
    (RC 302/303) to the sites they name, as a resolver walks from the top-level
    node to the node that holds the name. Each hop counts one more in the
    header's recursion count, from ``recursion``. Returns the last answer and
    every hop; a referral that names no site to ask raises :class:`ClientError`."""
    hops: list[Hop] = []
    if require_digest:
        flags |= c.FLAG_RRDG
    for hop in range(max_referrals + 1):
        message = resolution(
            name, indexes=indexes, types=types, flags=flags, recursion=recursion + hop
        )
        answer, asked = await ask_first(
            targets,
            message,
            retries=retries,
            time_limit=time_limit,
            require_digest=require_digest,
        )
        hops.append(asked)
        if answer.header.response_code not in (302, 303):
            return answer, hops
        referral = c.HandleValues.from_bytes(answer.body, values_optional=True)
        sites: Sequence[HandleValue] = referral.values
        if not sites and referral.handle:
            # A referral by handle only: that handle's HS_SITE, from the same server.
            handle = referral.handle.decode("utf-8", "replace")
            ask = resolution(handle, types=("HS_SITE",), flags=flags, recursion=recursion + hop)
            found, _ = await ask_first(
                [(asked.host, asked.port, asked.udp)],
                ask,
                retries=retries,
                time_limit=time_limit,
                require_digest=require_digest,
            )
            sites = values_of(found) if found.header.response_code == 1 else ()
        targets = query_interfaces(sites, udp_first=udp_first)
        if not targets:
            raise ClientError(f"{asked.host}:{asked.port} referred {name} to no query interface")
    raise ClientError(f"more than {max_referrals} referrals for {name}")
