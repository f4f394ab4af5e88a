"""Blocking clients for the load-test users, one per protocol, on the node's own
codecs: Locust runs its users as gevent greenlets, whose patched sockets make
these calls cooperative. Each call makes exactly one attempt — a lost answer is
a failure, never a retry that would count twice at the node. Like real clients,
they ask over TCP when a UDP answer says it is too large for UDP (a truncated DNS
answer; native RC 2): the node counts only the answer given over TCP.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from resolver.codes import RC_ERROR
from resolver.handle import client
from resolver.handle import codec as c

TIMEOUT = 5.0


class NoAnswer(Exception):
    """The server did not answer in time, or answered something unreadable."""


@dataclass(frozen=True)
class Answer:
    code: int
    """The Handle response code, or the DNS RCODE."""
    size: int
    records: int = 0
    """DNS: records in the answer section."""


class DnsClient:
    def __init__(self, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.host, self.port, self.timeout = host, port, timeout

    def query(self, name: str, rdtype: str = "TXT") -> Answer:
        query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype), use_edns=0)
        try:
            reply = dns.query.udp(query, self.host, timeout=self.timeout, port=self.port)
            if reply.flags & dns.flags.TC:
                reply = dns.query.tcp(query, self.host, timeout=self.timeout, port=self.port)
        except (dns.exception.Timeout, OSError, dns.exception.DNSException) as exc:
            raise NoAnswer(f"DNS {name}: {exc!r}") from None
        return Answer(reply.rcode(), len(reply.to_wire()), len(reply.answer))


class HandleUdpClient:
    """One connected UDP socket; one request at a time."""

    def __init__(self, host: str, port: int, timeout: float = TIMEOUT) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.tcp = HandleTcpClient(host, port, timeout)
        """For the answers the node says are too large for UDP."""

    def resolve(self, name: str) -> Answer:
        message = client.resolution(name)
        collector = client.UdpAnswer(message.envelope.request_id)
        for part in c.fragments(message.to_bytes()):
            self.sock.send(part)
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoAnswer(f"no UDP answer for {name}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                raise NoAnswer(f"no UDP answer for {name}") from None
            except OSError as exc:
                raise NoAnswer(f"UDP {name}: {exc}") from None
            whole = collector.add(data)
            if whole is not None:
                answer = _answer(message, whole)
                if answer.code == RC_ERROR:  # too large for UDP: TCP, as HANDLE.NET does
                    return self.tcp.resolve(name)
                return answer

    def close(self) -> None:
        self.sock.close()
        self.tcp.close()


class HandleTcpClient:
    """One persistent TCP connection (as the IDIS SDKs keep), reopened after a failure."""

    def __init__(self, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None

    def resolve(self, name: str) -> Answer:
        message = client.resolution(name)
        try:
            sock = self._connected()
            sock.sendall(message.to_bytes())
            head = self._exactly(sock, c.ENVELOPE_SIZE)
            body = self._exactly(sock, c.message_length(head))
        except (OSError, NoAnswer) as exc:
            self.close()
            raise NoAnswer(f"TCP {name}: {exc}") from None
        return _answer(message, head + body)

    def _connected(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.sock

    @staticmethod
    def _exactly(sock: socket.socket, size: int) -> bytes:
        if size > c.MAX_MESSAGE:
            raise NoAnswer(f"an answer of {size} bytes")
        chunks, need = [], size
        while need:
            chunk = sock.recv(need)
            if not chunk:
                raise NoAnswer("connection closed")
            chunks.append(chunk)
            need -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _answer(sent: c.Message, raw: bytes) -> Answer:
    try:
        message = client.checked(sent, c.Message.from_bytes(raw))
    except (c.CodecError, client.ClientError) as exc:
        raise NoAnswer(str(exc)) from None
    return Answer(message.header.response_code, len(raw))


def handle_code_expected(expect: str, code: int) -> bool:
    """Whether a native answer is what a name of this kind (loadtest.mix) should get."""
    return code == {"found": 1, "not_found": 100, "foreign": 301}[expect] or (
        expect == "foreign" and code in (302, 303)
    )


def dns_answer_expected(expect: str, answer: Answer) -> bool:
    if expect == "found":
        return answer.code == dns.rcode.NOERROR and answer.records > 0
    return answer.code == dns.rcode.NXDOMAIN


def http_status_expected(expect: str, status: int, *, proxy: bool = False) -> bool:
    if expect == "found":
        return status == (302 if proxy else 200)
    if expect == "not_found":
        return status == 404
    return status in ((404,) if proxy else (300, 400))
