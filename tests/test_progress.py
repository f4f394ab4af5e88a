"""Progress of long jobs: plain periodic lines in a log, a bar on a terminal,
and ``idnode backup`` / ``restore`` reporting on stderr while stdout keeps its
one summary line."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from idnode import demo
from idnode.logs import JsonFormatter
from idnode.progress import Progress
from registry.services import Registry
from tests.factories import ADMIN_AK, ADMIN_SK
from tests.test_cli import _env, run_idnode

LINE = re.compile(r"^seeding: [\d,]+/10,240 identifiers \([\d,]+/s, ETA \d+:\d\d:\d\d\)$")
FINAL = re.compile(r"^seeding: 10,240/10,240 identifiers in \d+:\d\d:\d\d \([\d,]+/s\)$")


def _run(progress: Progress, steps: int, size: int, pause: float) -> None:
    with progress:
        for _ in range(steps):
            time.sleep(pause)
            progress.update(size)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The time the progress module sees, moved by the test."""
    fake = FakeClock()
    monkeypatch.setattr("idnode.progress.time", fake)
    return fake


def test_a_log_gets_periodic_plain_lines_and_a_final_one(clock: FakeClock) -> None:
    out = io.StringIO()
    with Progress(
        "seeding", total=10_240, unit="identifiers", stream=out, interval=5, terminal=False
    ) as progress:
        for _ in range(20):  # 512 identifiers a second for 20 s
            clock.now += 1
            progress.update(512)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.splitlines() == [
        "seeding: 2,560/10,240 identifiers (512/s, ETA 0:00:15)",
        "seeding: 5,120/10,240 identifiers (512/s, ETA 0:00:10)",
        "seeding: 7,680/10,240 identifiers (512/s, ETA 0:00:05)",
        "seeding: 10,240/10,240 identifiers (512/s, ETA 0:00:00)",
        "seeding: 10,240/10,240 identifiers in 0:00:20 (512/s)",
    ]


def test_lines_come_in_real_time_too() -> None:
    out = io.StringIO()
    progress = Progress(
        "seeding", total=10_240, unit="identifiers", stream=out, interval=0.05, terminal=False
    )
    _run(progress, 20, 512, 0.02)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3, lines  # 0.4 s or more at one line every 0.05 s, and the last
    assert all(LINE.match(line) for line in lines[:-1]), lines
    assert FINAL.match(lines[-1]), lines[-1]


def test_an_unknown_total_shows_counts_and_rate() -> None:
    out = io.StringIO()
    progress = Progress("restore", unit="rows", stream=out, interval=0.01, terminal=False)
    _run(progress, 5, 5_000, 0.02)
    lines = out.getvalue().splitlines()
    assert all(re.fullmatch(r"restore: [\d,]+ rows \([\d,]+/s\)", line) for line in lines[:-1])
    assert re.fullmatch(r"restore: 25,000 rows in 0:00:00 \([\d,]+/s\)", lines[-1]), lines
    assert "ETA" not in out.getvalue()


def test_a_total_known_later_brings_the_eta() -> None:
    out = io.StringIO()
    with Progress("backup", unit="rows", stream=out, interval=0.0, terminal=False) as progress:
        progress.update(10)
        progress.total = 40
        time.sleep(0.01)
        progress.update(10)
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"backup: 10 rows \([\d,]+/s\)", lines[0]), lines
    assert re.fullmatch(r"backup: 20/40 rows \([\d,]+/s, ETA \d+:\d\d:\d\d\)", lines[1]), lines


def test_a_failed_job_leaves_no_final_line() -> None:
    out = io.StringIO()
    with (
        pytest.raises(RuntimeError),
        Progress("backup", total=9, stream=out, interval=60, terminal=False) as progress,
    ):
        progress.update(3)
        raise RuntimeError("the database went away")
    assert out.getvalue() == ""


@pytest.fixture
def json_log_on(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """The root logger writing JSON to a stream, as ``idnode`` sets it up on stderr."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_lines_take_the_log_format_where_the_log_writes_to_the_same_stream(
    json_log_on: io.StringIO,
) -> None:
    with Progress("seeding", total=4, unit="identifiers", stream=json_log_on, interval=0) as p:
        p.update(2)
        p.update(2)
    entries = [json.loads(line) for line in json_log_on.getvalue().splitlines()]
    assert [e["logger"] for e in entries] == ["idnode.progress"] * 3
    assert entries[0]["msg"].startswith("seeding: 2/4 identifiers (")
    assert (entries[-1]["done"], entries[-1]["total"], entries[-1]["progress"]) == (4, 4, "seeding")
    assert entries[-1]["msg"].startswith("seeding: 4/4 identifiers in ")


def _under_a_terminal(
    argv: list[str], cwd: Path, env: dict[str, str], columns: int = 0
) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout a pipe) of ``columns`` (0: a
    terminal that reports no size): exit code, stdout, and what it showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed: the process is done
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, out, shown.decode("utf-8", "replace")


BAR = re.compile(r"seeding: +\d+%\|.*\| *\d+/10240 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+ identifiers/s\]")


def test_a_terminal_gets_a_bar_with_rate_and_eta(tmp_path: Path) -> None:
    script = (
        "import time\n"
        "from idnode.progress import Progress\n"
        "with Progress('seeding', total=10240, unit='identifiers') as p:\n"
        "    for _ in range(20):\n"
        "        time.sleep(0.03)\n"
        "        p.update(512)\n"
    )
    argv = [sys.executable, "-c", script]
    code, out, shown = _under_a_terminal(argv, tmp_path, _env(None), columns=120)
    assert (code, out) == (0, ""), shown
    assert BAR.search(shown), shown
    assert "\r" in shown  # redrawn in place
    assert "10240/10240" in shown


@pytest.mark.slow
def test_backup_and_restore_report_progress_on_stderr(
    tmp_path: Path, sqlite_template: Path
) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    shutil.copy(sqlite_template, source)
    shutil.copy(sqlite_template, target)
    made = tmp_path / "registry.backup"
    backup = run_idnode(
        "backup", str(made), "--db", f"sqlite+aiosqlite:///{source}", "--log-format", "text",
        cwd=tmp_path,
    )  # fmt: skip
    assert backup.returncode == 0, backup.stderr
    assert re.fullmatch(
        rf"backup: (\d+) rows of schema \w+ written to {re.escape(str(made))} \(0 identifiers\)\n",
        backup.stdout,
    ), backup.stdout
    rows = backup.stdout.split()[1]
    progress = [line for line in backup.stderr.splitlines() if "idnode.progress" in line]
    assert len(progress) == 1 and f"backup: {rows}/{rows} rows in 0:00:" in progress[0], progress

    restore = run_idnode(
        "restore", str(made), "--db", f"sqlite+aiosqlite:///{target}", cwd=tmp_path
    )
    assert restore.returncode == 0, restore.stderr
    assert re.fullmatch(r"restore: \d+ rows of the backup of \S+ loaded \(0 identifiers\)\n",
                        restore.stdout), restore.stdout  # fmt: skip
    entries = [json.loads(line) for line in restore.stderr.splitlines()]  # a JSON log
    done = [e for e in entries if e["logger"] == "idnode.progress"]
    assert len(done) == 1 and done[0]["msg"].startswith(f"restore: {rows} rows in "), entries
    assert done[0]["done"] == int(rows)


@pytest.mark.slow
def test_backup_under_a_terminal_shows_a_bar(tmp_path: Path, sqlite_template: Path) -> None:
    source = tmp_path / "source.db"
    shutil.copy(sqlite_template, source)
    made = tmp_path / "registry.backup"
    argv = [sys.executable, "-m", "idnode", "backup", str(made)]
    env = _env({"IDNODE_DATABASE_URL": f"sqlite+aiosqlite:///{source}"})
    code, out, shown = _under_a_terminal(argv, tmp_path, env)
    assert code == 0, shown
    assert out.startswith("backup: ") and "written to" in out
    assert re.search(r"backup: 100%\|.*\| (\d+)/\1 \[\d\d:\d\d<00:00, +[\d.?]+ rows/s\]", shown), (
        shown
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_demo_seeding_reports_on_stderr_only(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    await demo.seed(registry, enterprises=5, identifiers=200, admin=(ADMIN_AK, ADMIN_SK))
    out, err = capsys.readouterr()
    assert out == ""  # stdout carries the demo's contract lines, printed by the command
    lines = err.splitlines()
    assert re.fullmatch(r"seeding: 5/5 enterprises in 0:00:\d\d \([\d,]+/s\)", lines[0]), lines
    assert re.fullmatch(r"seeding: 200/200 identifiers in 0:00:\d\d \([\d,]+/s\)", lines[-1])
