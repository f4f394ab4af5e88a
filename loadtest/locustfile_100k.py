"""The daily requirement as a Locust run: ``IDNODE_LOAD_COUNT`` resolutions
(default 100,000) at a steady total rate of ``IDNODE_LOAD_RATE`` a second
(default 1,000), whatever the number of users, spread over REST, the proxy,
DNS and native UDP and TCP; then the run stops by itself.

Request k goes out at ``start + k / rate``: the users claim slots from one
schedule, so the offered rate is steady and the count exact. Run it through
``python -m loadtest.hundred_k``, which starts the node and Prometheus and
checks afterwards that the node counted exactly what was sent.
"""

from __future__ import annotations

import os
import random
import time

import gevent
from locust import FastHttpUser, constant, task
from locust.exception import StopUser

from loadtest.locust_users import WrongAnswer, dns_client, handle_tcp, handle_udp, report
from loadtest.mix import DemoMix
from loadtest.protocols import (
    dns_answer_expected,
    handle_code_expected,
    http_status_expected,
)

COUNT = int(os.environ.get("IDNODE_LOAD_COUNT", "100000"))
RATE = float(os.environ.get("IDNODE_LOAD_RATE", "1000"))
SHARES = (("rest", 35), ("proxy", 10), ("dns", 25), ("udp", 20), ("tcp", 10))


class Schedule:
    """One slot per request, ``1 / RATE`` apart, ``COUNT`` in all."""

    def __init__(self) -> None:
        self.claimed = 0
        self.finished = 0
        self.start = 0.0

    def claim(self) -> float | None:
        """The time this request is due, or None once every slot is taken."""
        if self.claimed >= COUNT:
            return None
        if not self.claimed:
            self.start = time.monotonic()
        due = self.start + self.claimed / RATE
        self.claimed += 1
        return due


SCHEDULE = Schedule()


class DailyRequirementUser(FastHttpUser):
    host = "http://127.0.0.1:8000"
    wait_time = constant(0)

    def on_start(self) -> None:
        self.mix = DemoMix()
        self.rng = random.Random()
        self.dns = dns_client()
        self.udp = handle_udp()
        self.tcp = handle_tcp()
        self.kinds = [kind for kind, share in SHARES for _ in range(share)]

    def on_stop(self) -> None:
        self.udp.close()
        self.tcp.close()

    @task
    def resolve(self) -> None:
        due = SCHEDULE.claim()
        if due is None:
            raise StopUser()
        gevent.sleep(max(0.0, due - time.monotonic()))
        try:
            self._send(self.rng.choice(self.kinds))
        finally:
            SCHEDULE.finished += 1
            if SCHEDULE.finished == COUNT:  # the last answer is in: stop the run
                gevent.spawn_later(0.5, self.environment.runner.quit)

    def _send(self, kind: str) -> None:
        pick = self.mix.pick()
        if kind in ("rest", "proxy"):
            path = f"/api/handles/{pick.name}" if kind == "rest" else f"/{pick.name}"
            with self.client.get(
                path, name=kind, allow_redirects=False, catch_response=True
            ) as response:
                if http_status_expected(pick.expect, response.status_code, proxy=kind == "proxy"):
                    response.success()
                else:
                    response.failure(f"{pick.name}: HTTP {response.status_code}")
            return
        with report(self, kind.upper(), kind) as timing:
            if kind == "dns":
                answer = self.dns.query(self.mix.dns_name(pick.name), "TXT")
                ok = dns_answer_expected(pick.expect, answer)
            else:
                handle = self.udp if kind == "udp" else self.tcp
                answer = handle.resolve(pick.name)
                ok = handle_code_expected(pick.expect, answer.code)
            timing.size = answer.size
            if not ok:
                raise WrongAnswer(f"{pick.name}: {kind} answer {answer.code}")
