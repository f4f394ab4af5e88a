"""A reference authoritative DNS server (Knot DNS or NSD) on a loopback port.

Used by differential tests and benchmarks: the same zone is served by a
well-known implementation, so its answers and figures can be compared with
the node's own DNS server. Usage::

    with ReferenceServer("idnode.test.", zone_text) as ref:
        dns.query.udp(query, ref.host, port=ref.port)

The server runs in the foreground as a child process, as the current user
(no privilege drop), bound only to ``host:port`` for UDP and TCP; its
configuration, zone file, pid file, control socket, databases and log all
live in a private temporary directory that is removed on exit.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from .demo_node import stop_process

KNOTD = "knotd"
NSD = "nsd"
KINDS = ("knot", "nsd")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_START_ATTEMPTS = 3
# Log lines that mean the zone did not load: fail at once instead of waiting.
_LOAD_FAILED = "error:"  # knotd and nsd both log "... error: <what>"
_ADDRESS_IN_USE = ("address already in use", "address in use", "can't bind")


# nsd forks a main process and server processes that outlive the process we
# start by a moment when it stops, and nobody waits for them: where PID 1
# does not reap orphans (containers) they stay zombies. So nsd runs under
# this small reaper: a child subreaper that forwards SIGTERM/SIGINT, waits
# for every descendant and exits with nsd's status.
_REAPER = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
child = 0
def forward(signum, frame):
    if child == 0:
        sys.exit(128 + signum)
    try:
        os.kill(child, signum)
    except ProcessLookupError:
        pass
for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(signum, forward)
child = os.fork()
if child == 0:
    os.execv(sys.argv[1], sys.argv[1:])  # exec resets the handlers
status = 0
while True:
    try:
        pid, raw = os.wait()
    except ChildProcessError:
        break
    if pid == child:
        status = os.waitstatus_to_exitcode(raw)
sys.exit(status if status >= 0 else 128 - status)
"""


class ReferenceServerError(RuntimeError):
    """The reference server could not be started or did not load the zone."""


def server_binary(kind: str) -> str | None:
    """The path of knotd or nsd (also looked for in sbin, off a user's PATH)."""
    name = KNOTD if kind == "knot" else NSD
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def reference_kind() -> str | None:
    """``"knot"`` or ``"nsd"``, whichever is installed (Knot preferred), else None."""
    for kind in KINDS:
        if server_binary(kind) is not None:
            return kind
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that is free for both UDP and TCP right now."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise ReferenceServerError(f"no port free for both UDP and TCP on {host}")


def _quote(value: str | Path) -> str:
    text = str(value)
    if '"' in text or "\n" in text:
        raise ValueError(f"unsupported character in path {text!r}")
    return f'"{text}"'


def knot_config(
    directory: Path, origin: str, zone_file: Path, host: str, port: int, workers: int
) -> str:
    """A minimal knotd configuration: everything inside ``directory``."""
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return f"""\
server:
    rundir: {_quote(directory)}
    pidfile: {_quote(directory / "knot.pid")}
    user: {user}:{group}
    listen: {host}@{port}
    udp-workers: {workers}
    tcp-workers: {workers}
    background-workers: 1

log:
  - target: stderr
    any: info

database:
    storage: {_quote(directory / "db")}

control:
    listen: {_quote(directory / "knot.sock")}

template:
  - id: default
    storage: {_quote(directory)}
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off

zone:
  - domain: {origin}
    file: {_quote(zone_file)}
"""


def nsd_config(
    directory: Path, origin: str, zone_file: Path, host: str, port: int, workers: int
) -> str:
    """A minimal nsd configuration: everything inside ``directory``."""
    v6 = ipaddress.ip_address(host).version == 6
    return f"""\
server:
    ip-address: {host}@{port}
    port: {port}
    do-ip4: {"no" if v6 else "yes"}
    do-ip6: {"yes" if v6 else "no"}
    server-count: {workers}
    username: ""
    chroot: ""
    zonesdir: {_quote(directory)}
    database: ""
    zonelistfile: {_quote(directory / "zone.list")}
    xfrdfile: {_quote(directory / "xfrd.state")}
    xfrdir: {_quote(directory)}
    pidfile: {_quote(directory / "nsd.pid")}
    logfile: {_quote(directory / "nsd.log")}
    log-only-syslog: no
    verbosity: 2
    reuseport: {"yes" if workers > 1 else "no"}
    hide-version: yes
    # Response rate limiting is on by default (200 qps per /24): off, as in knot.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0

remote-control:
    control-enable: no

zone:
    name: {origin}
    zonefile: {_quote(zone_file)}
"""


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


class ReferenceServer:
    """Knot DNS (preferred) or NSD serving one zone on ``host`` and a free port."""

    def __init__(
        self,
        origin: str,
        zone_text: str,
        *,
        kind: str | None = None,
        host: str = "127.0.0.1",
        workers: int | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        chosen = kind or reference_kind()
        if chosen is None:
            raise ReferenceServerError("neither knotd nor nsd is installed")
        if chosen not in KINDS:
            raise ValueError(f"unknown reference server kind {chosen!r}")
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1")
        self.kind = chosen
        self.origin = dns.name.from_text(origin)
        self.zone_text = zone_text
        self.host = host
        self.workers = workers or 1
        self.start_timeout = start_timeout
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: Path | None = None

    @property
    def pid(self) -> int:
        """The process we started and signal: knotd itself, or nsd's reaper."""
        if self._proc is None:
            raise ReferenceServerError("the reference server is not running")
        return self._proc.pid

    def server_pids(self) -> list[int]:
        """Every live process of the server (nsd: reaper, xfrd, main, servers)."""
        return group_members(self.pid)

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise ReferenceServerError("the reference server is not running")
        return self._dir

    def log(self) -> str:
        """Everything the server wrote so far (stderr, and nsd's log file)."""
        if self._dir is None:
            return ""
        parts = []
        for name in ("stderr.log", "nsd.log"):
            path = self._dir / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def __enter__(self) -> ReferenceServer:
        self._dir = Path(tempfile.mkdtemp(prefix=f"refdns-{self.kind}-"))
        try:
            self._start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()

    def _start(self) -> None:
        directory = self.directory
        (directory / "db").mkdir()
        zone_file = directory / "zone.db"
        zone_file.write_text(self.zone_text)
        origin = self.origin.to_text()
        binary = server_binary(self.kind)
        if binary is None:
            raise ReferenceServerError(f"{self.kind} is not installed")
        for attempt in range(_START_ATTEMPTS):
            self.port = free_port(self.host)
            conf = directory / f"{self.kind}.conf"
            make = knot_config if self.kind == "knot" else nsd_config
            conf.write_text(make(directory, origin, zone_file, self.host, self.port, self.workers))
            if self.kind == "knot":
                argv = [binary, "-c", str(conf)]
            else:
                argv = [sys.executable, "-c", _REAPER, binary, "-d", "-c", str(conf)]
            self._stderr = directory / "stderr.log"
            with self._stderr.open("wb") as err:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    cwd=directory,
                    start_new_session=True,
                )
            try:
                self._wait_ready()
                return
            except ReferenceServerError:
                log = self.log().lower()
                self._stop()
                if attempt + 1 < _START_ATTEMPTS and any(m in log for m in _ADDRESS_IN_USE):
                    continue  # lost the port to someone else between probe and bind
                raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        query = dns.message.make_query(self.origin, dns.rdatatype.SOA)
        last = "no answer"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise ReferenceServerError(
                    f"{self.kind} exited with status {code} before serving {self.origin}:\n"
                    + self.log()
                )
            try:
                answer = dns.query.udp(query, self.host, port=self.port, timeout=0.2)
            except (dns.exception.DNSException, OSError) as error:
                last = repr(error)
            else:
                if (
                    answer.rcode() == dns.rcode.NOERROR
                    and answer.flags & dns.flags.AA
                    and answer.get_rrset(
                        answer.answer, self.origin, dns.rdataclass.IN, dns.rdatatype.SOA
                    )
                ):
                    return
                last = f"rcode {dns.rcode.to_text(answer.rcode())}"
                lowered = self.log().lower()
                if _LOAD_FAILED in lowered:
                    raise ReferenceServerError(
                        f"{self.kind} did not load zone {self.origin} ({last}):\n" + self.log()
                    )
            time.sleep(0.05)
        raise ReferenceServerError(
            f"{self.kind} did not answer SOA {self.origin} on {self.host}@{self.port} "
            f"within {self.start_timeout:g} s ({last}):\n" + self.log()
        )

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_process(proc, STOP_TIMEOUT)
        # nsd forks helper processes (main, servers) into the session we made
        # for it; they shut down after the one we started: give them time,
        # then make sure none outlives it.
        deadline = time.monotonic() + STOP_TIMEOUT
        while group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if group_members(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _cleanup(self) -> None:
        try:
            self._stop()
        finally:
            directory, self._dir = self._dir, None
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
