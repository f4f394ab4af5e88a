"""What the benchmarks share: ``idnode demo`` in a subprocess on free loopback
ports (ready once every service has announced itself, stopped on exit), CPU
time from ``/proc`` (of processes, and of the whole machine), the version of a
load tool, and the results file."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Self

LISTENING = re.compile(r"^listening (\w+) (\S+)$")
TICKS = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
START_SECONDS = 600.0
"""The first start seeds the demo data set: minutes on a slow machine."""


def stop_process(proc: subprocess.Popen[Any], seconds: float) -> None:
    """Ask a server process to stop (SIGTERM); kill it if it has not within ``seconds``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=seconds)


class ServerProcess:
    """A server in a subprocess for the length of a ``with`` block: ``_start``
    starts it, ``_wait_ready`` returns once it serves (it is stopped again when
    that fails), and the end of the block stops it."""

    proc: subprocess.Popen[Any] | None = None
    stop_seconds = 10.0
    """How long it is given to stop before it is killed."""

    def _start(self) -> None:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._start()
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, self.stop_seconds)


class DemoNode(ServerProcess):
    """``idnode demo`` with its services on free ports of ``HOST``; ``args`` are
    more flags (``--workers 2``, ``--db URL``), ``env`` more ``IDNODE_*``
    settings. Its stdout is read to the end, so it never blocks on a full pipe;
    its stderr goes to ``node.log`` in ``workdir``."""

    def __init__(self, workdir: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.args = args
        self.env = dict(env or {})
        self.endpoints: dict[str, str] = {}
        """``host:port`` by service (``http``, ``handle``, ``dns``), as announced."""
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._log: IO[bytes] | None = None
        self._log_read = 0

    @property
    def database(self) -> Path:
        return self.workdir / "idnode-demo.db"

    @property
    def base(self) -> str:
        return f"http://{self.endpoints['http']}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        """The node's process and its DNS workers."""
        return [self.pid, *children(self.pid)]

    def log_tail(self) -> str:
        path = self.workdir / "node.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    stop_seconds = 30.0  # the node stops its DNS workers (they also stop at EOF)

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
        env["IDNODE_WORKERS"] = "1"  # what a run measures is set in its flags
        env.update(self.env)
        self._log = (self.workdir / "node.log").open("wb")
        self._log_read = 0
        ports = ["--http", f"{HOST}:0", "--handle", f"{HOST}:0", "--dns", f"{HOST}:0"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "idnode", "demo", *ports, *self.args, "--log-format", "json"],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while "dns" not in self.endpoints:  # announced last, after the DNS workers
            self._relay_progress()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the node did not start within {START_SECONDS:g} s")
            try:
                line = self._lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"the node exited before it was ready:\n{self.log_tail()}")
            match = LISTENING.match(line.strip())
            if match:
                self.endpoints[match.group(1)] = match.group(2)

    def _relay_progress(self) -> None:
        """The node's progress lines in its log (seeding, on a first start, takes
        a while), passed on to this process's stderr as they come."""
        try:
            with (self.workdir / "node.log").open("rb") as log:
                log.seek(self._log_read)
                chunk = log.read()
        except OSError:
            return
        whole = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self._log_read += len(whole)
        for raw in whole.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if isinstance(entry, dict) and entry.get("logger") == "idnode.progress":
                    print(f"node: {entry.get('msg', '')}", file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        super().__exit__()
        if self._log is not None:
            self._log.close()


# --- CPU time from /proc ------------------------------------------------------------


def stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, ..., utime (11), stime (12)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_times(pid: int) -> tuple[float, float]:
    """User and kernel CPU time the process has used so far."""
    fields = stat_fields(pid)
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and kernel CPU time these processes have used (gone ones count 0)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += sum(cpu_times(pid))
    return total


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / TICKS


def version(argv: list[str], pattern: str) -> str:
    """What ``argv`` says its version is: ``pattern``'s first group, or "?"."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(pattern, done.stdout + done.stderr)
    return match.group(1) if match else "?"


def write_results(path: str | Path, figures: Any) -> Path:
    """The benchmark's figures as JSON, where the README says they are."""
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    return output
