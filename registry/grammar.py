"""Identifier grammar: the one place that decides what a handle name is.

A handle is ``<prefix>/<suffix>`` split at the first ``/``. The prefix is a
dot-separated list of segments and is ASCII case-insensitive; the suffix is
any UTF-8 text and is case-sensitive unless the node is configured otherwise.
Prefix handles are written ``0.NA/<prefix>``. Every other module asks this one
for parsing, normalization and limits, so the rules cannot drift apart.

OID names (``1.2.156.86.1.3.7``: dotted numeric arcs, no slash, first arc 0–2)
are identifiers too, when the node has an OID arc. Each enterprise prefix one
level under the node prefix owns the arc one level under the node's arc with
the same number: with node arc ``1.2.156.86.1`` and node prefix ``88.100``,
``88.100.3`` owns ``1.2.156.86.1.3``, and ``1.2.156.86.1.3.7`` is an
identifier of ``88.100.3``. The arc itself names the prefix (like
``0.NA/88.100.3``). An OID's key is its canonical dotted form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NAME_BYTES = 2048
"""Longest handle name, in UTF-8 bytes (IDIS SDK ``MAX_IDENTIFIER_LENGTH``)."""
MAX_VALUES = 2048
"""Most values one identifier may carry (IDIS SDK ``MAX_IDENTIFIER_VALUES``)."""
MAX_INDEX = 2**31 - 1
"""Value indexes are signed 32-bit on the wire and must be positive."""
MAX_TYPE_BYTES = 255
MAX_DATA_BYTES = 64 * 1024
MAX_ENTERPRISE_PREFIX_CHARS = 64
"""SNMS limits an enterprise prefix to 64 characters."""
MAX_OID_CHARS = 128
"""Longest OID name in dotted form (so that its DNS name always fits)."""

NA_PREFIX = "0.NA"
"""The prefix under which prefix handles live (``0.NA/88.100``)."""

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_PREFIX_SEGMENT = re.compile(r"[!-.0-~]+")  # printable ASCII except space and "/"
_NUMERIC_PREFIX = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")
_OID_LIKE = re.compile(r"[0-2](?:\.[0-9]+)+")


class GrammarError(ValueError):
    """A name or value breaks the identifier grammar or a limit."""


class EmptyName(GrammarError):
    pass


class MissingSlash(GrammarError):
    """The name has no ``/``, so it has no suffix."""


class InvalidPrefix(GrammarError):
    pass


class InvalidSuffix(GrammarError):
    pass


class NameTooLong(GrammarError):
    pass


class InvalidEncoding(GrammarError):
    """The name is not valid UTF-8."""


class LimitExceeded(GrammarError):
    """An index, type, data or value count is outside the allowed range."""


class InvalidOid(GrammarError):
    """Dotted numeric arcs that are no valid OID (leading zeros, bad top arcs)."""


def ascii_upper(text: str) -> str:
    """Upper-case ASCII letters only; other characters stay as they are."""
    return text.translate(_ASCII_UPPER)


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only; other characters stay as they are."""
    return text.translate(_ASCII_LOWER)


def decode_name(raw: bytes) -> str:
    """Decode a name received as bytes, rejecting invalid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEncoding(f"name is not valid UTF-8 (byte {exc.start})") from None


def validate_prefix(prefix: str) -> str:
    """Check a prefix (``88.100.12``, ``0.NA``) and return it unchanged."""
    if not prefix:
        raise InvalidPrefix("prefix is empty")
    if len(prefix.encode("utf-8")) > MAX_NAME_BYTES:
        raise NameTooLong(f"prefix is longer than {MAX_NAME_BYTES} bytes")
    for segment in prefix.split("."):
        if not segment:
            raise InvalidPrefix(f"prefix {prefix!r} has an empty segment")
        if not _PREFIX_SEGMENT.fullmatch(segment):
            raise InvalidPrefix(f"prefix {prefix!r} has a character outside printable ASCII")
    return prefix


def normalize_prefix(prefix: str) -> str:
    """The comparison key of a prefix: validated and ASCII upper-cased."""
    return ascii_upper(validate_prefix(prefix))


def is_enterprise_prefix(prefix: str) -> bool:
    """Whether ``prefix`` has the numeric dotted form the node allocates."""
    return len(prefix) <= MAX_ENTERPRISE_PREFIX_CHARS and bool(_NUMERIC_PREFIX.fullmatch(prefix))


def is_under(prefix: str, parent: str) -> bool:
    """Whether ``prefix`` is ``parent`` itself or one of its derived prefixes."""
    key, parent_key = ascii_upper(prefix), ascii_upper(parent)
    return key == parent_key or key.startswith(parent_key + ".")


def prefix_parents(prefix: str) -> list[str]:
    """``88.100.12`` → ``["88.100.12", "88.100", "88"]``: most specific first."""
    segments = prefix.split(".")
    return [".".join(segments[:n]) for n in range(len(segments), 0, -1)]


@dataclass(frozen=True, slots=True)
class HandleName:
    """A parsed handle name; ``text`` is exactly what the caller wrote."""

    text: str
    prefix: str
    suffix: str
    key: str
    """Normalized form: the unique key in the store and in every cache."""
    oid: bool = False
    """Named by an OID (``text`` is dotted arcs), wherever it leads."""

    @property
    def is_prefix_handle(self) -> bool:
        """``0.NA/88.100`` names the prefix ``88.100`` itself."""
        return ascii_upper(self.prefix) == NA_PREFIX.upper()

    @property
    def handled_prefix(self) -> str:
        """The prefix that decides where this name lives.

        For ``88.100.12/x`` that is ``88.100.12``; for the prefix handle
        ``0.NA/88.100.12`` it is the named prefix ``88.100.12``.
        """
        return self.suffix if self.is_prefix_handle else self.prefix

    def __str__(self) -> str:
        return self.text


class Grammar:
    """Parses and normalizes names under one case-sensitivity setting."""

    def __init__(
        self,
        *,
        suffix_case_sensitive: bool = True,
        oid_arc: str | None = None,
        node_prefix: str | None = None,
    ) -> None:
        self.suffix_case_sensitive = suffix_case_sensitive
        if (oid_arc is None) != (node_prefix is None):
            raise ValueError("an OID arc goes with the node prefix it stands for")
        if oid_arc is not None:
            validate_oid(oid_arc)
        self.oid_arc = oid_arc
        self.node_prefix = node_prefix

    def parse(self, name: str | bytes, *, bare_prefix: bool = False) -> HandleName:
        """Parse ``<prefix>/<suffix>``; raise a :class:`GrammarError` subclass.

        With ``bare_prefix``, a name without a slash (``88.100.12``) is read as
        the prefix handle ``0.NA/88.100.12`` — resolvers answer both forms —
        while ``text`` keeps what the caller wrote.
        """
        text = decode_name(name) if isinstance(name, bytes) else name
        if not text:
            raise EmptyName("name is empty")
        if len(text.encode("utf-8")) > MAX_NAME_BYTES:
            raise NameTooLong(f"name is longer than {MAX_NAME_BYTES} bytes")
        prefix, slash, suffix = text.partition("/")
        if not slash and self.oid_arc is not None and _OID_LIKE.fullmatch(text):
            return self._oid(text)
        if not slash and bare_prefix:
            validate_prefix(text)
            return HandleName(
                text=text, prefix=NA_PREFIX, suffix=text, key=f"{NA_PREFIX}/{ascii_upper(text)}"
            )
        if not slash:
            raise MissingSlash(f"name {text!r} has no '/' between prefix and suffix")
        validate_prefix(prefix)
        if not suffix:
            raise InvalidSuffix(f"name {text!r} has an empty suffix")
        if _CONTROL_CHARS.search(suffix):
            raise InvalidSuffix("suffix contains a control character")
        if ascii_upper(prefix) == NA_PREFIX.upper():
            validate_prefix(suffix)
            # The suffix of a prefix handle is itself a prefix: case-insensitive.
            key = f"{NA_PREFIX}/{ascii_upper(suffix)}"
        else:
            key = f"{ascii_upper(prefix)}/{self.normalize_suffix(suffix)}"
        return HandleName(text=text, prefix=prefix, suffix=suffix, key=key)

    def _oid(self, text: str) -> HandleName:
        """An OID name, placed under the enterprise prefix that owns its arc."""
        assert self.oid_arc is not None and self.node_prefix is not None
        validate_oid(text)
        if text == self.oid_arc:  # the node's own arc names the node's prefix record
            key = f"{NA_PREFIX}/{ascii_upper(self.node_prefix)}"
            return HandleName(text, NA_PREFIX, self.node_prefix, key, oid=True)
        if not text.startswith(self.oid_arc + "."):
            # Another arc's OID: a "prefix" outside this node's, so not served here.
            return HandleName(text, NA_PREFIX, text, text, oid=True)
        enterprise_arc, _, rest = text[len(self.oid_arc) + 1 :].partition(".")
        prefix = f"{self.node_prefix}.{enterprise_arc}"
        if not rest:  # the enterprise's arc: its prefix record
            key = f"{NA_PREFIX}/{ascii_upper(prefix)}"
            return HandleName(text, NA_PREFIX, prefix, key, oid=True)
        return HandleName(text, prefix, rest, text, oid=True)

    def oid_of_prefix(self, prefix: str) -> str | None:
        """The OID arc an enterprise prefix owns, if the node has an arc and the
        prefix is one numeric level under the node prefix."""
        if self.oid_arc is None or self.node_prefix is None:
            return None
        head, _, last = prefix.rpartition(".")
        if ascii_upper(head) != ascii_upper(self.node_prefix) or not last.isdigit():
            return None
        return f"{self.oid_arc}.{int(last)}"

    def normalize_suffix(self, suffix: str) -> str:
        return suffix if self.suffix_case_sensitive else ascii_upper(suffix)

    def key(self, name: str) -> str:
        return self.parse(name).key


def validate_oid(text: str) -> str:
    """Check a dotted OID (``1.2.156.86.1``) and return it unchanged."""
    if len(text) > MAX_OID_CHARS:
        raise NameTooLong(f"OID is longer than {MAX_OID_CHARS} characters")
    if not _OID.fullmatch(text):
        raise InvalidOid(f"{text!r} is not an OID (arcs 0-2 first, no leading zeros)")
    first, second = text.split(".")[:2]
    if first != "2" and int(second) > 39:
        raise InvalidOid(f"{text!r}: under arc {first} the second arc is at most 39")
    return text


def prefix_handle(prefix: str) -> str:
    """``88.100.12`` → ``0.NA/88.100.12``."""
    return f"{NA_PREFIX}/{validate_prefix(prefix)}"


def check_index(index: int) -> int:
    if not 0 < index <= MAX_INDEX:
        raise LimitExceeded(f"index {index} is outside 1..{MAX_INDEX}")
    return index


def check_type(value_type: str) -> str:
    if not value_type:
        raise LimitExceeded("value type is empty")
    if len(value_type.encode("utf-8")) > MAX_TYPE_BYTES:
        raise LimitExceeded(f"value type is longer than {MAX_TYPE_BYTES} bytes")
    if _CONTROL_CHARS.search(value_type):
        raise LimitExceeded("value type contains a control character")
    return value_type


def check_data(data: bytes) -> bytes:
    if len(data) > MAX_DATA_BYTES:
        raise LimitExceeded(f"value data is longer than {MAX_DATA_BYTES} bytes")
    return data


def check_value_count(count: int) -> int:
    if count > MAX_VALUES:
        raise LimitExceeded(f"{count} values exceed the limit of {MAX_VALUES}")
    return count
