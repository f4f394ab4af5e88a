"""Identifier grammar: the one place that decides what a handle name is.

A handle is ``<prefix>/<suffix>`` split at the first ``/``. The prefix is a
dot-separated list of segments and is ASCII case-insensitive; the suffix is
any UTF-8 text and is case-sensitive unless the node is configured otherwise.
Prefix handles are written ``0.NA/<prefix>``. Every other module asks this one
for parsing, normalization and limits, so the rules cannot drift apart.
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

NA_PREFIX = "0.NA"
"""The prefix under which prefix handles live (``0.NA/88.100``)."""

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PREFIX_SEGMENT = re.compile(r"[!-.0-~]+")  # printable ASCII except space and "/"
_NUMERIC_PREFIX = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


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


def ascii_upper(text: str) -> str:
    """Upper-case ASCII letters only; other characters stay as they are."""
    return text.translate(_ASCII_UPPER)


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

    def __init__(self, *, suffix_case_sensitive: bool = True) -> None:
        self.suffix_case_sensitive = suffix_case_sensitive

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

    def normalize_suffix(self, suffix: str) -> str:
        return suffix if self.suffix_case_sensitive else ascii_upper(suffix)

    def key(self, name: str) -> str:
        return self.parse(name).key


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
