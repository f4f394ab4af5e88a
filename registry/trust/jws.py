"""JSON Web Signatures as ``HS_CERT`` and ``HS_SIGNATURE`` values carry them.

Pure codec (no I/O). A value's data is the compact serialization ``h.p.s``
(base64url without padding), or — when it starts with ``{`` — the JSON
serialization ``{"payload": …, "signatures": [{"protected": …, "signature": …}]}``
(also its flattened form). The header names one algorithm: ``RS256``,
``DS256`` or ``SM2256``. Verification signs over the received base64 segments
exactly as they came (``protected.payload``), never over a re-encoding, and
the value's bytes are never rewritten.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .keys import KeyFormatError, PublicKey, b64url_decode, b64url_encode
from .signing import ALGORITHMS, PrivateKey, algorithm_for, sign_message, signature_problem

MAX_JWS_BYTES = 64 * 1024
"""Largest JWS read (the largest value data a record may hold); longer is refused
before any decoding, so no value can make the node parse megabytes."""

_SEGMENT = re.compile(r"[A-Za-z0-9_\-]*")
_CHECKED: dict[tuple[bytes, bytes], tuple[PublicKey, str | None]] = {}
"""Outcomes of signature checks, by what was signed and the signature, with the key
object checked against: certificates are checked again on every verification of
a record below them, with the very key objects their (remembered) parents hold."""
_CHECKED_SIZE = 1024
_CHECKED_BYTES = 16 * 1024
"""Only checks of inputs up to this size are remembered: at most ~16 MiB in all."""


class JwsError(ValueError):
    """Value data that is not a JWS this node accepts (the message says why)."""


@dataclass(frozen=True, slots=True)
class Jws:
    """A parsed JWS; the three base64url segments are kept exactly as received."""

    protected: str
    """The header segment (base64url) as received."""
    payload_segment: str
    """The payload segment (base64url) as received."""
    signature_segment: str
    alg: str
    header: dict[str, Any] = field(compare=False, hash=False)
    payload: bytes = field(compare=False)
    signature: bytes = field(compare=False)
    json_form: bool = field(default=False, compare=False)
    """Received in the JSON serialization."""

    @property
    def signing_input(self) -> bytes:
        """What the signature covers: ``protected.payload`` as received."""
        return f"{self.protected}.{self.payload_segment}".encode("ascii")

    def compact(self) -> str:
        return f"{self.protected}.{self.payload_segment}.{self.signature_segment}"

    def json_serialization(self) -> str:
        """The JSON serialization, laid out as HANDLE.NET writes it."""
        return (
            f'{{"payload":"{self.payload_segment}","signatures":[{{"protected":'
            f'"{self.protected}","signature":"{self.signature_segment}"}}]}}'
        )

    def problem_with(self, key: PublicKey) -> str | None:
        """None when ``key`` made this signature; otherwise why it does not verify."""
        remembered = _CHECKED.get((self.signing_input, self.signature))
        if remembered is not None and remembered[0] is key:
            return remembered[1]
        problem = signature_problem(self.alg, key, self.signing_input, self.signature)
        if len(self.signing_input) <= _CHECKED_BYTES:
            _CHECKED[(self.signing_input, self.signature)] = (key, problem)
            if len(_CHECKED) > _CHECKED_SIZE:
                del _CHECKED[next(iter(_CHECKED))]
        return problem

    def verifies(self, key: PublicKey) -> bool:
        return self.problem_with(key) is None


def forget_checks() -> None:
    """Forget every remembered signature check."""
    _CHECKED.clear()


def _segment(text: Any, what: str) -> tuple[str, bytes]:
    if not isinstance(text, str) or not _SEGMENT.fullmatch(text):
        raise JwsError(f"JWS {what} is not base64url without padding")
    try:
        return text, b64url_decode(text, f"JWS {what}")
    except KeyFormatError as exc:
        raise JwsError(str(exc)) from None


def _load_json(raw: str | bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise JwsError(f"JWS {what} is not JSON") from None


def _header(raw: bytes) -> tuple[dict[str, Any], str]:
    header = _load_json(raw, "header")
    if not isinstance(header, dict):
        raise JwsError("JWS header is not a JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise JwsError("JWS header has no alg")
    if alg not in ALGORITHMS:
        raise JwsError(f"JWS alg {alg!r} is not accepted (only {', '.join(ALGORITHMS)})")
    if "crit" in header:
        raise JwsError("JWS header names critical extensions this node does not know")
    return header, alg


def parse_jws(data: bytes | str) -> Jws:
    """A JWS from a value's data: compact, or JSON serialization when it starts with ``{``."""
    if len(data) > MAX_JWS_BYTES:
        raise JwsError(f"JWS is {len(data)} bytes; at most {MAX_JWS_BYTES} are read")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise JwsError("JWS is not UTF-8 text") from None
    else:
        text = data
    text = text.strip()
    json_form = text.startswith("{")
    if json_form:
        document = _load_json(text, "JSON serialization")
        if not isinstance(document, dict):
            raise JwsError("JWS JSON serialization is not an object")
        signatures = document.get("signatures")
        if signatures is None and "signature" in document:
            first: Any = document  # the flattened form
        elif isinstance(signatures, list) and signatures and isinstance(signatures[0], dict):
            first = signatures[0]  # HANDLE.NET reads the first signature only
        else:
            raise JwsError("JWS JSON serialization has no signatures")
        parts = (first.get("protected"), document.get("payload"), first.get("signature"))
    else:
        pieces = text.split(".")
        if len(pieces) != 3:
            raise JwsError(f"compact JWS has {len(pieces)} dot-separated parts, not 3")
        parts = (pieces[0], pieces[1], pieces[2])
    protected, header_raw = _segment(parts[0], "protected header")
    payload_segment, payload = _segment(parts[1], "payload")
    signature_segment, signature = _segment(parts[2], "signature")
    if not signature:
        raise JwsError("JWS signature is empty")
    header, alg = _header(header_raw)
    return Jws(
        protected=protected,
        payload_segment=payload_segment,
        signature_segment=signature_segment,
        alg=alg,
        header=header,
        payload=payload,
        signature=signature,
        json_form=json_form,
    )


def sign_jws(payload: bytes, private_key: PrivateKey) -> Jws:
    """Sign ``payload``; the header is exactly ``{"alg":"…"}`` as HANDLE.NET writes it."""
    alg = algorithm_for(private_key)
    header_raw = f'{{"alg":"{alg}"}}'.encode("ascii")
    protected = b64url_encode(header_raw)
    payload_segment = b64url_encode(payload)
    signature = sign_message(private_key, f"{protected}.{payload_segment}".encode("ascii"))
    return Jws(
        protected=protected,
        payload_segment=payload_segment,
        signature_segment=b64url_encode(signature),
        alg=alg,
        header={"alg": alg},
        payload=payload,
        signature=signature,
    )
