"""The guard stage around the wire front ends: admission, the UDP amplification
bound and the tally, each verdict said in the front end's own words."""

from __future__ import annotations

import time

import dns.flags
import dns.message
import dns.rcode
from prometheus_client import REGISTRY

from metrics.tally import TALLY
from resolver import codes as rc
from resolver.dns.service import WORDING as DNS_WORDING
from resolver.guard import GuardStage, Wording
from resolver.handle import answers
from resolver.handle import client as cl
from resolver.handle import codec as c
from resolver.limits import Guard, Limit, Limits, Refusal

WORDS: Wording[bytes] = Wording(
    "wire_udp",
    "wire_tcp",
    lambda data, refusal, udp: f"refused {refusal.limit.value} {udp}".encode(),
    lambda request, answer: b"over tcp",
    len,
)
FOUND = ("dns", "found", "88.100.1")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_client_over_its_limits_gets_the_front_ends_refusal() -> None:
    limits = Limits(client_rate=1, client_burst=1, exempt=("127.0.0.0/8",))
    stage = GuardStage(WORDS, Guard(limits, clock=lambda: 0.0), 0)
    refused = sample("idnode_rate_limited_total", protocol="wire_tcp", action="refused")
    assert stage.refuse(b"q", "192.0.2.1", False) is None  # the burst
    assert stage.refuse(b"q", "192.0.2.1", False) == b"refused rate False"
    assert stage.refuse(b"q", "192.0.2.1", True) == b"refused rate True"
    assert stage.refuse(b"q", "127.0.0.1", False) is None  # exempt
    after = sample("idnode_rate_limited_total", protocol="wire_tcp", action="refused")
    assert after == refused + 1
    assert sample("idnode_rate_limited_total", protocol="wire_udp", action="refused") >= 1
    assert GuardStage(WORDS, None, 0).refuse(b"q", "192.0.2.1", False) is None


def test_udp_answers_beyond_the_bound_ask_over_tcp_and_count_as_no_resolution() -> None:
    TALLY.fold("2026-01-01")
    found = sample("idnode_resolutions_total", protocol="dns", outcome="found")
    truncated = sample("idnode_rate_limited_total", protocol="wire_udp", action="truncated")
    stage = GuardStage(WORDS, None, 2)
    request, started = b"r" * 10, time.perf_counter()
    assert stage.deliver(request, b"a" * 20, True, FOUND, started) == b"a" * 20  # twice: fits
    assert stage.deliver(request, b"a" * 21, True, FOUND, started) == b"over tcp"
    assert stage.deliver(request, b"a" * 21, False, FOUND, started) == b"a" * 21  # TCP: any size
    assert GuardStage(WORDS, None, 0).deliver(request, b"a" * 999, True, FOUND, started)
    assert stage.deliver(request, b"a", True, None, started) == b"a"  # not a resolution
    TALLY.fold("2026-01-01")
    TALLY.take_daily()
    assert sample("idnode_resolutions_total", protocol="dns", outcome="found") == found + 3
    after = sample("idnode_rate_limited_total", protocol="wire_udp", action="truncated")
    assert after == truncated + 1


def test_native_words() -> None:
    replies = answers.Replies(7, lambda: 1_000_000.0)
    request = cl.resolution("88.100.1/x")
    data = request.to_bytes()
    [busy] = replies.refusal(data, Refusal(Limit.RATE, 1.5), False)
    answer = c.Message.from_bytes(busy)
    assert answer.header.response_code == rc.RC_SERVER_TOO_BUSY
    assert answer.envelope.request_id == request.envelope.request_id
    assert cl.error_text(answer) == "too many requests; retry in 2 s"
    [daily] = replies.refusal(data, Refusal(Limit.DAILY, 60.0), True)
    answer = c.Message.from_bytes(daily)
    assert answer.header.response_code == rc.RC_REQUEST_LIMIT_DAILY
    assert cl.error_text(answer) == "daily request limit; retry in 60 s"
    assert replies.refusal(b"\x00" * 10, Refusal(Limit.RATE, 1.0), True) == []  # a runt
    [garbage] = replies.refusal(b"\x00" * 60, Refusal(Limit.RATE, 1.0), False)
    assert c.Message.from_bytes(garbage).header.response_code == rc.RC_PROTOCOL_ERROR
    [again] = replies.ask_over_tcp(data, [b"x" * 5000])
    answer = c.Message.from_bytes(again)
    assert answer.header.response_code == rc.RC_ERROR
    assert cl.error_text(answer) == "answer too large for UDP: ask over TCP"
    assert replies.ask_over_tcp(b"\x00" * 10, [b"x"]) == []


def test_dns_words() -> None:
    query = dns.message.make_query("x.idnode.test.", "URI").to_wire()
    refused = DNS_WORDING.refusal(query, Refusal(Limit.RATE, 1.0), True)
    answer = dns.message.from_wire(refused)
    assert answer.rcode() == dns.rcode.REFUSED and answer.flags & dns.flags.QR
    assert answer.question and len(refused) <= len(query)
    response = dns.message.make_response(dns.message.from_wire(query)).to_wire()
    assert DNS_WORDING.refusal(response, Refusal(Limit.RATE, 1.0), True) == b""
    assert DNS_WORDING.refusal(b"\x01\x02", Refusal(Limit.RATE, 1.0), False) == b""
    big = dns.message.from_wire(response)
    big.flags |= dns.flags.AA
    truncated = DNS_WORDING.ask_over_tcp(query, big.to_wire() + b"\x00" * 100)
    assert dns.message.from_wire(truncated).flags & dns.flags.TC
    assert DNS_WORDING.size(b"abc") == 3
