"""Configuration fails fast and keeps secrets: every setting checked at start
(exit 2, one line naming the setting), database passwords masked, secrets read
from files (``*_FILE``), ``--data-dir``, and the shipped example file."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import tomllib
from pathlib import Path

import pytest

from idnode import reference
from idnode.cli import build_parser
from idnode.config import INT_RANGES, Config, ConfigError, load, masked
from tests.test_cli import Server, post_json, run_idnode

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "idnode.example.toml"


# --- ranges ----------------------------------------------------------------------------


def test_every_integer_setting_has_a_range_its_default_is_in() -> None:
    integers = {f.name for f in dataclasses.fields(Config) if f.type == "int"}
    assert set(INT_RANGES) == integers
    defaults = Config()
    for name, (low, high) in INT_RANGES.items():
        assert low <= getattr(defaults, name) <= (high if high is not None else 2**63)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "environ", "named"),
    [
        (("serve", "--workers", "-1"), {}, "workers"),
        (("serve",), {"IDNODE_CLIENT_RATE": "-5"}, "client_rate"),
        (("serve",), {"IDNODE_DNS_RRL_BURST": "-1"}, "dns_rrl_burst"),
        (("serve",), {"IDNODE_CACHE_ENTRIES": "-10"}, "cache_entries"),
        (("serve",), {"IDNODE_DATABASE_POOL_SIZE": "0"}, "database_pool_size"),
        (("serve",), {"IDNODE_SYNC_BATCH": "501"}, "sync_batch"),
        (("serve", "--http", "127.0.0.1:70000"), {}, "http"),
        (("serve", "--dns", "127.0.0.1:-53"), {}, "dns"),
        (("serve",), {"IDNODE_METRICS": "nowhere"}, "metrics"),
        (("serve",), {"IDNODE_LIMITS_EXEMPT": "10.0.0.0/33"}, "limits_exempt"),
        (("serve",), {"IDNODE_TRUSTED_PROXIES": "not-a-network"}, "trusted_proxies"),
        (("serve",), {"IDNODE_TIME_ZONE": "Mars/Olympus"}, "time_zone"),
        (("serve",), {"IDNODE_DATABASE_URL": "mysql://x@y/z"}, "database_url"),
        (("serve",), {"IDNODE_TOPLEVEL": "ftp://top"}, "toplevel"),
        (("serve",), {"IDNODE_TLS_CERT": "cert.pem"}, "tls_cert"),
        (("serve",), {"IDNODE_LISTEN_IPV6": "sometimes"}, "listen_ipv6"),
        (("serve",), {"IDNODE_LOG_LEVEL": "loud"}, "log_level"),
        (("migrate",), {"IDNODE_LOGIN_LOCKOUT": "0"}, "login_lockout"),
        (("sync", "status"), {"IDNODE_ACCOUNTING_INTERVAL": "0"}, "accounting_interval"),
        (("demo",), {"IDNODE_DEMO_ENTERPRISES": "-3"}, "demo_enterprises"),
    ],
)
def test_a_bad_setting_stops_the_command_with_one_line_naming_it(
    tmp_path: Path, args: tuple[str, ...], environ: dict[str, str], named: str
) -> None:
    result = run_idnode(*args, cwd=tmp_path, env=environ, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"idnode: configuration error: {named}"), lines[0]
    assert not list(tmp_path.iterdir())  # nothing made: no key, no database


def test_a_bad_value_in_the_file_is_named_too(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text("workers = -2\n")
    with pytest.raises(ConfigError, match=r"^workers: must be between 0 and 1024, got -2$"):
        load(config_file=str(tmp_path / "node.toml"), environ={})
    (tmp_path / "node.toml").write_text("workers = true\n")
    with pytest.raises(ConfigError, match="^workers: expected an integer"):
        load(config_file=str(tmp_path / "node.toml"), environ={})


# --- secrets ---------------------------------------------------------------------------


def test_database_passwords_are_masked_wherever_settings_are_shown(tmp_path: Path) -> None:
    environ = {
        "IDNODE_DATABASE_URL": "postgresql+asyncpg://idnode:s3cret-pw@db:5432/idnode",
        "IDNODE_DATABASE_READ_URL": "postgresql+asyncpg://reader:r3ad-pw@replica/idnode",
        "IDNODE_TOPLEVEL_DATABASE_URL": "postgresql+asyncpg://top:t0p-pw@db/top",
    }
    shown = run_idnode("config", cwd=tmp_path, env=environ)
    assert shown.returncode == 0, shown.stderr
    for secret in ("s3cret-pw", "r3ad-pw", "t0p-pw"):
        assert secret not in shown.stdout
    lines = shown.stdout.splitlines()
    assert 'database_url = "postgresql+asyncpg://idnode:********@db:5432/idnode"' in lines
    assert 'database_read_url = "postgresql+asyncpg://reader:********@replica/idnode"' in lines
    # Nothing to hide, nothing hidden.
    assert (
        masked("database_url", "sqlite+aiosqlite:///idnode.db") == "sqlite+aiosqlite:///idnode.db"
    )
    assert masked("database_url", "postgresql+asyncpg://idnode@db/x") == (
        "postgresql+asyncpg://idnode@db/x"
    )


def test_secrets_come_from_files_as_docker_mounts_them(tmp_path: Path) -> None:
    url_file = tmp_path / "db-url"
    url_file.write_text("postgresql+asyncpg://idnode:from-a-file@db/idnode\n")
    admin_file = tmp_path / "admin"
    admin_file.write_text("AKFILE:file-secret\r\n")
    config = load(
        environ={
            "IDNODE_DATABASE_URL_FILE": str(url_file),
            "IDNODE_BOOTSTRAP_ADMIN_FILE": str(admin_file),
        }
    )
    assert config.database_url == "postgresql+asyncpg://idnode:from-a-file@db/idnode"
    assert config.bootstrap_pair() == ("AKFILE", "file-secret")

    (tmp_path / "node.toml").write_text(f'bootstrap_admin_file = "{admin_file}"\n')
    assert load(config_file=str(tmp_path / "node.toml"), environ={}).bootstrap_admin == (
        "AKFILE:file-secret"
    )
    # A later source still wins over an earlier one's file.
    assert load(
        config_file=str(tmp_path / "node.toml"), environ={"IDNODE_BOOTSTRAP_ADMIN": "AK2:s2"}
    ).bootstrap_pair() == ("AK2", "s2")

    with pytest.raises(ConfigError, match="set bootstrap_admin or bootstrap_admin_file"):
        load(
            environ={
                "IDNODE_BOOTSTRAP_ADMIN": "AK:x",
                "IDNODE_BOOTSTRAP_ADMIN_FILE": str(admin_file),
            }
        )
    missing = tmp_path / "no-such-secret"
    with pytest.raises(ConfigError, match=f"database_url_file: cannot read {missing}"):
        load(environ={"IDNODE_DATABASE_URL_FILE": str(missing)})


@pytest.mark.slow
def test_a_node_logs_its_administrator_in_with_a_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "run-secrets" / "admin"
    secret.parent.mkdir()
    secret.write_text("AKDOCKER:docker-secret-value\n")
    environ = {"IDNODE_BOOTSTRAP_ADMIN_FILE": str(secret), "IDNODE_MIGRATE_ON_START": "true"}
    server = Server("serve", "--http", "127.0.0.1:0", "--handle", "127.0.0.1:0",
                    "--dns", "127.0.0.1:0", cwd=tmp_path, env=environ)  # fmt: skip
    try:
        base = server.wait_for_http(120)
        answer = post_json(
            f"{base}/identity/token", {"username": "AKDOCKER", "password": "docker-secret-value"}
        )
        assert answer["status"] == 1 and answer["data"]["token"]
    finally:
        assert server.stop() == 0


# --- the data directory ------------------------------------------------------------------


def test_relative_files_go_inside_the_data_dir() -> None:
    config = load(environ={}, overrides={"data_dir": "/srv/idnode"})
    assert config.key_file == "/srv/idnode/idnode.key"
    assert config.server_key_file == "/srv/idnode/idnode-server.pem"
    assert config.database_url == "sqlite+aiosqlite:////srv/idnode/idnode.db"
    assert config.toplevel_database_url == "sqlite+aiosqlite:////srv/idnode/idnode-toplevel.db"
    kept = load(
        environ={
            "IDNODE_KEY_FILE": "/etc/idnode/key",
            "IDNODE_DATABASE_URL": "postgresql+asyncpg://u@db/x",
        },
        overrides={"data_dir": "/srv/idnode"},
    )
    assert kept.key_file == "/etc/idnode/key"  # absolute: where the operator put it
    assert kept.database_url == "postgresql+asyncpg://u@db/x"


@pytest.mark.slow
def test_data_dir_holds_the_database_and_the_keys(tmp_path: Path) -> None:
    data = tmp_path / "state" / "idnode"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    migrated = run_idnode("migrate", "--data-dir", str(data), cwd=elsewhere)
    assert migrated.returncode == 0, migrated.stderr
    server = Server("serve", "--data-dir", str(data), "--http", "127.0.0.1:0",
                    "--handle", "127.0.0.1:0", "--dns", "127.0.0.1:0", cwd=elsewhere)  # fmt: skip
    try:
        server.wait_for_http(120)
    finally:
        assert server.stop() == 0
    assert {"idnode.db", "idnode.key", "idnode-server.pem"} <= {p.name for p in data.iterdir()}
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert not list(elsewhere.iterdir())


# --- the example file ----------------------------------------------------------------------


def test_the_shipped_example_is_the_generated_one() -> None:
    generated = reference.example_toml(build_parser())
    assert EXAMPLE.read_text(encoding="utf-8") == generated, (
        "run: idnode config --reference toml > idnode.example.toml"
    )


def test_the_example_uncommented_is_the_defaults(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    settings = [line[1:] for line in text.splitlines() if re.match(r"#[a-z_0-9]+ = ", line)]
    names = [line.partition(" = ")[0] for line in settings]
    assert names == [f.name for f in dataclasses.fields(Config)]
    assert tomllib.loads("\n".join(settings))  # valid TOML once uncommented
    (tmp_path / "all.toml").write_text("\n".join(settings) + "\n")
    assert load(config_file=str(tmp_path / "all.toml"), environ={}) == Config()


def test_idnode_config_reference_toml_prints_it(tmp_path: Path) -> None:
    shown = run_idnode("config", "--reference", "toml", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == EXAMPLE.read_text(encoding="utf-8")
