"""A real Prometheus for load runs and tests: scrapes one node every second,
evaluates the project's rules, answers PromQL; stopped on exit."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .demo_node import ServerProcess

RULES = Path(__file__).resolve().parent.parent / "metrics" / "rules" / "idnode.rules.yml"
START_SECONDS = 30.0


def binary() -> str | None:
    return shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5) -> tuple[int, Any]:
    """Status and JSON body (or text) of a GET, errors included."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - checked above
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


class Prometheus(ServerProcess):
    """``with Prometheus(workdir, "127.0.0.1:8000") as prom: prom.query(...)``"""

    def __init__(self, workdir: Path, target: str, *, job: str = "idnode") -> None:
        self.workdir = workdir
        self.target = target
        self.job = job
        self.base = ""
        self.log = workdir / "prometheus.log"

    def _start(self) -> None:
        executable = binary()
        if executable is None:
            raise RuntimeError("prometheus is not installed (Debian package prometheus)")
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "rule_files:\n"
            f"  - {json.dumps(str(RULES))}\n"
            "scrape_configs:\n"
            f"  - job_name: {self.job}\n"
            "    metrics_path: /metrics\n"
            "    static_configs:\n"
            f"      - targets: [{json.dumps(self.target)}]\n",
            encoding="utf-8",
        )
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    executable,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_tail()}")
            try:
                if http_get(f"{self.base}/-/ready", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready in {START_SECONDS:g} s:\n{self.log_tail()}")

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"{self.base}{path}{query}")
        if status != 200:
            raise RuntimeError(f"prometheus {path} {params}: HTTP {status} {body}")
        return body

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = self.get("/api/v1/query", query=expr)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus query {expr!r}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        """The value of a one-series result (None when there is none)."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def log_tail(self, count: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-count:])
