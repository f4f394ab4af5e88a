"""The identifier grammar: parsing, normalization and limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.grammar import (
    MAX_NAME_BYTES,
    EmptyName,
    Grammar,
    InvalidEncoding,
    InvalidPrefix,
    InvalidSuffix,
    LimitExceeded,
    MissingSlash,
    NameTooLong,
    ascii_upper,
    check_data,
    check_index,
    check_type,
    check_value_count,
    is_enterprise_prefix,
    is_under,
    prefix_handle,
    prefix_parents,
)

grammar = Grammar()
insensitive = Grammar(suffix_case_sensitive=False)

segment = st.text(
    alphabet="0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_",
    min_size=1,
    max_size=8,
)
prefixes = st.lists(segment, min_size=1, max_size=5).map(".".join)
suffixes = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60
)


def test_parse_splits_at_first_slash_and_keeps_text() -> None:
    name = grammar.parse("88.100.12/SN-2026/0001")
    assert (name.prefix, name.suffix, name.text) == (
        "88.100.12",
        "SN-2026/0001",
        "88.100.12/SN-2026/0001",
    )
    assert name.key == "88.100.12/SN-2026/0001"
    assert not name.is_prefix_handle
    assert name.handled_prefix == "88.100.12"


def test_prefix_is_case_insensitive_suffix_is_not_by_default() -> None:
    assert grammar.key("88.Abc/x") == grammar.key("88.ABC/x") == "88.ABC/x"
    assert grammar.key("88.1/Abc") != grammar.key("88.1/abc")
    assert insensitive.key("88.1/Abc") == insensitive.key("88.1/ABC")


def test_only_ascii_letters_fold() -> None:
    # Non-ASCII letters are never folded, so distinct names stay distinct.
    assert ascii_upper("straße-é") == "STRAßE-é"
    assert insensitive.key("88.1/é") != insensitive.key("88.1/É")


def test_prefix_handles() -> None:
    name = grammar.parse("0.na/88.100.12")
    assert name.is_prefix_handle
    assert name.handled_prefix == "88.100.12"
    assert name.key == "0.NA/88.100.12"
    assert grammar.key("0.NA/88.ABC") == grammar.key("0.na/88.abc")
    assert prefix_handle("88.100") == "0.NA/88.100"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("", EmptyName),
        ("88.100.12", MissingSlash),
        ("/suffix", InvalidPrefix),
        ("88..1/x", InvalidPrefix),
        ("88.1./x", InvalidPrefix),
        ("88 1/x", InvalidPrefix),
        ("88.一/x", InvalidPrefix),
        ("88.1/", InvalidSuffix),
        ("88.1/a\x00b", InvalidSuffix),
        ("88.1/a\nb", InvalidSuffix),
        ("0.NA/88..1", InvalidPrefix),
        (b"88.1/\xff\xfe", InvalidEncoding),
    ],
)
def test_malformed_names_raise_precise_errors(raw: str | bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        grammar.parse(raw)


def test_length_limit_is_in_utf8_bytes() -> None:
    prefix = "88.1/"
    fits = prefix + "a" * (MAX_NAME_BYTES - len(prefix))
    assert grammar.parse(fits).text == fits
    with pytest.raises(NameTooLong):
        grammar.parse(fits + "a")
    # 3-byte characters: fewer characters, same byte limit.
    with pytest.raises(NameTooLong):
        grammar.parse(prefix + "标" * ((MAX_NAME_BYTES - len(prefix)) // 3 + 1))


def test_value_limits() -> None:
    assert check_index(1) == 1
    assert check_index(2**31 - 1) == 2**31 - 1
    for bad in (0, -1, 2**31):
        with pytest.raises(LimitExceeded):
            check_index(bad)
    with pytest.raises(LimitExceeded):
        check_type("")
    with pytest.raises(LimitExceeded):
        check_type("T" * 256)
    with pytest.raises(LimitExceeded):
        check_data(b"x" * (64 * 1024 + 1))
    with pytest.raises(LimitExceeded):
        check_value_count(2049)
    assert check_value_count(2048) == 2048


def test_prefix_helpers() -> None:
    assert is_enterprise_prefix("88.100.12")
    assert not is_enterprise_prefix("88.100.x")
    assert not is_enterprise_prefix("88." + "1" * 64)
    assert is_under("88.100.12", "88.100") and is_under("88.100", "88.100")
    assert not is_under("88.1000", "88.100")
    assert prefix_parents("88.100.12") == ["88.100.12", "88.100", "88"]


@given(prefixes, suffixes)
def test_parse_round_trips_and_keys_are_stable(prefix: str, suffix: str) -> None:
    text = f"{prefix}/{suffix}"
    name = grammar.parse(text)
    assert name.text == text
    assert (name.prefix, name.suffix) == (prefix, suffix)
    # The key is a fixed point, and it ignores the case of the prefix only.
    assert grammar.parse(name.key).key == name.key
    assert grammar.key(f"{prefix.lower()}/{suffix}") == grammar.key(f"{prefix.upper()}/{suffix}")
    assert name.key.endswith("/" + suffix)


@given(prefixes, suffixes)
def test_case_insensitive_grammar_folds_whole_name(prefix: str, suffix: str) -> None:
    assert insensitive.key(f"{prefix}/{suffix}") == insensitive.key(
        f"{prefix.lower()}/{ascii_upper(suffix)}"
    )


@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_grammar_error(raw: bytes) -> None:
    from registry.grammar import GrammarError

    try:
        name = grammar.parse(raw)
    except GrammarError:
        return
    assert name.text.encode("utf-8") == raw
