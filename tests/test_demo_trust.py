"""The demo as a self-rooted pilot of trusted resolution in national cryptography:
its settings (one SM2 key for site and issuer, its own certificate as the trust
root, an operator's choices kept), and the demo node itself — a signed record
trusted by the node, by an independent verifier (the ``openssl`` tool for every
SM2256 signature of the chain, digests recomputed from RFC 3651) and by
``idnode verify``; an unsigned one is not; a change is re-signed."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
import urllib.request
from pathlib import Path

import pytest

from idnode import demo_trust
from idnode.config import Config, Endpoint
from idnode.demo import DEMO_ADMIN, demo_enterprises, example_handle
from idnode.verify_cmd import NativeRecords
from loadtest.demo_node import DemoNode
from tests.factories import json_call, run_module
from tests.issuing_tools import independent_verdict
from tests.sm2_tools import openssl_run
from tests.trust_tools import b64url, claims_of, jws_segments

ROOT_HANDLE = "0.NA/88.100"
DEMO = ("--enterprises", "32", "--identifiers", "192")
"""Six records an enterprise: the first one's signed records all exist."""


def _public_pem_by_openssl(directory: Path, private_key: Path) -> bytes:
    return openssl_run(directory, "pkey", "-in", str(private_key), "-pubout")


def test_settings_give_the_demo_one_sm2_key_and_its_own_root(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = demo_trust.settings(Config(data_dir=str(data)))
    key_file = data / demo_trust.SM2_KEY_FILE
    assert config.issuer_key_file == config.site_sm2_key_file == str(key_file)
    assert config.issuer_algorithm == "SM2256"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert config.trust_root_handle == ROOT_HANDLE
    root_file = Path(config.trust_root_keys)
    assert root_file == (data / demo_trust.ROOT_KEY_FILE).absolute()
    # The root is the public half of that very key, as the openssl tool derives it.
    assert root_file.read_bytes() == _public_pem_by_openssl(tmp_path, key_file)
    assert demo_trust.self_rooted(config)
    # A second start keeps the key and its root.
    before = key_file.read_bytes(), root_file.read_bytes()
    assert demo_trust.settings(Config(data_dir=str(data))) == config
    assert (key_file.read_bytes(), root_file.read_bytes()) == before


def test_settings_keep_what_the_operator_chose(tmp_path: Path) -> None:
    elsewhere = tmp_path / "national-root.pem"
    elsewhere.write_bytes(_public_pem_by_openssl(tmp_path, _sm2_key_file(tmp_path)))
    chosen = Config(
        data_dir=str(tmp_path),
        trust_root_handle="88.111.1/0.0",
        trust_root_keys=str(elsewhere),
    )
    config = demo_trust.settings(chosen)
    assert (config.trust_root_handle, config.trust_root_keys) == ("88.111.1/0.0", str(elsewhere))
    assert not demo_trust.self_rooted(config)
    assert not (tmp_path / demo_trust.ROOT_KEY_FILE).exists()
    assert config.issuer_algorithm == "SM2256"  # the demo's SM2 issuer all the same
    # An SM2 site key of the operator's own signs as the issuer too.
    own = _sm2_key_file(tmp_path, "own.pem")
    config = demo_trust.settings(Config(data_dir=str(tmp_path), site_sm2_key_file=str(own)))
    assert config.issuer_key_file == config.site_sm2_key_file == str(own)
    assert Path(config.trust_root_keys).read_bytes() == _public_pem_by_openssl(tmp_path, own)


def _sm2_key_file(directory: Path, name: str = "sm2.pem") -> Path:
    path = directory / name
    path.write_bytes(openssl_run(directory, "genpkey", "-algorithm", "SM2"))
    path.chmod(0o600)
    return path


def _root_jwk(root_file: Path) -> dict[str, str]:
    """The root's ``publicKey`` claim as the IDIS SDK writes an SM2 key (its
    SubjectPublicKeyInfo in ``d``), from the DER the openssl tool makes of the file."""
    der = openssl_run(root_file.parent, "pkey", "-pubin", "-in", str(root_file), "-outform", "DER")
    return {"kty": "SM2", "d": base64.urlsafe_b64encode(der).decode().rstrip("=")}


def _idnode_verify(workdir: Path, name: str, handle_at: str, root_file: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    done = run_module(
        "idnode",
        *("verify", name, "--server", handle_at, "--trust-root", ROOT_HANDLE),
        *("--root-key", str(root_file)),
        cwd=workdir,
        env=env,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
async def test_the_demo_signs_records_that_verify_as_trusted(tmp_path: Path) -> None:
    signed = demo_trust.signed_candidates()
    first = demo_enterprises(1)[0]
    unsigned = example_handle(first, 1)
    root_file = tmp_path / demo_trust.ROOT_KEY_FILE
    with DemoNode(tmp_path, *DEMO) as node:
        handle_at = node.endpoints["handle"]
        for name in signed:
            status, verdict, _ = json_call(f"{node.base}/api/verify/{name}")
            assert status == 200 and verdict["verdict"] == "trusted", verdict
            assert verdict["trusted"] is True and verdict["trustRoot"] == ROOT_HANDLE
            chain = verdict["signatures"][0]["chain"]
            assert [link["iss"] for link in chain] == [
                f"401:0.NA/{first.prefix}",  # the enterprise key, certified on approval
                f"401:{ROOT_HANDLE}",
                f"401:{ROOT_HANDLE}",  # the node's self-issued root
            ]
            assert {link["alg"] for link in chain} == {"SM2256"}

        # An independent verifier, over the native protocol, against the root key file.
        records = NativeRecords(Endpoint.parse(handle_at), udp=False)
        values = await records.values_of(signed[0])
        assert values is not None
        signature = next(v for v in values if v.type == "HS_SIGNATURE")
        assert json.loads(b64url(jws_segments(signature.data)[0]))["alg"] == "SM2256"
        assert claims_of(signature.data)["sub"] == signed[0]
        mine = await independent_verdict(
            signed[0],
            records.values_of,
            root_handle=ROOT_HANDLE,
            root_jwk=_root_jwk(root_file),
            now=time.time(),
        )
        assert mine == "trusted"

        # The command the demo prints.
        code, shown = _idnode_verify(tmp_path, signed[0], handle_at, root_file)
        assert code == 0 and shown.startswith(f"{signed[0]}: trusted"), shown

        # A record the demo did not sign.
        status, verdict, _ = json_call(f"{node.base}/api/verify/{unsigned}")
        assert status == 200 and verdict["verdict"] == "no_signatures", verdict
        assert verdict["trusted"] is False
        code, shown = _idnode_verify(tmp_path, unsigned, handle_at, root_file)
        assert code == 1 and "no_signatures" in shown, shown

        # A change re-signs the record in the same write: still trusted, a new signature.
        changed = signed[1]
        credentials = base64.b64encode(f"300%3A{ROOT_HANDLE}:{DEMO_ADMIN[1]}".encode()).decode()
        old = await _signature_of(records, changed)
        request = json_put(
            f"{node.base}/api/handles/{changed}?index=7",
            [{"index": 7, "type": "EMAIL", "data": "qa@example.com"}],
            {"Authorization": f"Basic {credentials}"},
        )
        assert request in (200, 201)
        status, verdict, _ = json_call(f"{node.base}/api/verify/{changed}")
        assert verdict["verdict"] == "trusted" and 7 in verdict["signedValues"], verdict
        assert await _signature_of(records, changed) != old

        # The SM2 site key the node publishes is the same key: one file for both.
        status, site, _ = json_call(f"{node.base}/api/handles/{ROOT_HANDLE}?index=302")
        assert site["values"][0]["data"]["value"] == _root_jwk(root_file)


async def _signature_of(records: NativeRecords, name: str) -> bytes:
    values = await records.values_of(name)
    assert values is not None
    return next(v.data for v in values if v.type == "HS_SIGNATURE")


def json_put(url: str, body: object, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={**headers, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as got:
        return int(got.status)
