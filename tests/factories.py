"""What tests share besides fixtures: the test node's constants, builders of valid
registry inputs (so each test states only what it varies), a row counter, the mark
for tests that need an outside tool, a log watcher, the whole node in this process
on loopback, one of our modules run in another, and a JSON call to a node running
in another process and a scrape of its metrics."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Table, func, select

from idnode.config import Config, Endpoint
from idnode.node import Node, open_node
from idnode.servers import Servers, start_servers
from registry.models import HandleValue
from registry.services import Actor, Registry
from registry.services.enterprises import (
    CREDIT_CODE_CHARSET,
    EnterpriseApplication,
    HostedConfig,
    NewUser,
    credit_code_check_char,
)
from registry.services.identifiers import SnmsRecord
from registry.services.templates import TemplateSpec
from registry.templates import ItemChange, RecordValue

ADMIN_AK, ADMIN_SK = "AKTESTADMIN", "test-admin-secret"
"""The administrator's access key and secret every test registry starts with."""
NODE_PREFIX = "88.100"
"""The test node's prefix."""
OID_ARC = "1.2.156.86.1"
"""The OID arc that stands for the node prefix: ``<arc>.N`` names 88.100.N's identifiers."""
USER_PASSWORD = "P@ssw0rd-1"
ROOT = Path(__file__).resolve().parent.parent
"""The repository, where ``python -m`` finds our packages."""


def credit_code(n: int) -> str:
    body = "91320500" + "".join(CREDIT_CODE_CHARSET[(n * 7 + k) % 31] for k in range(9))
    return body + credit_code_check_char(body)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def application(n: int, *, prefix: str | None = None) -> EnterpriseApplication:
    return EnterpriseApplication(
        org_name=f"测试企业{n}有限公司",
        org_crt_type=1,
        org_crt_code=credit_code(n),
        contact_name="张三",
        contact_phone=f"1380000{n:04d}",
        new_user=NewUser(f"user{n}", sha256(USER_PASSWORD), f"u{n}@example.com", f"1390000{n:04d}"),
        industry_category="C",
        industry_specific="39",
        ent_prefix=prefix,
        filing={"entBasicInfo": {"orgName": f"测试企业{n}有限公司"}},
    )


def apply_json(n: int, *, prefix: str | None = None) -> dict[str, Any]:
    basic: dict[str, Any] = {
        "orgName": f"测试企业{n}有限公司",
        "orgNature": 2,
        "orgCrtType": 1,
        "orgCrtCode": credit_code(n),
        "orgAddr": "苏州市工业园区",
        "industryCategory": "C",
        "industrySpecific": "39",
        "website": f"www.e{n}.example.com",
        "contactName": "张三",
        "contactPhone": f"1380000{n:04d}",
        "contactEmail": f"c{n}@example.com",
    }
    if prefix:
        basic["entPrefix"] = prefix
    return {
        "sysUser": {
            "userName": f"user{n}",
            "password": sha256(USER_PASSWORD),
            "email": f"u{n}@example.com",
            "mobile": f"1390000{n:04d}",
            "remarks": "",
        },
        "entBasicInfo": basic,
        "entRegisterManageInfo": {
            "entInfoSyses": [{"sysType": 1, "deployMode": 2, "name": "云"}],
            "servSysBuildType": 1,
            "servSysOperType": 1,
        },
    }


ITEMS = (
    ItemChange("网址", "URL", 2000, True, 1, "string", 1, 255, True),
    ItemChange("名称", "name", 2001, True, 1, "string", 1, 10, True),
    ItemChange("备注", "note", 2002, False, 1, "string", None, None, True),
    ItemChange("内部编号", "secretCode", 2003, False, 1, "string", None, None, False),
)


def template_spec(prefix: str, version: str = "1.0") -> TemplateSpec:
    return TemplateSpec(
        prefix=prefix,
        version=version,
        items=ITEMS,
        industry_category="C",
        carrier_type=1,
        description="测试模板",
    )


def template_json(prefix: str, version: str = "1.0") -> dict[str, Any]:
    return {
        "prefix": prefix,
        "version": version,
        "industryCategory": "C",
        "industrySpecific": "39",
        "industryTrade": "397",
        "industrySubclass": "3971",
        "type": 1,
        "description": "测试模板",
        "items": [
            {
                "name": "网址",
                "idType": "URL",
                "idIndex": "2000",
                "required": True,
                "metadata": {"type": "string", "minLength": 1, "maxLength": 255},
            },
            {
                "name": "名称",
                "idType": "name",
                "idIndex": 2001,
                "required": True,
                "metadata": {"type": "string", "minLength": 1, "maxLength": 10},
            },
            {
                "name": "备注",
                "idType": "note",
                "idIndex": 2002,
                "required": False,
                "metadata": {"type": "string"},
            },
        ],
    }


def handle_value(index: int, vtype: str, data: str | bytes, **fields: Any) -> HandleValue:
    """A value of ``index`` and type ``vtype`` holding ``data`` (text as UTF-8);
    ``fields`` sets the rest (``permissions``, ``ttl``, ``references``, ...)."""
    raw = data.encode() if isinstance(data, str) else data
    return HandleValue(index=index, type=vtype, data=raw, **fields)


def record(
    handle: str,
    *,
    url: str = "https://example.com/x",
    name: str = "产品",
    version: str = "1.0",
    note: str | None = None,
) -> SnmsRecord:
    values = [RecordValue(2000, "URL", url), RecordValue(2001, "name", name)]
    if note is not None:
        values.append(RecordValue(2002, "note", note))
    return SnmsRecord(handle, version, tuple(values))


def record_json(
    handle: str, *, url: str = "https://example.com/x", name: str = "产品", version: str = "1.0"
) -> dict[str, Any]:
    return {
        "handle": handle,
        "templateVersion": version,
        "value": [
            {"index": 2000, "type": "URL", "auth": "", "data": {"format": "string", "value": url}},
            {
                "index": 2001,
                "type": "name",
                "auth": "",
                "data": {"format": "string", "value": name},
            },
        ],
    }


async def hosted_enterprise(
    registry: Registry, admin: Actor, n: int = 1, prefix: str | None = None
) -> str:
    """A filed enterprise with a hosted prefix and template "1.0"; returns the prefix."""
    _, allocated = await registry.enterprises.apply(admin, application(n, prefix=prefix))
    await registry.enterprises.configure(admin, allocated.prefix, HostedConfig(1))
    await registry.templates.create(admin, template_spec(allocated.prefix))
    return allocated.prefix


async def user_actor(registry: Registry, n: int) -> Actor:
    """The user of enterprise n (as :func:`application` files it), logged in."""
    return Actor((await registry.accounts.login(f"user{n}", USER_PASSWORD)).principal, "test")


async def count(registry: Registry, table: Table) -> int:
    """Rows in ``table`` now."""
    async with registry.services.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


def needs(found: bool, what: str) -> pytest.MarkDecorator:
    """Skip a test whose outside tool (dig, knotd, nsd, dnsperf) is missing — except
    in CI, where scripts/test.sh installs them, so missing is a failure there."""
    return pytest.mark.skipif(not found and not os.environ.get("CI"), reason=f"{what} is missing")


def self_signed(directory: Path, stem: str = "") -> tuple[Path, Path, int]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files
    ``<stem>cert.pem`` and ``<stem>key.pem``; and the certificate's serial number."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    serial = x509.random_serial_number()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}cert.pem", directory / f"{stem}key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, serial


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, or with a traceback, logged while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def text(self) -> str:
        return "\n".join(
            f"{r.name}: {r.getMessage()}\n{logging.Formatter().formatException(r.exc_info)}"
            if r.exc_info
            else f"{r.name}: {r.getMessage()}"
            for r in self.records
        )


def json_call(
    url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, Message]:
    """Status, JSON body and headers of a GET (a POST of ``body`` as JSON, when
    given) to a node in another process; an HTTP error is an answer too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as got:
            return got.status, json.loads(got.read() or b"null"), got.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), error.headers


@contextlib.asynccontextmanager
async def node_on_loopback(
    database_url: str, directory: Path, **settings: Any
) -> AsyncIterator[tuple[Node, Servers]]:
    """The whole node in this process with every listener on a free loopback port
    (IPv4), the test administrator bootstrapped, its key files in ``directory``;
    ``settings``: more of its configuration."""
    loopback = Endpoint("127.0.0.1", 0)
    config = Config(
        database_url=database_url,
        http=loopback,
        handle=loopback,
        dns=loopback,
        listen_ipv6="off",
        key_file=str(directory / "node.key"),
        server_key_file=str(directory / "server.pem"),
        bootstrap_admin=f"{ADMIN_AK}:{ADMIN_SK}",
        **settings,
    )
    async with open_node(config) as node:
        servers = await start_servers(node, reuse_port=False, node_gauges=False)
        try:
            yield node, servers
        finally:
            await servers.close()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""A scrape: each series' value by its name and its sorted labels."""


def scrape(url: str) -> Samples:
    """The series a node's ``/metrics`` exposes at ``url``."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def summed(samples: Samples, name: str, **want: str) -> float:
    """The sum of the series called ``name`` whose labels include ``want``."""
    return sum(
        value
        for (series, labels), value in samples.items()
        if series == name and all((k, v) in labels for k, v in want.items())
    )


def run_module(
    module: str,
    *args: str,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` run to its end, its output captured; failing
    is an outcome like any other (``returncode``)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
