"""Native sessions (ops 400–402): the bounded table and what it decides, without
transport.

A client sets up a session (over UDP or TCP) to agree on a key with the server;
its later requests carry the session id and an HS_MAC credential made with that
key and a session counter, or come encrypted under it. Inside a session, the
first administrative request is challenged as usual; once the challenge is
answered (as the identity the session named, or any for an anonymous one) the
session is *authenticated* and its later administrative requests need no
challenge: what batch tools (HANDLE.NET's HomeNA and batch runner) rely on.

Sessions set up by HANDLE.NET clients carry id 0 and are given one by the
server; they belong to the client's address and outlive its connections. IDIS
SDKs set up their "encrypted transport" on a logged-in TCP connection under a
session id of their own choosing (sequential, shared by many clients): such a
session lives on that connection alone and ends with it.

Requests that name a session but neither carry its MAC nor come encrypted under
it are taken as outside any session (IDIS clients put their own session id on
every request); a MAC or an encryption under an unknown, expired or another
client's session is RC 500.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric import rsa

from registry.crypto import PrivateKey
from registry.permissions import HandleIdentity
from registry.values import encode_public_key

from . import codec as c
from . import session_codec as sc
from . import session_crypto as crypto
from .connection import Connection
from .credentials import Credential

RC_SERVER_TOO_BUSY = 3
RC_INVALID_CREDENTIAL = 404
RC_SESSION_TIMEOUT = 500
RC_SESSION_FAILED = 501
RC_INVALID_SESSION_KEY = 502
RC_NEED_RSA_KEY = 503
RC_INVALID_SESSION_SETUP = 504
RC_SESSION_MESSAGE_REJECTED = 505

MAX_SESSIONS = 10_000
MAX_SESSIONS_PER_CLIENT = 16
"""Past this a client's least recently used session makes room for its new one:
tools that never terminate their sessions keep working, and cost one address
no more than this."""
MAX_SESSIONS_PER_CONNECTION = 4
MAX_TIMEOUT = 86_400
"""The longest idle time a client may ask for (HANDLE.NET's default session time)."""
REPLAY_WINDOW = 256
"""Counters (or, where the counter is not covered, MACs) remembered per session:
messages may arrive out of order within it, never twice, never below it."""
OLDEST_SESSION_VERSION = (2, 4)
"""Before 2.4 HANDLE.NET sessions are DES, unpadded ECB and unversioned keys."""
NO_MAC_OPS = frozenset({c.OC_SESSION_SETUP, c.OC_SESSION_EXCHANGEKEY})
"""Answers the client must check against the server's key, not the session's."""
_PURGE_EVERY = 1.0


class SessionRefused(Exception):
    """The request cannot be answered as asked: the response code and why."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class _Counters:
    """Session counters seen: each once, none at or below the window's floor."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.floor = 0

    def admit(self, counter: int) -> bool:
        if counter <= self.floor or counter in self.seen:
            return False
        self.seen.add(counter)
        if len(self.seen) > REPLAY_WINDOW:
            self.floor = min(self.seen)
            self.seen.discard(self.floor)
        return True


class _Macs:
    """The latest MACs: where the counter is not covered by the MAC (before 2.7)
    a replay can only be told by its MAC."""

    def __init__(self) -> None:
        self.order: deque[bytes] = deque()
        self.seen: set[bytes] = set()

    def admit(self, mac: bytes) -> bool:
        if mac in self.seen:
            return False
        self.seen.add(mac)
        self.order.append(mac)
        if len(self.order) > REPLAY_WINDOW:
            self.seen.discard(self.order.popleft())
        return True


@dataclass(eq=False)
class Session:
    id: int
    client: str
    """The address that set it up: the only one it answers."""
    version: tuple[int, int]
    """Agreed at setup: its messages are encrypted as this version says."""
    mode: int
    cipher: int
    key: bytes | None
    """None until the client sends it (mode 2)."""
    named_handle: bytes
    named_index: int
    timeout: float
    last_used: float
    connection: Connection
    """Stands for the session in the challenges issued inside it."""
    scope: Connection | None = None
    """An IDIS session's TCP connection (None: the client's address at large)."""
    identity: HandleIdentity | None = None
    """Proven inside the session: administration needs no further challenge."""
    challenged: bool = False
    """A challenge issued inside the session awaits its answer."""
    counters: _Counters = field(default_factory=_Counters)
    macs: _Macs = field(default_factory=_Macs)
    sent: int = 0
    """The server's own session counter (its HS_MACs)."""

    def next_counter(self) -> int:
        self.sent += 1
        return self.sent

    def accepts(self, identity: HandleIdentity) -> bool:
        """Whether a proof of ``identity`` authenticates this session: the identity
        it named at setup (any index when it named 0), any for an anonymous one."""
        if not self.named_handle or self.named_index < 0:
            return True
        named = self.named_handle.decode("utf-8", "replace")
        return named.upper() == identity.handle.upper() and self.named_index in (
            0,
            identity.index,
        )

    def expired(self, now: float) -> bool:
        return now - self.last_used > self.timeout


class Sessions:
    """The node's sessions: bounded in all, per client and per connection."""

    def __init__(
        self,
        server_key: PrivateKey | None = None,
        *,
        max_sessions: int = MAX_SESSIONS,
        per_client: int = MAX_SESSIONS_PER_CLIENT,
        max_timeout: float = MAX_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        reserved: Callable[[int], bool] = lambda _: False,
    ) -> None:
        self.server_key = server_key
        self.max_sessions = max_sessions
        self.per_client = per_client
        self.max_timeout = max_timeout
        self.clock = clock
        self.reserved = reserved
        """Ids not to hand out (those of pending challenges)."""
        self._by_id: dict[int, Session] = {}
        self._by_client: dict[str, list[Session]] = {}
        self._count = 0
        self._next_purge = 0.0
        self._rejection_secret = os.urandom(32)

    def __len__(self) -> int:
        return self._count

    # --- the table -------------------------------------------------------------------

    def find(self, session_id: int, connection: Connection) -> Session | None:
        """The live session ``session_id`` of this connection's client (touched), or None."""
        if not session_id:
            return None
        now = self.clock()
        session = connection.sessions.get(session_id)
        if session is None:
            session = self._by_id.get(session_id)
            if session is None or session.client != connection.remote:
                return None
        if session.expired(now):
            self.close(session)
            return None
        session.last_used = now
        return session

    def close(self, session: Session) -> None:
        """End a session (terminated, expired, evicted or its connection gone)."""
        if session.scope is not None:
            if session.scope.sessions.get(session.id) is not session:
                return
            del session.scope.sessions[session.id]
        elif self._by_id.get(session.id) is session:
            del self._by_id[session.id]
        else:
            return
        mine = self._by_client.get(session.client, [])
        if session in mine:
            mine.remove(session)
            if not mine:
                del self._by_client[session.client]
        self._count -= 1

    def forget(self, connection: Connection) -> list[Session]:
        """The connection is gone: so are the sessions that lived on it."""
        ended = list(connection.sessions.values())
        for session in ended:
            self.close(session)
        return ended

    def purge(self) -> list[Session]:
        """End the sessions idle past their timeout (at most once a second)."""
        now = self.clock()
        if now < self._next_purge:
            return []
        self._next_purge = now + _PURGE_EVERY
        ended = [s for mine in self._by_client.values() for s in mine if s.expired(now)]
        for session in ended:
            self.close(session)
        return ended

    def _room(self, client: str, connection: Connection | None) -> list[Session]:
        """Make room for one more session of ``client`` (on ``connection``): the
        sessions ended for it. RC 3 when the table is full of others' sessions."""
        ended = self.purge()
        mine = self._by_client.get(client, [])
        on_connection = list(connection.sessions.values()) if connection is not None else []
        if len(on_connection) >= MAX_SESSIONS_PER_CONNECTION:
            oldest = min(on_connection, key=lambda s: s.last_used)
            self.close(oldest)
            ended.append(oldest)
        elif len(mine) >= self.per_client:
            oldest = min(mine, key=lambda s: s.last_used)
            self.close(oldest)
            ended.append(oldest)
        if self._count >= self.max_sessions:
            raise SessionRefused(RC_SERVER_TOO_BUSY, "too many sessions: try again later")
        return ended

    def _new_id(self) -> int:
        while True:
            session_id = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
            if session_id and session_id not in self._by_id and not self.reserved(session_id):
                return session_id

    def _add(self, session: Session) -> None:
        if session.scope is not None:
            old = session.scope.sessions.get(session.id)
            if old is not None:
                self.close(old)
            session.scope.sessions[session.id] = session
        else:
            self._by_id[session.id] = session
        self._by_client.setdefault(session.client, []).append(session)
        self._count += 1

    # --- op 400 -----------------------------------------------------------------------

    def setup(
        self,
        request: c.Message,
        setup: sc.SessionSetup,
        version: tuple[int, int],
        connection: Connection,
        *,
        exchange_key: bytes | None = None,
    ) -> tuple[Session, sc.SessionSetupAnswer, list[Session]]:
        """A new session for a setup request answered at ``version``: the session,
        the answer's body (after the digest) and the sessions ended to make room.
        ``exchange_key``: mode 3's HS_PUBKEY record, as published (None: none)."""
        if version < OLDEST_SESSION_VERSION:
            raise SessionRefused(
                RC_INVALID_SESSION_SETUP, "sessions need protocol version 2.4 or later"
            )
        # A TCP setup naming a session id of its own is an IDIS client's: the
        # session lives on that connection, under that id.
        scoped = connection.tcp and request.envelope.session_id != 0
        ended = self._room(connection.remote, connection if scoped else None)
        cipher, key, data = self._exchange(setup, exchange_key)
        now = self.clock()
        timeout = setup.timeout if setup.timeout > 0 else self.max_timeout
        session = Session(
            id=request.envelope.session_id if scoped else self._new_id(),
            client=connection.remote,
            version=version,
            mode=setup.mode,
            cipher=cipher,
            key=key,
            named_handle=setup.identity_handle,
            named_index=setup.identity_index,
            timeout=min(float(timeout), self.max_timeout),
            last_used=now,
            connection=Connection(tcp=True, remote=connection.remote),
            scope=connection if scoped else None,
        )
        self._add(session)
        return session, sc.SessionSetupAnswer(setup.mode, data), ended

    def _exchange(
        self, setup: sc.SessionSetup, exchange_key: bytes | None
    ) -> tuple[int, bytes | None, bytes]:
        """The cipher, the session key (None: the client sends it) and the answer's data."""
        mode = setup.mode
        if mode == sc.KEY_EXCHANGE_DH:
            ours, shared = crypto.dh_exchange(sc.DhPublicKey.from_bytes(setup.public_key))
            key = crypto.dh_session_key(shared, ours.p, sc.CIPHER_AES)
            return sc.CIPHER_AES, key, sc.with_cipher(sc.CIPHER_AES, ours.to_bytes())
        if mode == sc.KEY_EXCHANGE_CIPHER_SERVER:
            if not isinstance(self.server_key, rsa.RSAPrivateKey):
                raise SessionRefused(RC_NEED_RSA_KEY, "this server has no RSA key to exchange with")
            return sc.CIPHER_AES, None, encode_public_key(self.server_key.public_key())
        record = setup.public_key if mode == sc.KEY_EXCHANGE_CIPHER_CLIENT else exchange_key
        if record is None:
            raise SessionRefused(
                RC_SESSION_FAILED,
                f"no HS_PUBKEY at {setup.exchange_index}:"
                f"{setup.exchange_handle.decode('utf-8', 'replace')}",
            )
        wrapped = crypto.wrap_new_key(record)
        if wrapped is None:
            raise SessionRefused(RC_NEED_RSA_KEY, "the exchange key can encrypt nothing (DSA?)")
        return wrapped

    # --- op 402 and op 401 --------------------------------------------------------------

    def receive_key(self, request: c.Message, connection: Connection) -> None:
        """Op 402: the session key of a mode-2 session, encrypted to the server."""
        session = self._live(request.envelope.session_id, connection)
        if session.mode != sc.KEY_EXCHANGE_CIPHER_SERVER or session.key is not None:
            raise SessionRefused(RC_SESSION_FAILED, "no key exchange is pending in this session")
        encrypted = sc.ExchangeKey.from_bytes(request.body).encrypted_key
        assert isinstance(self.server_key, rsa.RSAPrivateKey)  # mode 2 sessions need one
        session.cipher, session.key = crypto.rsa_unwrap(
            self.server_key, encrypted, self._rejection_secret
        )

    def terminate(
        self, request: c.Message, connection: Connection, admitted: Session | None
    ) -> Session:
        """Op 401: end the session the request is MACed (or encrypted) for."""
        if admitted is None:
            self._live(request.envelope.session_id, connection)
            raise SessionRefused(
                RC_INVALID_SESSION_KEY, "ending a session takes a message MACed with its key"
            )
        self.close(admitted)
        return admitted

    def _live(self, session_id: int, connection: Connection) -> Session:
        session = self.find(session_id, connection)
        if session is None:
            raise SessionRefused(RC_SESSION_TIMEOUT, "no such session (timed out?)")
        return session

    # --- requests in, answers out --------------------------------------------------------

    def open_encrypted(self, data: bytes, connection: Connection) -> tuple[bytes, Session]:
        """An encrypted request (envelope EC) decrypted under its session's key: the
        plain message and the session (CodecError: the envelope itself is broken)."""
        envelope = c.Envelope.from_bytes(data)
        if envelope.length > c.MAX_MESSAGE or len(data) < c.ENVELOPE_SIZE + envelope.length:
            raise c.CodecError(f"an encrypted message claiming {envelope.length} bytes")
        if not envelope.session_id:
            raise SessionRefused(RC_SESSION_FAILED, "an encrypted message outside any session")
        session = self._live(envelope.session_id, connection)
        if session.key is None:
            raise SessionRefused(RC_INVALID_SESSION_KEY, "the session has no key yet")
        ciphertext = data[c.ENVELOPE_SIZE : c.ENVELOPE_SIZE + envelope.length]
        try:
            plain = crypto.decrypt(session.cipher, session.key, ciphertext)
        except (c.CodecError, crypto.CipherUnavailable) as exc:
            raise SessionRefused(RC_SESSION_FAILED, str(exc)) from None
        opened = replace(envelope, encrypted=False, length=len(plain))
        return opened.to_bytes() + plain, session

    def admit(
        self, request: c.Message, connection: Connection, opened: Session | None = None
    ) -> Session | None:
        """The session a request is in: the one it was encrypted under (``opened``),
        or the one whose HS_MAC it carries — checked, and its counter never seen
        before. None: the request is outside any session."""
        if not sc.is_mac(request.credential):
            return opened
        credential = Credential.from_bytes(request.credential)
        session = opened or self._live(request.envelope.session_id, connection)
        if session.key is None:
            raise SessionRefused(RC_INVALID_SESSION_KEY, "the session has no key yet")
        counter = credential.signer_index
        if not crypto.mac_holds(
            request, counter, session.key, credential.digest_algorithm, credential.signature
        ):
            raise SessionRefused(RC_INVALID_SESSION_KEY, "the message's session MAC does not hold")
        version = request.envelope.version
        if version >= (2, 5) and not session.counters.admit(counter):
            raise SessionRefused(
                RC_SESSION_MESSAGE_REJECTED, f"session counter {counter} was seen or is too old"
            )
        if version < (2, 7) and not session.macs.admit(credential.signature):
            raise SessionRefused(RC_SESSION_MESSAGE_REJECTED, "a replayed session message")
        return session

    def seal(self, message: c.Message, session: Session, *, encrypt: bool) -> bytes:
        """An answer inside ``session``, encoded: HS_MAC'd when certified (CT) but
        for the key exchange itself, encrypted when asked."""
        key = session.key
        if key is not None and message.flag(c.FLAG_CERT) and message.opcode not in NO_MAC_OPS:
            counter = session.next_counter()
            name = sc.mac_name(message.envelope.version)
            mac = crypto.mac(message, counter, key, name)
            assert mac is not None  # the name is the version's own
            message = replace(message, credential=sc.mac_credential(counter, name, mac))
        encoded = message.to_bytes()
        if not encrypt or key is None:
            return encoded
        ciphertext = crypto.encrypt(session.cipher, key, encoded[c.ENVELOPE_SIZE :])
        envelope = replace(message.envelope, encrypted=True, length=len(ciphertext))
        return envelope.to_bytes() + ciphertext

    def signs(self, message: c.Message, session: Session | None) -> bool:
        """Whether :meth:`seal` MACs this answer (else the server's key signs it)."""
        return (
            session is not None
            and session.key is not None
            and message.flag(c.FLAG_CERT)
            and message.opcode not in NO_MAC_OPS
        )
