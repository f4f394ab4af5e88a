"""Locust users for an idnode node — the way its users load it.

- ``RestUser``: the Handle REST API and the redirect proxy (FastHttpUser);
- ``DnsUser``: the DNS zone over UDP (dnspython), TXT records of identifiers;
- ``HandleUdpUser``, ``HandleTcpUser``: the native Handle protocol, one
  datagram per request or one persistent connection per user, on idnode's
  own codec;
- ``RegistrarUser``: a few registrations through the SNMS API
  (``POST /identityv2/data``), as an enterprise system files new products.

Names come from the demo data set (loadtest.mix): hits across every
enterprise and application mode, ~3% unknown names, ~1% names of another
node's prefix; each answer is checked against what that kind of name must
get. HTTP targets ``--host`` (default ``idnode demo``'s 127.0.0.1:8000), DNS
and native ``IDNODE_DNS`` / ``IDNODE_HANDLE``. See loadtest/README.md.
"""

from __future__ import annotations

import uuid

from locust import FastHttpUser, between, task

from loadtest.harness import registration
from loadtest.locust_users import ProtocolUser, WrongAnswer, dns_client, handle_tcp, handle_udp
from loadtest.mix import DemoMix, admin_credentials
from loadtest.protocols import (
    HandleTcpClient,
    HandleUdpClient,
    dns_answer_expected,
    handle_code_expected,
    http_status_expected,
)

DEFAULT_HOST = "http://127.0.0.1:8000"
WAIT = between(0.01, 0.1)


class RestUser(FastHttpUser):
    host = DEFAULT_HOST
    weight = 4
    wait_time = WAIT

    def on_start(self) -> None:
        self.mix = DemoMix()

    @task(4)
    def resolve(self) -> None:
        pick = self.mix.pick()
        label = f"/api/handles [{pick.mode}]"
        with self.client.get(
            f"/api/handles/{pick.name}", name=label, catch_response=True
        ) as response:
            if http_status_expected(pick.expect, response.status_code):
                response.success()
            else:
                response.failure(f"{pick.name}: HTTP {response.status_code}")

    @task(1)
    def proxy(self) -> None:
        pick = self.mix.pick()
        with self.client.get(
            f"/{pick.name}",
            name=f"/<handle> [{pick.mode}]",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if http_status_expected(pick.expect, response.status_code, proxy=True):
                response.success()
            else:
                response.failure(f"{pick.name}: HTTP {response.status_code}")


class DnsUser(ProtocolUser):
    weight = 3
    wait_time = WAIT

    def on_start(self) -> None:
        self.mix = DemoMix()
        self.dns = dns_client()

    @task
    def txt(self) -> None:
        pick = self.mix.pick()
        with self.timed("DNS", f"TXT [{pick.mode}]") as timing:
            answer = self.dns.query(self.mix.dns_name(pick.name), "TXT")
            timing.size = answer.size
            if not dns_answer_expected(pick.expect, answer):
                raise WrongAnswer(f"{pick.name}: rcode {answer.code}, {answer.records} records")


class HandleUser(ProtocolUser):
    """Resolutions over the native Handle protocol; each transport's user says
    how it connects (``connect``) and what its requests are reported as."""

    abstract = True
    wait_time = WAIT
    request_type = ""

    def connect(self) -> HandleUdpClient | HandleTcpClient:
        raise NotImplementedError

    def on_start(self) -> None:
        self.mix = DemoMix()
        self.handle = self.connect()

    def on_stop(self) -> None:
        self.handle.close()

    @task
    def resolve(self) -> None:
        pick = self.mix.pick()
        with self.timed(self.request_type, f"resolve [{pick.mode}]") as timing:
            answer = self.handle.resolve(pick.name)
            timing.size = answer.size
            if not handle_code_expected(pick.expect, answer.code):
                raise WrongAnswer(f"{pick.name}: response code {answer.code}")


class HandleUdpUser(HandleUser):
    weight = 2
    request_type = "HDL-UDP"

    def connect(self) -> HandleUdpClient:
        return handle_udp()


class HandleTcpUser(HandleUser):
    weight = 1
    request_type = "HDL-TCP"

    def connect(self) -> HandleTcpClient:
        return handle_tcp()


class RegistrarUser(FastHttpUser):
    """An enterprise system filing new identifiers now and then."""

    host = DEFAULT_HOST
    weight = 1
    fixed_count = 1
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.mix = DemoMix()
        user, password = admin_credentials()
        with self.client.post(
            "/identity/token",
            json={"username": user, "password": password},
            name="/identity/token",
            catch_response=True,
        ) as response:
            body = response.json() if response.status_code == 200 else {}
            if body.get("status") != 1:
                response.failure(f"login refused: {response.text[:200]}")
                self.token = ""
                return
            self.token = body["data"]["token"]

    @task
    def register(self) -> None:
        if not self.token:
            return
        ent = self.mix.enterprise()
        body = registration(ent, f"LOAD-{uuid.uuid4().hex[:16]}")
        with self.client.post(
            "/identityv2/data",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            name=f"/identityv2/data [{ent.mode.key}]",
            catch_response=True,
        ) as response:
            status = response.json().get("status") if response.status_code == 200 else None
            if status == 1:
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
