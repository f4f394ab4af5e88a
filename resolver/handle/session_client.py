"""Setting up native sessions from the client side (op 400, and op 402 for mode 2),
as HANDLE.NET's resolver does: Diffie-Hellman in RFC 2409's 1024-bit group by
default, or a session key encrypted to the client's RSA key (modes 1 and 3) —
or to its SM2 key, the IDIS SDK's "cipher HDL" (mode 3, an SM4 session).
The :class:`.client.SessionKey` it returns MACs and encrypts what follows."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric import padding, rsa

from registry.crypto import Sm2PrivateKey
from registry.values import decode_public_key, encode_public_key

from . import client as cl
from . import codec as c
from . import session_codec as sc
from . import session_crypto

OAKLEY_GROUP_2 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)
"""The group the JDK gives HANDLE.NET's 1024-bit Diffie-Hellman keys (generator 2)."""


class SessionError(cl.ClientError):
    """The server would not set the session up: its response code and message."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"session setup refused ({code}): {text}")
        self.code = code


@dataclass(frozen=True)
class Setup:
    """What to ask for: the key exchange and the identity the session is for."""

    mode: int = sc.KEY_EXCHANGE_DH
    identity: tuple[str, int] | None = None
    timeout: int = 0
    """Seconds of idleness before the session ends (0: the server's maximum)."""
    private_key: rsa.RSAPrivateKey | Sm2PrivateKey | None = None
    """Modes 1 and 3: the key the session key comes encrypted to."""
    exchange: tuple[str, int] | None = None
    """Mode 3: where the server finds the public half of ``private_key``."""
    group: tuple[int, int] = (OAKLEY_GROUP_2, 2)
    """Mode 4: the Diffie-Hellman modulus and generator."""


async def open_session(
    host: str,
    port: int,
    setup: Setup = Setup(),
    *,
    udp: bool = True,
    version: tuple[int, int] = c.OUR_VERSION,
    on: cl.TcpSession | None = None,
    session_id: int = 0,
) -> tuple[cl.SessionKey, c.Message]:
    """Set a session up over UDP (as HomeNA does), TCP, or the open connection
    ``on`` (under ``session_id``, as IDIS SDKs do): the session and the setup's
    answer (certified: its signature is the caller's to check)."""
    private_dh = 0
    body = sc.SessionSetup(
        setup.mode,
        setup.timeout,
        setup.identity[0].encode() if setup.identity else b"",
        setup.identity[1] if setup.identity else sc.NO_IDENTITY_INDEX,
    )
    if setup.mode == sc.KEY_EXCHANGE_DH:
        private_dh, public = session_crypto.dh_private_public(*setup.group)
        body = replace(body, public_key=public.to_bytes())
    elif setup.mode == sc.KEY_EXCHANGE_CIPHER_CLIENT:
        assert setup.private_key is not None
        body = replace(body, public_key=encode_public_key(setup.private_key.public_key()))
    elif setup.mode == sc.KEY_EXCHANGE_CIPHER_HDL:
        assert setup.exchange is not None
        handle, index = setup.exchange
        body = replace(body, exchange_handle=handle.encode(), exchange_index=index)
    message = cl.request(
        c.OC_SESSION_SETUP,
        body.to_bytes(),
        flags=c.FLAG_CERT | c.FLAG_RRDG,
        version=version,
        session_id=session_id,
    )
    answer = await _exchange(host, port, message, udp=udp, on=on)
    if answer.header.response_code != 1:
        raise SessionError(answer.header.response_code, cl.error_text(answer))
    data = sc.SessionSetupAnswer.from_bytes(answer.body).data
    version = answer.envelope.version
    session_id = answer.envelope.session_id
    if setup.mode == sc.KEY_EXCHANGE_DH:
        cipher, record = sc.split_cipher(data)
        server = sc.DhPublicKey.from_bytes(record)
        shared = pow(server.y, private_dh, server.p)
        key = session_crypto.dh_session_key(shared, server.p, cipher)
        return cl.SessionKey(session_id, key, cipher, version), answer
    if setup.mode == sc.KEY_EXCHANGE_CIPHER_SERVER:
        return await _send_key(host, port, data, session_id, version, udp=udp, on=on), answer
    private = setup.private_key
    assert private is not None
    if isinstance(private, Sm2PrivateKey):
        wrapped = private.decrypt(data)
    else:
        wrapped = private.decrypt(data, padding.PKCS1v15())
    cipher, key = sc.split_cipher(wrapped)
    return cl.SessionKey(session_id, key, cipher, version), answer


async def _exchange(
    host: str, port: int, message: c.Message, *, udp: bool, on: cl.TcpSession | None
) -> c.Message:
    if on is not None:
        return await on.send(message)
    if udp:
        return await cl.udp_call(host, port, message)
    return await cl.tcp_call(host, port, message)


async def _send_key(
    host: str,
    port: int,
    server_key: bytes,
    session_id: int,
    version: tuple[int, int],
    *,
    udp: bool,
    on: cl.TcpSession | None,
) -> cl.SessionKey:
    """Mode 2: a fresh AES key, sent encrypted to the server's RSA key (op 402),
    bare as HANDLE.NET's resolver sends it."""
    public = decode_public_key(server_key)
    if not isinstance(public, rsa.RSAPublicKey):
        raise cl.ClientError("the server's exchange key is not RSA")
    key = session_crypto.new_session_key(sc.CIPHER_AES)
    encrypted = public.encrypt(key, padding.PKCS1v15())
    message = cl.request(
        c.OC_SESSION_EXCHANGEKEY,
        sc.ExchangeKey(encrypted).to_bytes(),
        flags=c.FLAG_CERT,
        version=version,
        session_id=session_id,
    )
    answer = await _exchange(host, port, message, udp=udp, on=on)
    if answer.header.response_code != 1:
        raise SessionError(answer.header.response_code, cl.error_text(answer))
    return cl.SessionKey(session_id, key, sc.CIPHER_AES, version)


async def terminate(
    host: str, port: int, session: cl.SessionKey, *, udp: bool = False
) -> c.Message:
    """Op 401: end the session (the request MACed with its key)."""
    message = session.sign(cl.request(c.OC_SESSION_TERMINATE, c.HandleOnly(b"/").to_bytes()))
    if udp:
        return await cl.udp_call(host, port, message)
    return await cl.tcp_call(host, port, message)
