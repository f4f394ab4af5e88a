"""Listening sockets: a service's TCP (and UDP) sockets on one port, at the
configured address and at its IPv6 twin (``127.0.0.1`` → ``::1``, ``0.0.0.0`` →
``::``), so every listener also serves IPv6 as the industry's node
requirements ask. Bound here, served by the front ends."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from .config import Config, Endpoint, ipv6_twin

log = logging.getLogger("idnode")

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
PORT_ATTEMPTS = 20
_NO_IPV6 = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT}
"""What binding an IPv6 address says on a host without IPv6."""


class StartupError(RuntimeError):
    """The node cannot start; the message is the one-line reason."""


@dataclass
class Listening:
    """One service's sockets on one port: the configured address first, then its
    IPv6 twin (if any). HTTP has no UDP sockets."""

    tcp: list[socket.socket] = field(default_factory=list)
    udp: list[socket.socket] = field(default_factory=list)

    @property
    def endpoint(self) -> Endpoint:
        """The configured address, with the port bound."""
        return bound(self.tcp[0])

    @property
    def twins(self) -> list[Endpoint]:
        return [bound(sock) for sock in self.tcp[1:]]

    def pairs(self) -> list[tuple[socket.socket, socket.socket]]:
        """(TCP, UDP) per address, for the services that answer on both."""
        return list(zip(self.tcp, self.udp, strict=True))

    def close(self) -> None:
        for sock in (*self.tcp, *self.udp):
            sock.close()


def listen(
    endpoint: Endpoint,
    *,
    udp: bool,
    reuse_port: bool = False,
    twin: str | None = None,
) -> Listening:
    """Bind ``endpoint`` (TCP, and UDP with ``udp``) and its ``twin`` on the same
    port (port 0: one free for all of them). With ``reuse_port`` other processes
    may bind the same port (SO_REUSEPORT) and the kernel spreads clients over
    them. A host without IPv6 serves the configured address alone (and says so)."""
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    for _attempt in range(PORT_ATTEMPTS):
        opened = Listening()
        port = endpoint.port
        host = endpoint.host
        kind = socket.SOCK_STREAM
        try:
            for host in (endpoint.host, *((twin,) if twin else ())):
                here = Listening()
                try:
                    for kind in kinds:
                        sock = _open(host, port, kind, reuse_port=reuse_port, v6only=host == twin)
                        (here.tcp if kind == socket.SOCK_STREAM else here.udp).append(sock)
                        port = sock.getsockname()[1]
                except OSError as exc:
                    here.close()
                    if host == twin and exc.errno in _NO_IPV6:
                        log.warning("no IPv6 here (%s): serving %s only", exc.strerror, endpoint)
                        break
                    raise
                opened.tcp += here.tcp
                opened.udp += here.udp
        except OSError as exc:
            opened.close()
            if endpoint.port == 0 and exc.errno == errno.EADDRINUSE:
                continue  # the first socket's port is taken for another: try another
            where = Endpoint(host, port)
            what = f"UDP {where}" if kind == socket.SOCK_DGRAM else str(where)
            raise StartupError(f"cannot listen on {what}: {exc.strerror}") from None
        return opened
    raise StartupError(f"no port free for all of {endpoint.host} and {twin or 'nothing else'}")


def _open(host: str, port: int, kind: int, *, reuse_port: bool, v6only: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6 and v6only:
            # Beside an IPv4 socket on the same port, the IPv6 one takes IPv6 only.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1024)
        else:
            _grow_receive_buffer(sock)
            sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _grow_receive_buffer(udp: socket.socket) -> None:
    """Room for bursts of datagrams between two reads (the default, ~200 KiB,
    overflows under load): forced past the system limit where allowed (root)."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            udp.setsockopt(socket.SOL_SOCKET, option, UDP_RECEIVE_BUFFER)
            return
        except OSError:
            continue


def listen_service(
    config: Config, endpoint: Endpoint, *, udp: bool, reuse_port: bool = False
) -> Listening:
    """A service's sockets at ``endpoint`` and its IPv6 twin (``listen_ipv6``)."""
    twin = ipv6_twin(config.listen_ipv6, endpoint.host)
    return listen(endpoint, udp=udp, reuse_port=reuse_port, twin=twin)


def bind_pair(
    endpoint: Endpoint, *, reuse_port: bool = False
) -> tuple[socket.socket, socket.socket]:
    """TCP and UDP on one port of one address (port 0: a port free for both)."""
    listening = listen(endpoint, udp=True, reuse_port=reuse_port)
    return listening.tcp[0], listening.udp[0]


def bind_tcp(endpoint: Endpoint, *, reuse_port: bool = False) -> socket.socket:
    return listen(endpoint, udp=False, reuse_port=reuse_port).tcp[0]


def bound(sock: socket.socket) -> Endpoint:
    host, port = sock.getsockname()[:2]
    return Endpoint(host, port)


def announce(service: str, endpoint: Endpoint, twins: Sequence[Endpoint] = ()) -> None:
    """The ready line scripts and tests wait for, after one for each IPv6 twin
    (``http6``...), so that the service's own line comes last."""
    for twin in twins:
        print(f"listening {service}6 {twin}", flush=True)
        log.info("listening %s6 %s", service, twin)
    print(f"listening {service} {endpoint}", flush=True)
    log.info("listening %s %s", service, endpoint)
