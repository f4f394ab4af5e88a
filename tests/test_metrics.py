"""Metrics in one process: the hot-path tally and its folding, the daily counts
in the database (both databases), the node gauges, registrations and failed
authentications, and what each front end counts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from idnode.accounting import Accounting, count_auth_failure, count_registrations, day_of
from metrics.tally import DailyCount, Tally, add_observations
from registry import usage
from registry.db import create_engine, read_transaction, write_transaction
from registry.errors import LoginFailed
from registry.models import HandleValue
from registry.services import Actor, Registry
from resolver import codes as rc
from tests.conftest import ApiClient
from tests.factories import hosted_enterprise
from tests.test_proxy import BROWSER_ARGS, CHROMIUM

SHANGHAI = ZoneInfo("Asia/Shanghai")


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def resolutions(protocol: str, outcome: str) -> float:
    return sample("idnode_resolutions_total", protocol=protocol, outcome=outcome)


def test_folded_observations_equal_observed_ones() -> None:
    """add_observations reaches into prometheus-client: it must stay what observe does."""
    observed, folded = CollectorRegistry(), CollectorRegistry()
    buckets = (0.001, 0.01, 0.1)
    one = Histogram("t_seconds", "t", ["p"], buckets=buckets, registry=observed).labels("x")
    other = Histogram("t_seconds", "t", ["p"], buckets=buckets, registry=folded).labels("x")
    latencies = [0.0005, 0.001, 0.002, 0.05, 0.05, 0.5, 3.0]
    for seconds in latencies:
        one.observe(seconds)
    counts = [0] * (len(buckets) + 1)
    for seconds in latencies:
        counts[sum(1 for bound in buckets if seconds > bound)] += 1
    add_observations(other, counts, sum(latencies))

    def lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return [line for line in text.splitlines() if "_created" not in line]

    assert lines(observed) == lines(folded)


def test_tally_folds_counts_latency_and_days() -> None:
    tally = Tally()
    before = resolutions("oid", "found"), resolutions("oid", "error")
    count_before = sample("idnode_resolution_duration_seconds_count", protocol="oid")
    le_1ms = sample("idnode_resolution_duration_seconds_bucket", protocol="oid", le="0.001")
    for _ in range(3):
        tally.count("oid", "found", "88.100.1", 0.0004)
    tally.count("oid", "error", "", 0.2)
    tally.fold("2026-12-03")
    tally.count("oid", "found", "88.100.1", 0.0004)
    tally.fold("2026-12-04")  # the next day
    assert resolutions("oid", "found") - before[0] == 4
    assert resolutions("oid", "error") - before[1] == 1
    count = sample("idnode_resolution_duration_seconds_count", protocol="oid")
    assert count - count_before == 5
    # Cumulative buckets: four answers at or under 1 ms.
    le_now = sample("idnode_resolution_duration_seconds_bucket", protocol="oid", le="0.001")
    assert le_now - le_1ms == 4
    daily = tally.take_daily()
    assert {k: (v.resolutions, v.found) for k, v in daily.items()} == {
        ("2026-12-03", "88.100.1", "oid"): (3, 3),
        ("2026-12-03", "", "oid"): (1, 0),
        ("2026-12-04", "88.100.1", "oid"): (1, 1),
    }
    assert tally.take_daily() == {}  # taken once
    tally.give_back(daily)  # not persisted: kept, and added to
    tally.count("oid", "found", "88.100.1", 0.0004)
    tally.fold("2026-12-04")
    again = tally.take_daily()
    assert again["2026-12-04", "88.100.1", "oid"].resolutions == 2


def test_days_follow_the_configured_time_zone() -> None:
    moment = datetime(2026, 12, 3, 17, 30, tzinfo=UTC).timestamp()  # 01:30 in Shanghai
    assert day_of(moment, SHANGHAI) == date(2026, 12, 4)
    assert day_of(moment, UTC) == date(2026, 12, 3)


async def test_daily_counts_add_up_in_the_database(registry: Registry, admin: Actor) -> None:
    engine = registry.services.engine
    rows = {
        ("2026-12-03", "88.100.1", "http"): DailyCount(5, 4),
        ("2026-12-03", "88.100.2", "dns"): DailyCount(2, 0),  # resolved, nothing found
        ("2026-12-03", "", "handle_udp"): DailyCount(7, 0),
        ("2026-12-02", "88.100.3", "http"): DailyCount(1, 1),
    }
    for _ in range(2):  # two processes (or two flushes) adding to the same rows
        async with write_transaction(engine) as conn:
            await usage.add(conn, rows)
    async with read_transaction(engine) as conn:
        days = await usage.days(conn, "2026-12-01", "2026-12-03")
        served = await usage.enterprises_served(conn, "2026-12-01", "2026-12-03")
    assert [(d.day, d.resolutions, d.enterprises_served) for d in days] == [
        ("2026-12-02", 2, 1),
        ("2026-12-03", 28, 1),
    ]
    assert days[1].by_protocol == {"http": 10, "dns": 4, "handle_udp": 14}
    assert served == 2  # 88.100.1 and 88.100.3; 88.100.2 had nothing found


async def test_accounting_persists_and_refreshes_the_node_gauges(
    registry: Registry, admin: Actor
) -> None:
    await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    now = datetime(2026, 12, 3, 20, 0, tzinfo=UTC).timestamp()  # 04:00 on the 4th in Shanghai
    tally = Tally()
    accounting = Accounting(registry.services.engine, SHANGHAI, tally=tally, clock=lambda: now)
    for _ in range(3):
        tally.count("http", "found", "88.100.1", 0.001)
    tally.count("dns", "not_found", "", 0.001)
    accounting.fold()
    assert await accounting.persist()
    async with write_transaction(registry.services.engine) as conn:  # yesterday, from before
        await usage.add(conn, {("2026-12-03", "88.100.1", "http"): DailyCount(40, 40)})
    await accounting.refresh_days()
    await accounting.refresh_sizes()
    assert sample("idnode_resolutions_today") == 4
    assert sample("idnode_resolutions_yesterday") == 40
    assert sample("idnode_enterprises_served_today") == 1
    assert sample("idnode_enterprises_served_30d") == 1
    assert (
        sample("idnode_day_start_timestamp_seconds")
        == datetime(2026, 12, 4, tzinfo=SHANGHAI).timestamp()
    )
    assert sample("idnode_registry_enterprises") == 1
    assert sample("idnode_registry_prefixes") == 1
    assert sample("idnode_resolutions_daily_target") == 100_000
    assert sample("idnode_enterprises_served_target") == 30


@pytest.mark.parametrize(
    "url",
    ["sqlite+aiosqlite:////nonexistent/dir/x.db", "postgresql+asyncpg://postgres@127.0.0.1:1/x"],
)
async def test_counts_that_cannot_be_written_are_kept(url: str) -> None:
    tally = Tally()
    gone = create_engine(url)
    accounting = Accounting(gone, UTC, tally=tally)
    tally.count("http", "found", "88.100.1", 0.001)
    accounting.fold()
    try:
        assert not await accounting.persist()  # the database is away: nothing lost
    finally:
        await gone.dispose()
    kept = tally.take_daily()
    assert sum(c.resolutions for c in kept.values()) == 1


@pytest.fixture
def counting(registry: Registry) -> Iterator[Registry]:
    registry.services.listeners.append(count_registrations)
    registry.services.auth_listeners.append(count_auth_failure)
    yield registry


async def test_registrations_and_failed_logins_are_counted(
    counting: Registry, admin: Actor
) -> None:
    def registrations(operation: str) -> float:
        return sample("idnode_registrations_total", operation=operation)

    before = {op: registrations(op) for op in ("create", "update", "delete", "prefix")}
    prefix = await hosted_enterprise(counting, admin, 1, prefix="88.100.1")
    name = f"{prefix}/counted"
    await counting.handles.create(admin, name, [HandleValue(1, "URL", b"u")], overwrite=False)
    await counting.handles.set_values(admin, name, [HandleValue(1, "URL", b"v")], overwrite=True)
    await counting.handles.delete(admin, name)
    assert registrations("create") - before["create"] == 1
    assert registrations("update") - before["update"] == 1
    assert registrations("delete") - before["delete"] == 1
    assert registrations("prefix") > before["prefix"]
    failed = sample("idnode_auth_failures_total", credential="password")
    with pytest.raises(LoginFailed):
        await counting.accounts.login("AKTESTADMIN", "wrong")
    with pytest.raises(LoginFailed):
        await counting.accounts.login("nobody", "x")
    assert sample("idnode_auth_failures_total", credential="password") - failed == 2
    seckey = sample("idnode_auth_failures_total", credential="handle_secret")
    with pytest.raises(Exception, match="uthenticat"):
        await counting.handles.authenticate("0.NA/88.100", 300, b"wrong")
    assert sample("idnode_auth_failures_total", credential="handle_secret") - seckey == 1


async def test_http_front_ends_count_by_protocol_and_outcome(
    api: ApiClient, admin: Actor, registry: Registry
) -> None:
    from metrics.tally import TALLY

    prefix = await hosted_enterprise(registry, admin, 1, prefix="88.100.1")
    await registry.handles.create(
        admin, f"{prefix}/seen", [HandleValue(1, "URL", b"https://x")], overwrite=False
    )
    TALLY.fold("2026-12-03")
    TALLY.take_daily()
    keys = [
        ("http", "found"),
        ("http", "not_found"),
        ("http", "error"),
        ("http", "refused"),
        ("oid", "found"),
    ]
    before = {key: resolutions(*key) for key in keys}
    assert (await api.call("GET", f"/api/handles/{prefix}/seen"))[0] == 200
    assert (await api.call("GET", f"/api/handles/{prefix}/seen"))[0] == 200  # cached
    assert (await api.call("GET", f"/api/handles/{prefix}/nope"))[0] == 404
    assert (await api.call("GET", "/api/handles/88..1/x"))[0] == 400  # malformed
    assert (await api.call("GET", "/api/handles/20.500/x"))[0] == 400  # not served here
    assert (await api.call("GET", f"/{prefix}/seen?noredirect"))[0] == 200  # the proxy
    assert (await api.call("GET", "/api/oid/1.2.156.86.1.1"))[0] == 200
    TALLY.fold("2026-12-03")
    delta = {key: resolutions(*key) - before[key] for key in keys}
    assert delta == {
        ("http", "found"): 3,
        ("http", "not_found"): 1,
        ("http", "error"): 1,
        ("http", "refused"): 1,
        ("oid", "found"): 1,
    }
    daily = TALLY.take_daily()
    assert daily["2026-12-03", "88.100.1", "http"].found == 3
    assert daily["2026-12-03", "88.100.1", "oid"].found == 1
    assert rc.outcome_of(rc.RC_SERVICE_REFERRAL) == "referral"


async def test_report_page_draws_days_against_the_target_in_a_browser(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    from idnode.report import Report, page

    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing; scripts/test.sh installs Debian's chromium")
    days = [
        usage.Day("2026-12-01", 50_000, {"http": 50_000}, 12),
        usage.Day("2026-12-02", 150_000, {"dns": 150_000}, 31),
        usage.Day("2026-12-03", 0),
    ]
    out = tmp_path / "report.html"
    out.write_text(page(Report(days, 31, "Asia/Shanghai")), encoding="utf-8")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            tab = await browser.new_page()
            await tab.goto(out.as_uri())
            bars = await tab.query_selector_all("svg rect.day")
            assert len(bars) == 3
            boxes = [await bar.bounding_box() for bar in bars]
            line = await (await tab.query_selector("#target")).bounding_box()  # type: ignore[union-attr]
            assert boxes[0] and boxes[1] and line
            # The day over the target reaches above the line, the day under it stays below.
            assert boxes[1]["y"] < line["y"] < boxes[0]["y"]
            assert await bars[1].get_attribute("fill") != await bars[0].get_attribute("fill")
            assert "31" in await tab.inner_text("#served")
            assert "1 of 3 days" in await tab.inner_text("#summary")
        finally:
            await browser.close()
