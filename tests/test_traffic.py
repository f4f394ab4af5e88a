"""Traffic analysis: the per-client table in a bounded size, its
reading each window (busiest clients, scanning clients), and a real node that
spots a client asking for unknown names on every protocol."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from idnode.demo import demo_enterprises, example_handle
from loadtest.demo_node import DemoNode
from metrics import traffic
from metrics.traffic import ClientTraffic, dns_not_found, handle_not_found
from resolver import codes as rc
from resolver.handle import client


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_window_names_the_busiest_and_the_scanning_clients() -> None:
    clock = Clock()
    table = ClientTraffic(scan_min_not_found=10, scan_ratio=0.5, window=60, clock=clock)
    assert table.roll() is None  # the first call starts the clock
    for _ in range(50):
        table.see("192.0.2.1", not_found=False)  # busy, and finds what it asks
    for i in range(30):
        table.see("2001:db8::1", not_found=i % 5 != 0)  # 24 of 30 unknown: scanning
    for _ in range(12):
        table.see("2001:db8::2", not_found=True)  # the same /64 as the one above
    for _ in range(9):
        table.see("198.51.100.7", not_found=True)  # all unknown, but only 9
    clock.now = 59
    assert table.roll() is None
    clock.now = 60
    window = table.roll()
    assert window is not None and window is table.last
    assert window.requests == 101 and window.clients == 3
    assert [(c.client, c.requests) for c in window.top] == [
        ("192.0.2.1", 50),
        ("2001:db8::/64", 42),
        ("198.51.100.7", 9),
    ]
    assert [(c.client, c.not_found) for c in window.scanning] == [("2001:db8::/64", 36)]
    clock.now = 120
    quiet = table.roll()
    assert quiet is not None and quiet.requests == 0 and quiet.scanning == []


def test_the_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(traffic, "MAX_CLIENTS", 100)
    clock = Clock()
    table = ClientTraffic(scan_min_not_found=5, window=1, clock=clock)
    table.roll()
    for i in range(1000):
        table.see(f"10.0.{i // 256}.{i % 256}", not_found=True)
    clock.now = 1
    window = table.roll()
    assert window is not None
    assert window.clients == 101  # 100 clients and the overflow row
    assert window.requests == 1000
    assert all(c.client != traffic.OVERFLOW for c in window.top + window.scanning)


def test_not_found_is_read_from_the_answers_bytes() -> None:
    query = dns.message.make_query("x.hdl.idnode.test.", dns.rdatatype.A)
    nxdomain = dns.message.make_response(query)
    nxdomain.set_rcode(dns.rcode.NXDOMAIN)
    refused = dns.message.make_response(query)
    refused.set_rcode(dns.rcode.REFUSED)
    assert dns_not_found(nxdomain.to_wire()) and not dns_not_found(refused.to_wire())
    envelope = bytes(20)
    assert handle_not_found(envelope + (1).to_bytes(4, "big") + (100).to_bytes(4, "big"))
    assert not handle_not_found(envelope + (1).to_bytes(4, "big") + (1).to_bytes(4, "big"))


@pytest.mark.slow
def test_a_node_spots_a_client_enumerating_names(tmp_path: Path) -> None:
    known = example_handle(demo_enterprises(1)[0], 1)
    prefix = demo_enterprises(1)[0].prefix
    # 60 unknown names in about a second: whichever way the windows cut them,
    # one window holds at least 30 of them.
    env = {"IDNODE_SCAN_THRESHOLD": "25", "IDNODE_TRAFFIC_WINDOW": "3"}
    with DemoNode(tmp_path, "--enterprises", "32", "--identifiers", "64", env=env) as node:
        handle_host, handle_port = node.endpoints["handle"].rsplit(":", 1)
        dns_host, dns_port = node.endpoints["dns"].rsplit(":", 1)

        async def native(name: str, udp: bool) -> int:
            call = client.udp_call if udp else client.tcp_call
            answer = await call(handle_host, int(handle_port), client.resolution(name))
            return answer.header.response_code

        async def guess() -> list[int]:
            codes = [await native(f"{prefix}/GUESS-{i}", i % 2 == 0) for i in range(40)]
            return [*codes, await native(known, True)]

        codes = asyncio.run(guess())
        assert codes.count(rc.RC_HANDLE_NOT_FOUND) == 40 and codes[-1] == rc.RC_SUCCESS
        for i in range(10):
            query = dns.message.make_query(f"guess{i}._.1.100.88.hdl.idnode.test.", "URI")
            ask = dns.query.tcp if i % 2 else dns.query.udp
            answer = ask(query, dns_host, port=int(dns_port), timeout=5)
            assert answer.rcode() == dns.rcode.NXDOMAIN
        for i in range(10):
            try:
                urllib.request.urlopen(f"{node.base}/api/handles/{prefix}/GUESS-{i}", timeout=10)
            except urllib.error.HTTPError as error:
                assert error.code == 404
        deadline = time.monotonic() + 10
        scanning = 0.0
        while time.monotonic() < deadline and not scanning:
            time.sleep(0.5)
            metrics = urllib.request.urlopen(f"{node.base}/metrics", timeout=10).read().decode()
            scanning = next(
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("idnode_scanning_clients")
            )
        assert scanning == 1
        lines = [
            json.loads(line)
            for line in (tmp_path / "node.log").read_text().splitlines()
            if line.startswith("{") and '"idnode.traffic"' in line
        ]
        assert lines and lines[0]["client"] == "127.0.0.1"
        assert lines[0]["not_found"] >= 25
        assert lines[0]["not_found"] >= 0.5 * lines[0]["requests"]
