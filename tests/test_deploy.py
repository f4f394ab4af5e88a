"""The container image and the compose stack, checked without a Docker
engine (none runs here): the Dockerfile's own install script builds the same
runtime on the same Python in a fresh virtualenv and the node starts from it
with the image's settings and passes the image's health check; the compose
file, the Prometheus configuration and the Grafana provisioning are validated
— against a schema, by promtool, and by following every mount to its file."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from idnode.cli import build_parser
from idnode.config import Config, load
from tests.factories import needs

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = shutil.which("promtool")


@dataclasses.dataclass
class Instruction:
    keyword: str
    arguments: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
    return instructions


def stages() -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for item in dockerfile():
        if item.keyword == "FROM":
            found.append([])
        if found:
            found[-1].append(item)
    return found


def image_env() -> dict[str, str]:
    """The final stage's ENV, as the image's processes see it."""
    env: dict[str, str] = {}
    for item in stages()[-1]:
        if item.keyword == "ENV":
            for pair in shlex.split(item.arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def exec_form(item: Instruction) -> list[str]:
    return list(json.loads(item.arguments))


# --- the Dockerfile -------------------------------------------------------------------


def test_the_image_is_multi_stage_slim_non_root_with_a_health_check() -> None:
    args = {
        item.arguments.partition("=")[0]: item.arguments.partition("=")[2]
        for item in dockerfile()
        if item.keyword == "ARG"
    }
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.\d+-slim-\w+", base)
    build, final = stages()
    assert (
        build[0].arguments == "${PYTHON_IMAGE} AS build" and final[0].arguments == "${PYTHON_IMAGE}"
    )
    # The build stage installs with the project's script; the final stage takes
    # only what it made (no source tree, no compilers, no pip).
    assert any(
        "scripts/install-runtime.sh /opt/idnode" in i.arguments for i in build if i.keyword == "RUN"
    )
    copies = [i.arguments for i in final if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/idnode /opt/idnode"]
    for item in build:
        if item.keyword == "COPY":
            *sources, _target = item.arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), source
    users = [i.arguments for i in final if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    health = [i for i in final if i.keyword == "HEALTHCHECK"]
    # The probe asks wherever the configuration puts the HTTP listener.
    assert len(health) == 1 and health[0].arguments.endswith('CMD ["idnode", "health"]')
    # Load-test tooling stays out of the image.
    assert not any("loadtest" in i.arguments for i in build if i.keyword == "COPY")
    # The node's key files and its database are on the volume.
    volume = json.loads(next(i.arguments for i in final if i.keyword == "VOLUME"))[0]
    env = image_env()
    assert env["IDNODE_DATA_DIR"] == volume
    config = load(environ=env)
    for path in (config.key_file, config.server_key_file, config.database_url):
        assert path.removeprefix("sqlite+aiosqlite:///").startswith(volume + "/")
    settings = {f"IDNODE_{f.name.upper()}" for f in dataclasses.fields(Config)}
    assert {name for name in env if name.startswith("IDNODE_")} <= settings
    entry = exec_form(next(i for i in final if i.keyword == "ENTRYPOINT"))
    command = exec_form(next(i for i in final if i.keyword == "CMD"))
    assert entry == ["idnode"]
    build_parser().parse_args(command)  # a command idnode knows


@pytest.mark.slow
def test_the_image_runtime_built_here_serves_and_passes_its_health_check(tmp_path: Path) -> None:
    """The same base Python, the same install script, the image's settings (with
    its volume at a temporary directory and loopback ports for the test)."""
    base = next(i.arguments for i in dockerfile() if i.keyword == "ARG").partition("=")[2]
    version = re.match(r"python:(\d+)\.(\d+)", base)
    assert version and (int(version[1]), int(version[2])) == sys.version_info[:2]
    # The build stage's context: what its COPY instructions take, where they put it.
    context = tmp_path / "src"
    for item in stages()[0]:
        if item.keyword == "COPY":
            *sources, target = item.arguments.split()
            for source in sources:
                into = context / target / (Path(source).name if target.endswith("/") else "")
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, context / target, dirs_exist_ok=True)
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / source, into)
    runtime = tmp_path / "opt-idnode"
    built = subprocess.run(
        ["sh", str(context / "scripts" / "install-runtime.sh"), str(runtime), str(context)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    assert not (runtime / "bin" / "pip").exists()  # nothing for installing at run time
    assert not (runtime / "bin" / "pytest").exists() and not (runtime / "bin" / "ruff").exists()
    site = next(runtime.glob("lib/python3*/site-packages"))
    assert (site / "idnode").is_dir() and not (site / "loadtest").exists()
    # The monitoring that ships with the node is in the installed package.
    for shipped in (
        "rules/idnode.rules.yml",
        "dashboards/idnode.json",
        "grafana/dashboards.yml",
    ):
        assert (site / "metrics" / shipped).is_file(), shipped

    volume = json.loads(next(i.arguments for i in stages()[-1] if i.keyword == "VOLUME"))[0]
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    env = {k: v.replace(volume, str(data)) for k, v in image_env().items()}
    env["PATH"] = f"{runtime / 'bin'}:/usr/bin:/bin"
    env.update(IDNODE_HTTP="127.0.0.1:0", IDNODE_HANDLE="127.0.0.1:0", IDNODE_DNS="127.0.0.1:0")
    command = exec_form(next(i for i in stages()[-1] if i.keyword == "CMD"))
    log = (tmp_path / "node.log").open("w")
    node = subprocess.Popen(
        [str(runtime / "bin" / "idnode"), *command],
        cwd=data, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    try:
        assert node.stdout is not None
        http = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not http:
            line = node.stdout.readline()
            assert line, (tmp_path / "node.log").read_text()[-3000:]
            if line.startswith("listening http "):
                http = line.split()[-1]
        assert http, "the node did not start"
        health = next(i for i in stages()[-1] if i.keyword == "HEALTHCHECK").arguments
        probe = json.loads(health[health.index("CMD") + 3 :].strip())

        def check(http: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(runtime / "bin" / probe[0]), *probe[1:]],
                env={**env, "IDNODE_HTTP": http},
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip

        checked = check(http)  # the address the node was configured with
        assert checked.returncode == 0, checked.stderr
        elsewhere = check("127.0.0.1:1")  # nothing listens there
        assert elsewhere.returncode == 1 and "127.0.0.1:1/healthz" in elsewhere.stderr
        assert {"idnode-server.pem", "idnode.db", "idnode.key"} <= {p.name for p in data.iterdir()}
        assert os.stat(data / "idnode.key").st_mode & 0o077 == 0
    finally:
        node.terminate()
        assert node.wait(timeout=60) == 0
        log.close()


# --- the compose stack ----------------------------------------------------------------

SERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string", "minLength": 1},
        "build": {"type": ["string", "object"]},
        "command": {"type": "array", "items": {"type": "string"}},
        "environment": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "volumes": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[^:]+:/[^:]*(:ro)?$"},
        },
        "ports": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^\d{1,5}:\d{1,5}/(tcp|udp)$"},
        },
        "depends_on": {
            "oneOf": [
                {"type": "array", "items": {"type": "string"}},
                {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {
                            "condition": {
                                "enum": [
                                    "service_started",
                                    "service_healthy",
                                    "service_completed_successfully",
                                ]
                            }
                        },
                        "required": ["condition"],
                        "additionalProperties": False,
                    },
                },
            ]
        },
        "healthcheck": {
            "type": "object",
            "properties": {
                "test": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                "interval": {"type": "string", "pattern": r"^\d+[smh]$"},
                "timeout": {"type": "string", "pattern": r"^\d+[smh]$"},
                "retries": {"type": "integer", "minimum": 1},
                "disable": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "restart": {"enum": ["no", "always", "unless-stopped", "on-failure"]},
        "stop_grace_period": {"type": "string", "pattern": r"^\d+[smh]$"},
    },
    "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
}
COMPOSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "patternProperties": {"^x-": {}},
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]*$"},
        "services": {"type": "object", "additionalProperties": SERVICE_SCHEMA, "minProperties": 1},
        "volumes": {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
    },
    "required": ["services"],
}
"""The part of the Compose specification this stack uses, and nothing looser."""


def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → host path, for the service's bind mounts."""
    found = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        if source.startswith("."):
            found[target] = str(ROOT / source)
    return found


def test_the_compose_file_is_valid_and_complete() -> None:
    document = compose()
    jsonschema.validate(document, COMPOSE_SCHEMA)
    services = document["services"]
    assert {"postgres", "node", "sync", "toplevel", "prometheus", "grafana"} <= set(services)
    named = set(document.get("volumes", {}))
    settings = {f"IDNODE_{f.name.upper()}" for f in dataclasses.fields(Config)}
    for name, service in services.items():
        for other in service.get("depends_on", []):
            assert other in services, f"{name} depends on unknown {other}"
        for spec in service.get("volumes", []):
            source = spec.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named, f"{name} uses undeclared volume {source}"
        if service.get("image", "").startswith("idnode") or "build" in service:
            build_parser().parse_args(service["command"])  # a command idnode knows
            assert set(service.get("environment", {})) <= settings
    # The node's processes share one key and one database (the key is the node's identity).
    node_volumes = {
        tuple(s["volumes"]) for n, s in services.items() if n in ("node", "sync", "migrate")
    }
    assert len(node_volumes) == 1
    urls = {
        s["environment"]["IDNODE_DATABASE_URL"]
        for n, s in services.items()
        if n in ("node", "sync", "migrate")
    }
    assert len(urls) == 1 and "@postgres:5432/" in urls.pop()


@needs(PROMTOOL is not None, "promtool")
def test_prometheus_config_checks_with_the_projects_rules(tmp_path: Path) -> None:
    service = compose()["services"]["prometheus"]
    in_container = "/etc/prometheus/prometheus.yml"
    host = mounts(service)
    config = yaml.safe_load(Path(host[in_container]).read_text())
    # The rule files it names are the project's, through the compose mounts.
    local_rules = []
    for rule_file in config["rule_files"]:
        assert rule_file in host, f"{rule_file} is not mounted"
        local_rules.append(host[rule_file])
    assert str(ROOT / "metrics" / "rules" / "idnode.rules.yml") in local_rules
    config["rule_files"] = local_rules
    checked_file = tmp_path / "prometheus.yml"
    checked_file.write_text(yaml.safe_dump(config))
    assert PROMTOOL is not None
    checked = subprocess.run(
        [PROMTOOL, "check", "config", str(checked_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # It scrapes the node and the sync worker where the stack runs them, as the job
    # the node-down alert watches.
    job = config["scrape_configs"][0]
    assert job["job_name"] == "idnode"
    targets = set(job["static_configs"][0]["targets"])
    services = compose()["services"]
    assert "node:8000" in targets
    sync_command = services["sync"]["command"]
    assert f"sync:{sync_command[sync_command.index('--metrics') + 1].rsplit(':', 1)[1]}" in targets


def test_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    services = compose()["services"]
    grafana = services["grafana"]
    host = mounts(grafana)
    datasources = yaml.safe_load(
        Path(host["/etc/grafana/provisioning/datasources/idnode.yml"]).read_text()
    )
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    url = re.fullmatch(r"http://([a-z]+):(\d+)", source["url"])
    assert url and url[1] in services and f"{url[2]}:{url[2]}/tcp" in services[url[1]]["ports"]
    providers = yaml.safe_load(
        Path(host["/etc/grafana/provisioning/dashboards/idnode.yml"]).read_text()
    )
    (provider,) = providers["providers"]
    dashboards_dir = Path(host[provider["options"]["path"]])
    assert dashboards_dir == ROOT / "metrics" / "dashboards"
    board = json.loads((dashboards_dir / "idnode.json").read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"  # picks the provisioned one
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (
        Path(host[provider["options"]["path"]]) / Path(home).name == dashboards_dir / "idnode.json"
    )
