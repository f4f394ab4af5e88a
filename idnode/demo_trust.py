"""The demo node as a self-rooted pilot of trusted resolution in national
cryptography (docs/operations.md, Trusted resolution).

One SM2 key in the data directory is both the node's SM2 site key (the
``HS_PUBKEY`` at ``302:0.NA/<node prefix>``) and its issuer key (SM2256). The
node certifies that key itself, and its own verification (``GET /api/verify``)
takes that self-issued certificate as its trust root, whose public key is also
written beside it for ``idnode verify --root-key``. The demo enterprises get
their certificates as the seeding approves them, the way any enterprise does,
and a few records of the first enterprise are signed with its key in one batch,
then re-signed whenever they change. Its first record, the one the other
examples show, stays unsigned: the plain record beside the signed ones, and an
answer small enough for UDP under the amplification bound (a signature adds a
kilobyte).

What an operator configured stays as it is: the demo fills in only the issuer
and trust root settings left unset.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from registry import store
from registry.crypto.keys import public_pem
from registry.errors import NotFound
from registry.grammar import prefix_handle
from registry.services import Actor, Registry
from registry.trust import ValueRef
from registry.trust.issue import jws_public_key

from .config import Config, Endpoint
from .demo import demo_enterprises, example_handle
from .node import make_data_dir
from .site import load_or_create_issuer_key

SM2_KEY_FILE = "idnode-demo-sm2.pem"
"""The demo's SM2 key (mode 0600, in the data directory): site key and issuer key."""
ROOT_KEY_FILE = "idnode-demo-root.pem"
"""The public key of the demo's self-issued root, for verifiers."""
SIGNED_RECORDS = 4
"""How many of the first enterprise's records are signed (its second to fifth):
enough to show, few enough that a first start does not notice (one batch, some
20 ms in all)."""
_SM2256 = "SM2256"


def _in_data_dir(config: Config, name: str) -> str:
    return str(Path(config.data_dir).expanduser() / name) if config.data_dir else name


def root_key_file(config: Config) -> str:
    """Where the demo writes the public key of its self-issued root."""
    return os.path.abspath(_in_data_dir(config, ROOT_KEY_FILE))


def root_handle(config: Config) -> str:
    """The handle of the node's certificate: its issuer identity's."""
    if config.issuer_identity:
        return ValueRef.parse(config.issuer_identity).handle
    return prefix_handle(config.node_prefix)


def self_rooted(config: Config) -> bool:
    """Whether the demo's own root is the one this node's verification believes."""
    return config.trust_root_keys == root_key_file(config)


def settings(config: Config) -> Config:
    """``config`` as the demo runs it: an SM2 issuer and site key, and its self-issued
    certificate as the trust root, wherever the operator left them unset. The key is
    made here on first start (the trust root names its public key before the node
    publishes the certificate); StartupError for a key file that cannot serve."""
    changes: dict[str, Any] = {}
    issuer_file, algorithm = config.issuer_key_file, config.issuer_algorithm.upper()
    if not issuer_file:
        issuer_file = config.site_sm2_key_file or _in_data_dir(config, SM2_KEY_FILE)
        algorithm = _SM2256
        changes.update(issuer_key_file=issuer_file, issuer_algorithm=algorithm)
    if not config.site_sm2_key_file:
        # One key may serve both only when the issuer signs SM2256 (Config.validate).
        sm2_file = issuer_file if algorithm == _SM2256 else _in_data_dir(config, SM2_KEY_FILE)
        changes["site_sm2_key_file"] = sm2_file
    if not config.trust_root_keys and not config.issuer_cert_file:
        make_data_dir(config)
        key = load_or_create_issuer_key(Path(issuer_file), algorithm)
        root_file = Path(root_key_file(config))
        pem = public_pem(jws_public_key(key))
        if not root_file.exists() or root_file.read_bytes() != pem:
            written = root_file.with_name(f".{root_file.name}.{os.getpid()}.tmp")
            written.write_bytes(pem)
            written.replace(root_file)
        changes.update(trust_root_handle=root_handle(config), trust_root_keys=str(root_file))
    return dataclasses.replace(config, **changes).validate()


def signed_candidates() -> list[str]:
    """The records the demo signs, when the data set is large enough to hold them."""
    first = demo_enterprises(1)[0]
    return [example_handle(first, i) for i in range(2, SIGNED_RECORDS + 2)]


async def sign_records(registry: Registry, admin: tuple[str, str]) -> list[str]:
    """Sign the demo's records that are not signed yet, in one batch; the handles
    that carry a signature afterwards (none when the node issues nothing)."""
    if not registry.trust.enabled:
        return []
    login = await registry.accounts.login(*admin)
    actor = Actor(principal=login.principal, remote="demo")
    first = demo_enterprises(1)[0]
    try:
        await registry.trust.certificate_of(actor, first.prefix)
    except NotFound:  # approved while the node issued nothing (an older demo database)
        await registry.trust.reissue(actor, first.prefix)
    present: list[str] = []
    unsigned: list[str] = []
    async with registry.services.read() as conn:
        for handle in signed_candidates():
            record = await store.get_identifier(conn, registry.handles.parse(handle).key)
            if record is None:
                continue  # a small data set
            present.append(handle)
            if not any(v.type == "HS_SIGNATURE" for v in record.values):
                unsigned.append(handle)
    if unsigned:
        results = await registry.trust.sign_many(actor, unsigned)
        failed = [r for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"demo signing failed for {failed[0].handle}: {failed[0].message}")
    return present


def describe(config: Config, signed: list[str]) -> str:
    """One line on what the demo shows of trusted resolution."""
    if not config.issuer_key_file:
        return "idnode demo: trusted resolution off (no issuer key)"
    if self_rooted(config):
        root = f"self-rooted at {config.trust_root_handle}"
    else:
        root = f"trust root {config.trust_root_handle}"
    records = f"{len(signed)} records signed" if signed else "no records signed"
    return (
        f"idnode demo: trusted resolution {config.issuer_algorithm.upper()}, {root}, "
        f"{records} and re-signed when they change"
    )


def examples(config: Config, base_url: str, native: Endpoint | None) -> list[str]:
    """Commands that verify a signed demo record and show its signature."""
    if not config.issuer_key_file:
        return []
    handle = signed_candidates()[0]
    lines = []
    if native is not None and self_rooted(config):
        lines.append(
            f"idnode verify {handle} --server {native} --trust-root {config.trust_root_handle} "
            f"--root-key {config.trust_root_keys}"
        )
    lines += [
        f"curl -s {base_url}/api/verify/{handle}",
        f"curl -s '{base_url}/api/handles/{handle}?type=HS_SIGNATURE'",
    ]
    return lines
