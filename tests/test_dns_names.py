"""The identifier ↔ DNS name mapping: reversible for every valid identifier."""

from __future__ import annotations

import itertools
import subprocess

import dns.name
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from registry.dnsnames import (
    Apex,
    Branch,
    Hashed,
    Named,
    NotAnIdentifier,
    ZoneNames,
    suffix_digest,
)
from registry.grammar import Grammar, GrammarError, HandleName, ascii_lower, ascii_upper
from tests.factories import run_module

ARC = "1.2.156.86.1"
NODE = "88.100"
ZONE = "hdl.example.net."
GRAMMAR = Grammar(oid_arc=ARC, node_prefix=NODE)
NAMES = ZoneNames.of(ZONE)

segments = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="/."),
    min_size=1,
    max_size=20,
)
prefixes = st.lists(segments, min_size=1, max_size=4).map(".".join)
suffixes = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=700
)
arcs = st.integers(min_value=0, max_value=2**64)
oids = st.one_of(
    st.lists(arcs, min_size=1, max_size=6).map(lambda a: ARC + "." + ".".join(map(str, a))),
    st.tuples(st.integers(0, 1), st.integers(0, 39), st.lists(arcs, max_size=5)).map(
        lambda t: ".".join(map(str, [t[0], t[1], *t[2]]))
    ),
)


def parse(text: str, grammar: Grammar = GRAMMAR) -> HandleName:
    try:
        return grammar.parse(text, bare_prefix=True)
    except GrammarError:
        assume(False)
        raise


def reverse(dns_text: str, names: ZoneNames = NAMES, grammar: Grammar = GRAMMAR) -> str:
    """The identifier's key back from its DNS name (what a resolver would look up)."""
    target = names.target(dns.name.from_text(dns_text))
    assert isinstance(target, Named | Hashed), target
    if isinstance(target, Hashed):
        return f"hashed {target.prefix.upper()} {target.digest}"
    return grammar.parse(target.text, bare_prefix=True).key


def expected(name: HandleName, names: ZoneNames = NAMES) -> str:
    owner = names.of_identifier(name).to_text()
    if owner.startswith("h-"):
        return f"hashed {name.prefix.upper()} {suffix_digest(name.key)}"
    return name.key


def recased(text: str, flips: list[bool]) -> str:
    """``text`` with the ASCII letters where ``flips`` (repeated) says so in the other case."""
    return "".join(
        ch.swapcase() if flip and ch.isascii() and ch.isalpha() else ch
        for ch, flip in zip(text, itertools.cycle(flips), strict=False)
    )


@settings(max_examples=400, deadline=None)
@given(prefixes, suffixes)
def test_every_handle_maps_and_maps_back(prefix: str, suffix: str) -> None:
    name = parse(f"{prefix}/{suffix}")
    owner = NAMES.of_identifier(name)  # any prefix of up to 4 segments of 20 characters
    assert len(owner.to_wire()) <= 255 and all(len(label) <= 63 for label in owner.labels)
    assert all(label.isascii() for label in owner.labels)  # hostname-safe for any stub
    assert reverse(owner.to_text()) == expected(name)
    # DNS compares names case-insensitively; so does the mapping.
    assert reverse(owner.to_text().upper()) == expected(name)
    if not owner.labels[0].startswith(b"h-"):
        assert expected(name) == name.key


@settings(max_examples=200, deadline=None)
@given(prefixes, suffixes, st.lists(st.booleans(), min_size=1, max_size=8))
def test_case_insensitive_suffixes(prefix: str, suffix: str, flips: list[bool]) -> None:
    """Where suffixes compare case-insensitively, every spelling of a handle in upper
    and lower case has the one DNS name, and that name leads back to the handle; where
    they are case-sensitive, two spellings that differ in a letter are two names."""
    grammar = Grammar(suffix_case_sensitive=False)
    names = ZoneNames.of(ZONE, suffix_case_sensitive=False)
    name = parse(f"{prefix}/{suffix}", grammar)
    owner = names.of_identifier(name).to_text()
    spellings = {
        f"{ascii_upper(prefix)}/{ascii_upper(suffix)}",
        f"{ascii_lower(prefix)}/{ascii_lower(suffix)}",
        f"{recased(prefix, flips)}/{recased(suffix, flips)}",
    }
    for spelling in spellings:
        respelt = parse(spelling, grammar)
        assert respelt.key == name.key
        assert names.of_identifier(respelt).to_text() == owner, spelling
    assert reverse(owner, names, grammar) == expected(name, names)
    assert reverse(owner.upper(), names, grammar) == expected(name, names)

    upper = GRAMMAR.parse(f"{prefix}/{ascii_upper(suffix)}", bare_prefix=True)
    lower = GRAMMAR.parse(f"{prefix}/{ascii_lower(suffix)}", bare_prefix=True)
    if upper.key != lower.key:  # the suffix has a letter, and the node tells cases apart
        assert NAMES.of_identifier(upper) != NAMES.of_identifier(lower)
        assert reverse(NAMES.of_identifier(upper).to_text()) == expected(upper)
        assert reverse(NAMES.of_identifier(lower).to_text()) == expected(lower)


@settings(max_examples=300, deadline=None)
@given(oids)
def test_every_oid_maps_and_maps_back(oid: str) -> None:
    name = parse(oid)
    assert name.oid
    owner = NAMES.of_identifier(name)
    assert owner.to_text().endswith(f".oid-res.{ZONE}")
    labels = [label.decode() for label in owner.labels[: -len(NAMES.oid_subtree.labels)]]
    assert ".".join(reversed(labels)) == oid
    assert reverse(owner.to_text()) == name.key


@pytest.mark.parametrize(
    ("identifier", "dns_name"),
    [  # the examples of the mapping's design note
        ("88.100.1/abc", "abc._.1.100.88.hdl.example.net."),
        ("10.1000/182", "182._.1000.10.hdl.example.net."),
        (
            "10.1016/j.wneu.2019.07.027",
            "b32-d8n7erj5ekn34c1h74n30dpe60p3e._.1016.10.hdl.example.net.",
        ),
        ("88.100.1/设备-001", "b32-t2nbtpd4gsmj0c1h._.1.100.88.hdl.example.net."),
        ("88.100.1/ABC", "b32-85146._.1.100.88.hdl.example.net."),
        ("88.100.1/b32-x", "b32-c8pj4bbo._.1.100.88.hdl.example.net."),
        ("1.2.156.86.1.3.7", "7.3.1.86.156.2.1.oid-res.hdl.example.net."),
    ],
)
def test_known_mappings(identifier: str, dns_name: str) -> None:
    assert NAMES.of_identifier(GRAMMAR.parse(identifier)).to_text() == dns_name
    assert reverse(dns_name) == GRAMMAR.parse(identifier).key


def test_names_that_no_identifier_has() -> None:
    assert NAMES.target(dns.name.from_text(ZONE)) == Apex()
    assert NAMES.target(dns.name.from_text("1.100.88." + ZONE)) == Branch(prefix="88.100.1")
    assert NAMES.target(dns.name.from_text("156.2.1.oid-res." + ZONE)) == Named("1.2.156")
    assert NAMES.target(dns.name.from_text("1.oid-res." + ZONE)) == Branch(arcs=(1,), oid=True)
    for bad in (
        "x.example.com.",  # outside the zone
        "abc._." + ZONE,  # no prefix
        "b32-zz._.1.100.88." + ZONE,  # not base32hex
        "b32-c5h66._.1.100.88." + ZONE,  # base32hex of "abc": plain names are spelt plainly
        "h-abc._.1.100.88." + ZONE,  # a digest is 26 characters
        "a.01.oid-res." + ZONE,  # arcs are numbers without leading zeros
    ):
        with pytest.raises(NotAnIdentifier):
            NAMES.target(dns.name.from_text(bad))


def idnode(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("idnode", "dns-name", *args, env={"PATH": "/usr/bin:/bin"}, timeout=60)


def test_dns_name_command_both_ways() -> None:
    zone = "--zone=" + ZONE
    forward = idnode(zone, "88.100.1/SN-2026-0001")
    assert forward.returncode == 0, forward.stderr
    dns_name = forward.stdout.strip()
    assert dns_name == NAMES.of_identifier(GRAMMAR.parse("88.100.1/SN-2026-0001")).to_text()
    back = idnode(zone, "--reverse", dns_name)
    assert (back.returncode, back.stdout.strip()) == (0, "88.100.1/SN-2026-0001")
    oid = idnode(zone, "1.2.156.86.1.3.7")
    assert oid.stdout.strip() == "7.3.1.86.156.2.1.oid-res." + ZONE
    assert idnode(zone, "--reverse", oid.stdout.strip()).stdout.strip() == "1.2.156.86.1.3.7"
    prefix = idnode(zone, "--reverse", "1.100.88." + ZONE)
    assert prefix.stdout.strip() == "0.NA/88.100.1"
    long_name = "88.100.1/" + "x" * 300
    hashed = idnode(zone, long_name).stdout.strip()
    assert hashed.startswith("h-")
    told = idnode(zone, "--reverse", hashed)
    assert told.returncode == 1 and "TXT" in told.stderr
    for bad in (("88..1/x",), ("--reverse", "www.example.com.")):
        failed = idnode(zone, *bad)
        assert failed.returncode == 1 and failed.stderr.startswith("idnode: ")


def test_prefixes_dns_cannot_hold_are_refused_plainly() -> None:
    from registry.dnsnames import dns_path

    too_wide = GRAMMAR.parse("88.100." + "x_" * 20 + "/abc")  # a segment past one label
    too_long = GRAMMAR.parse(".".join(["8"] * 120) + "/abc")  # 120 labels
    for name in (too_wide, too_long):
        with pytest.raises(NotAnIdentifier):
            NAMES.of_identifier(name)
        assert dns_path(name) is None
    assert dns_path(GRAMMAR.parse("88.100.1/abc")) == "88.100.1._.abc"
    assert dns_path(GRAMMAR.parse("1.2.156.86.1.3.7")) == "oid-res.1.2.156.86.1.3.7"
