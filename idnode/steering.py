"""Keep one client's native administration on one process of the node.

With ``workers`` > 1 every process binds the native port with SO_REUSEPORT and
the kernel spreads datagrams and connections over them by a hash of the four
addresses and ports. State the native protocol keeps between messages — a
session set up over UDP and used over TCP, a challenge answered on a new
connection, as HANDLE.NET's own tools do — then lives in one process while the
client's next message lands in another.

A small classic BPF program attached to the port's reuseport groups picks the
process by the client's address instead: every TCP connection, and every
datagram but an anonymous resolution or site-info request (session id 0, op 1
or 2), goes to process ``address mod N``. Resolutions keep the kernel's own
spread, so one busy resolver still uses every core. The program returns the
index of a socket in the group; the groups' members are the processes in the
order they bound (the node first, then each worker, one at a time), the same
order in the UDP and the TCP group. An index beyond the group (a worker being
replaced) makes the kernel fall back to its hash.
"""

from __future__ import annotations

import ctypes
import socket

SO_ATTACH_REUSEPORT_CBPF = 51
"""Linux's socket option (asm-generic/socket.h); Python's socket module lacks it."""
_SKF_NET_OFF = -0x100000
"""Classic BPF reaches the IP header at this offset (linux/filter.h)."""
_SOURCE_OFFSET: dict[int, int] = {socket.AF_INET: 12, socket.AF_INET6: 20}
"""Where the source address is (its last four bytes for IPv6)."""

# Classic BPF instruction codes (linux/bpf_common.h).
_LD_W_ABS = 0x00 | 0x00 | 0x20
_JEQ_K = 0x05 | 0x10 | 0x00
_MOD_K = 0x04 | 0x90 | 0x00
_RET_A = 0x06 | 0x10
_RET_K = 0x06 | 0x00
_SPREAD = 0xFFFFFFFF
"""An index beyond any group: the kernel's own hash chooses."""

# Offsets in a native datagram's payload (envelope, then message header).
_SESSION_ID = 4
_OPCODE = 20
_RESOLUTION = 1
_SITE_INFO = 2


class _Instruction(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


class _Program(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Instruction)))


def program(family: int, kind: int, processes: int) -> list[tuple[int, int, int, int]]:
    """The steering program for one reuseport group, as (code, jt, jf, k)."""
    by_address = [
        (_LD_W_ABS, 0, 0, (_SKF_NET_OFF + _SOURCE_OFFSET[family]) & 0xFFFFFFFF),
        (_MOD_K, 0, 0, processes),
        (_RET_A, 0, 0, 0),
    ]
    if kind == socket.SOCK_STREAM:
        return by_address
    # A datagram: anonymous resolutions and site info spread, the rest by address.
    # (A datagram too short to hold a header ends the program: index 0.)
    return [
        (_LD_W_ABS, 0, 0, _SESSION_ID),
        (_JEQ_K, 0, 3, 0),  # in a session: by address
        (_LD_W_ABS, 0, 0, _OPCODE),
        (_JEQ_K, 4, 0, _RESOLUTION),  # to the last: spread
        (_JEQ_K, 3, 0, _SITE_INFO),
        *by_address,
        (_RET_K, 0, 0, _SPREAD),
    ]


def steer_by_client(sock: socket.socket, processes: int) -> None:
    """Attach the steering program to ``sock``'s reuseport group (OSError where
    the kernel refuses it)."""
    if processes < 2:
        return
    code = program(sock.family, sock.type, processes)
    instructions = (_Instruction * len(code))(*(_Instruction(*step) for step in code))
    attached = _Program(len(code), instructions)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(memoryview(attached)))
