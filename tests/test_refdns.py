"""The reference authoritative servers (Knot DNS, NSD) and the dnsperf driver.

Skipped when the Debian packages are missing; ``scripts/test.sh`` installs
them. Every network call has a timeout and every server start is bounded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from loadtest import refdns
from loadtest.dnsperf import available as dnsperf_available
from loadtest.dnsperf import run_dnsperf
from loadtest.refdns import (
    ReferenceServer,
    ReferenceServerError,
    group_members,
    reference_kind,
    server_binary,
)
from tests.factories import needs

ORIGIN = "idnode.test."
ZONE = """\
$ORIGIN idnode.test.
$TTL 300
@        3600 IN SOA ns1.idnode.test. hostmaster.idnode.test. 2024010101 7200 3600 1209600 60
@             IN NS  ns1
ns1           IN A   127.0.0.53
naptr         IN NAPTR 100 10 "U" "E2U+sip" "!^.*$!sip:info@example.com!" .
x         300 IN URI 10 1 "https://example.com/x"
txt           IN TXT "one" "two words" "three"
_svc._tcp     IN A   192.0.2.1
b32-mfrggzdfmztwq2lk.hdl IN A 192.0.2.2
_.1.100.88.hdl.idnode.test. IN URI 1 1 "https://example.com/h/88.100.1/_"
"""
TIMEOUT = 2.0
KINDS = [
    pytest.param(
        kind,
        marks=needs(server_binary(kind) is not None, kind),
    )
    for kind in ("knot", "nsd")
]


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ReferenceServer]:
    with ReferenceServer(ORIGIN, ZONE, kind=request.param) as ref:
        yield ref


def ask(ref: ReferenceServer, name: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(query, ref.host, port=ref.port, timeout=TIMEOUT)
    return dns.query.udp(query, ref.host, port=ref.port, timeout=TIMEOUT)


def answer(response: dns.message.Message, name: str, rdtype: str) -> dns.rrset.RRset:
    return response.find_rrset(
        response.answer,
        dns.name.from_text(name),
        dns.rdataclass.IN,
        dns.rdatatype.from_text(rdtype),
    )


def programs(ref: ReferenceServer) -> set[str]:
    """The programs the server's live processes run (their executables' names)."""
    names = set()
    for pid in ref.server_pids():
        with contextlib.suppress(OSError):  # one may end while we look
            names.add(Path(os.readlink(f"/proc/{pid}/exe")).name)
    return names


@needs(server_binary("knot") is not None, "knot")
def test_knot_serves_when_no_kind_is_asked_for() -> None:
    with ReferenceServer(ORIGIN, ZONE) as ref:
        assert (ref.kind, reference_kind()) == ("knot", "knot")
        assert "knotd" in programs(ref)
        assert ask(ref, ORIGIN, "SOA").rcode() == dns.rcode.NOERROR


@needs(server_binary("nsd") is not None, "nsd")
def test_nsd_serves_where_knot_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refdns, "KNOTD", "knotd-not-installed")
    with ReferenceServer(ORIGIN, ZONE) as ref:
        assert ref.kind == "nsd"
        assert "nsd" in programs(ref) and "knotd" not in programs(ref)
        assert ask(ref, ORIGIN, "SOA").rcode() == dns.rcode.NOERROR


def test_without_either_server_starting_one_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refdns, "KNOTD", "knotd-not-installed")
    monkeypatch.setattr(refdns, "NSD", "nsd-not-installed")
    assert reference_kind() is None
    with pytest.raises(ReferenceServerError, match="neither knotd nor nsd is installed"):
        ReferenceServer(ORIGIN, ZONE)


def test_server_runs_as_us_on_loopback(server: ReferenceServer) -> None:
    assert server.host == "127.0.0.1"
    assert 0 < server.port < 65536
    assert server.pid in server.server_pids()
    with open(f"/proc/{server.pid}/status") as status:
        uid_line = next(line for line in status if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) == os.getuid()
    assert server.directory.is_dir()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_answers(server: ReferenceServer, tcp: bool) -> None:
    soa = ask(server, ORIGIN, "SOA", tcp=tcp)
    assert soa.rcode() == dns.rcode.NOERROR
    assert soa.flags & dns.flags.AA
    assert answer(soa, ORIGIN, "SOA")[0].to_text() == (
        "ns1.idnode.test. hostmaster.idnode.test. 2024010101 7200 3600 1209600 60"
    )

    cases = {
        ("idnode.test.", "NS"): ["ns1.idnode.test."],
        ("ns1.idnode.test.", "A"): ["127.0.0.53"],
        ("naptr.idnode.test.", "NAPTR"): ['100 10 "U" "E2U+sip" "!^.*$!sip:info@example.com!" .'],
        ("x.idnode.test.", "URI"): ['10 1 "https://example.com/x"'],
        ("txt.idnode.test.", "TXT"): ['"one" "two words" "three"'],
        ("_svc._tcp.idnode.test.", "A"): ["192.0.2.1"],
        ("b32-mfrggzdfmztwq2lk.hdl.idnode.test.", "A"): ["192.0.2.2"],
        ("_.1.100.88.hdl.idnode.test.", "URI"): ['1 1 "https://example.com/h/88.100.1/_"'],
    }
    for (name, rdtype), expected in cases.items():
        response = ask(server, name, rdtype, tcp=tcp)
        assert response.rcode() == dns.rcode.NOERROR, (name, rdtype)
        assert response.flags & dns.flags.AA, (name, rdtype)
        rrset = answer(response, name, rdtype)
        assert sorted(rdata.to_text() for rdata in rrset) == expected
        assert rrset.ttl == 300
    txt = answer(ask(server, "txt.idnode.test.", "TXT", tcp=tcp), "txt.idnode.test.", "TXT")
    assert txt[0].strings == (b"one", b"two words", b"three")


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_negative_answers(server: ReferenceServer, tcp: bool) -> None:
    nx = ask(server, "nope.idnode.test.", "A", tcp=tcp)
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nx.flags & dns.flags.AA
    assert not nx.answer
    soa = nx.find_rrset(
        nx.authority, dns.name.from_text(ORIGIN), dns.rdataclass.IN, dns.rdatatype.SOA
    )
    assert soa.ttl == 60  # min(SOA TTL, SOA MINIMUM), RFC 2308

    # An empty non-terminal and a name without the type: NODATA.
    for name in ("hdl.idnode.test.", "x.idnode.test."):
        nodata = ask(server, name, "A", tcp=tcp)
        assert nodata.rcode() == dns.rcode.NOERROR
        assert nodata.flags & dns.flags.AA
        assert not nodata.answer
        assert nodata.authority[0].rdtype == dns.rdatatype.SOA

    outside = ask(server, "example.org.", "A", tcp=tcp)
    assert outside.rcode() == dns.rcode.REFUSED
    assert not outside.flags & dns.flags.AA


@needs(dnsperf_available(), "dnsperf")
def test_dnsperf(server: ReferenceServer) -> None:
    queries = [
        ("ns1.idnode.test", "A"),
        ("x.idnode.test", "URI"),
        ("naptr.idnode.test", "NAPTR"),
        ("nope.idnode.test", "A"),
    ]
    result = run_dnsperf(
        server.host, server.port, queries, seconds=2, clients=4, rate=2000, timeout=1
    )
    assert result.queries_completed > 0
    assert result.queries_sent >= result.queries_completed
    assert result.qps > 0
    assert result.p50_ms is not None and result.p99_ms is not None
    assert result.p99_ms >= result.p50_ms > 0
    assert result.rcodes.get("NOERROR", 0) > 0
    assert result.rcodes.get("NXDOMAIN", 0) > 0
    assert "-l" in result.command and "-Q" in result.command


@pytest.mark.parametrize("kind", KINDS)
def test_stops_and_cleans_up(kind: str) -> None:
    ref = ReferenceServer(ORIGIN, ZONE, kind=kind, workers=2)
    with ref:
        pid, directory = ref.pid, ref.directory
        assert group_members(pid)
    assert not group_members(pid)
    assert not directory.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_bad_zone_reports_the_log(kind: str) -> None:
    bad = ZONE + "broken IN A 999.0.0.1\n"
    with (
        pytest.raises(ReferenceServerError, match="invalid IPv4 address"),
        ReferenceServer(ORIGIN, bad, kind=kind, start_timeout=5),
    ):
        pass
