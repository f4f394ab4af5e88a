"""``idnode report``: the last days against the node's requirements — 100,000
resolutions a day and 30 enterprises served — from the daily counts in the
database, as a table and optionally as an HTML page with a chart."""

from __future__ import annotations

import asyncio
import html
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import ArgumentError

from metrics.instruments import DAILY_TARGET, ENTERPRISES_TARGET, PROTOCOLS
from registry import usage
from registry.db import DatabaseError, check_schema, create_engine, describe_error, read_transaction
from registry.errors import StorageUnavailable

from .accounting import SERVED_WINDOW_DAYS
from .config import Config
from .listen import StartupError


@dataclass(frozen=True)
class Report:
    days: list[usage.Day]
    """Every day of the period, oldest first (days without counts at zero)."""
    served_30d: int
    time_zone: str

    @property
    def days_meeting_target(self) -> int:
        return sum(1 for day in self.days if day.resolutions >= DAILY_TARGET)


async def build(config: Config, count: int) -> Report:
    zone = config.time_zone_info()
    today = datetime.now(zone).date()
    first = today - timedelta(days=max(1, count) - 1)
    try:
        engine = create_engine(config.database_url)
    except (ArgumentError, ImportError) as exc:
        raise StartupError(f"bad database URL {config.database_url!r}: {exc}") from None
    try:
        await check_schema(engine)
        async with read_transaction(engine) as conn:
            found = {d.day: d for d in await usage.days(conn, first.isoformat(), today.isoformat())}
            window = today - timedelta(days=SERVED_WINDOW_DAYS - 1)
            served = await usage.enterprises_served(conn, window.isoformat(), today.isoformat())
    except DatabaseError as exc:
        raise StartupError(str(exc)) from None
    except StorageUnavailable as exc:
        raise StartupError(f"database unavailable: {describe_error(exc)}") from None
    finally:
        await engine.dispose()
    days = [found.get(d.isoformat(), usage.Day(d.isoformat())) for d in _dates(first, today)]
    return Report(days, served, config.time_zone)


def _dates(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def text(report: Report) -> str:
    protocols = [p for p in PROTOCOLS if any(day.by_protocol.get(p) for day in report.days)]
    head = f"{'day':<10} {'resolutions':>12} {'target':>7} {'enterprises':>11}"
    head += "".join(f" {p:>11}" for p in protocols)
    lines = [f"daily resolutions in {report.time_zone}", head]
    for day in report.days:
        met = "met" if day.resolutions >= DAILY_TARGET else "-"
        line = f"{day.day:<10} {day.resolutions:>12,} {met:>7} {day.enterprises_served:>11}"
        line += "".join(f" {day.by_protocol.get(p, 0):>11,}" for p in protocols)
        lines.append(line)
    lines.append(
        f"{report.days_meeting_target} of {len(report.days)} days at or above "
        f"{DAILY_TARGET:,} resolutions"
    )
    verdict = "met" if report.served_30d >= ENTERPRISES_TARGET else "not met"
    lines.append(
        f"enterprises served in the last {SERVED_WINDOW_DAYS} days: {report.served_30d} "
        f"(target {ENTERPRISES_TARGET}: {verdict})"
    )
    return "\n".join(lines) + "\n"


CHART_WIDTH = 760
CHART_HEIGHT = 280
MARGIN = 56


def chart(report: Report) -> str:
    """Daily volume as bars, the target as a dashed line: inline SVG, no script."""
    days = report.days
    peak = max([DAILY_TARGET, *(d.resolutions for d in days)]) * 1.1
    inner_w, inner_h = CHART_WIDTH - 2 * MARGIN, CHART_HEIGHT - 2 * MARGIN
    slot = inner_w / max(len(days), 1)

    def y(value: float) -> float:
        return MARGIN + inner_h * (1 - value / peak)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" '
        f'height="{CHART_HEIGHT}" role="img" aria-label="daily resolutions against the target">',
        f'<line x1="{MARGIN}" y1="{MARGIN + inner_h}" x2="{MARGIN + inner_w}" '
        f'y2="{MARGIN + inner_h}" stroke="#555"/>',
    ]
    for i, day in enumerate(days):
        top = y(day.resolutions)
        colour = "#2e7d32" if day.resolutions >= DAILY_TARGET else "#c62828"
        x = MARGIN + i * slot + slot * 0.15
        parts.append(
            f'<rect class="day" data-day="{day.day}" data-resolutions="{day.resolutions}" '
            f'x="{x:.1f}" y="{top:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{MARGIN + inner_h - top:.1f}" fill="{colour}">'
            f"<title>{day.day}: {day.resolutions:,}</title></rect>"
        )
        if len(days) <= 31:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{MARGIN + inner_h + 14}" font-size="9" '
                f'text-anchor="middle">{day.day[5:]}</text>'
            )
    target = y(DAILY_TARGET)
    parts.append(
        f'<line id="target" x1="{MARGIN}" y1="{target:.1f}" x2="{MARGIN + inner_w}" '
        f'y2="{target:.1f}" stroke="#1565c0" stroke-dasharray="6 4" stroke-width="2"/>'
    )
    parts.append(
        f'<text x="{MARGIN + inner_w}" y="{target - 6:.1f}" font-size="11" '
        f'text-anchor="end" fill="#1565c0">target {DAILY_TARGET:,} / day</text>'
    )
    parts.append(
        f'<text x="{MARGIN - 6}" y="{MARGIN + 4}" font-size="10" text-anchor="end">'
        f"{int(peak):,}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def page(report: Report) -> str:
    rows = "".join(
        f"<tr><td>{day.day}</td><td>{day.resolutions:,}</td>"
        f"<td>{'✓' if day.resolutions >= DAILY_TARGET else '✗'}</td>"
        f"<td>{day.enterprises_served}</td></tr>"
        for day in report.days
    )
    served = report.served_30d
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>idnode — daily resolutions</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:right}}</style>
</head><body>
<h1>每日解析量 · Daily resolutions ({html.escape(report.time_zone)})</h1>
<p id="summary">{report.days_meeting_target} of {len(report.days)} days at or above
{DAILY_TARGET:,} resolutions; enterprises served in the last {SERVED_WINDOW_DAYS} days:
<strong id="served">{served}</strong> (target {ENTERPRISES_TARGET}).</p>
{chart(report)}
<table id="days"><thead><tr><th>day</th><th>resolutions</th><th>≥ {DAILY_TARGET:,}</th>
<th>enterprises served</th></tr></thead><tbody>{rows}</tbody></table>
</body></html>
"""


async def report(config: Config, days: int, html_path: str | None) -> int:
    built = await build(config, days)
    sys.stdout.write(text(built))
    if html_path:
        try:
            await asyncio.to_thread(Path(html_path).write_text, page(built), encoding="utf-8")
        except OSError as exc:
            print(f"idnode: cannot write {html_path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote {html_path}")
    return 0
