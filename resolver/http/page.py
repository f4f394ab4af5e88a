"""The human-readable lookup page (pure rendering; every text is escaped)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from urllib.parse import quote

from registry.models import HandleValue

from ..resolution import Resolution, Status
from .values_json import value_json

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2733;background:#f4f6f9}
header{background:#17375e;color:#fff;padding:14px 28px}header a{color:#fff;text-decoration:none}
main{max-width:980px;margin:24px auto;padding:0 20px}
form{display:flex;gap:8px;margin-bottom:20px}
input[type=text]{flex:1;padding:9px 12px;font-size:16px;border:1px solid #9aa7b6;border-radius:4px}
button{padding:9px 18px;font-size:16px;background:#17375e;color:#fff;border:0;border-radius:4px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #d5dbe3;padding:6px 10px;text-align:left;vertical-align:top}
th{background:#e8edf3}td.data{word-break:break-all;font-family:ui-monospace,monospace}
.note{color:#55606e}.error{color:#a4161a}section{margin-top:22px}h2{font-size:18px}
"""


def _page(title: str, body: str, query: str = "") -> str:
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        '<header><a href="/"><strong>idnode</strong> 标识解析 · identifier lookup</a></header>'
        '<main><form method="get" action="/" role="search">'
        '<input type="text" name="handle" id="handle" aria-label="identifier" '
        f'placeholder="88.100.1/SN-2026-000001" value="{html.escape(query)}">'
        '<button type="submit" id="lookup">解析 Resolve</button></form>'
        f"{body}</main></body></html>"
    )


def handle_link(name: str) -> str:
    return (
        f'<a class="handle-link" href="/{quote(name, safe="/")}?noredirect">{html.escape(name)}</a>'
    )


def linked_names(values: Iterable[HandleValue], pattern: re.Pattern[str]) -> list[str]:
    """Identifiers of this node that a record mentions (parent batch, parts...)."""
    found: list[str] = []
    for value in values:
        try:
            text = value.data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        for match in pattern.findall(text):
            if match not in found:
                found.append(match)
    return found


def _data_cell(value: HandleValue, pattern: re.Pattern[str]) -> str:
    data = value_json(value)["data"]
    if data["format"] == "string":
        text = str(data["value"])
        parts = []
        last = 0
        for match in pattern.finditer(text):
            parts.append(html.escape(text[last : match.start()]))
            parts.append(handle_link(match.group(0)))
            last = match.end()
        parts.append(html.escape(text[last:]))
        return "".join(parts)
    return f"<code>{html.escape(json.dumps(data['value'], ensure_ascii=False))}</code>"


def home_page() -> str:
    body = (
        '<p class="note">输入标识（如 <code>88.100.1/SN-2026-000001</code>）查看其登记的数据。'
        " Enter an identifier to see its registered values.</p>"
    )
    return _page("idnode identifier lookup", body)


def record_page(resolution: Resolution, handle_pattern: re.Pattern[str]) -> str:
    name = resolution.name.text
    status = resolution.status
    if status is Status.NOT_FOUND:
        body = (
            f'<p class="error" id="verdict">标识不存在 · Identifier '
            f"<strong>{html.escape(name)}</strong> was not found.</p>"
        )
        return _page(f"{name} — not found", body, name)
    if status is Status.NOT_HERE:
        body = (
            f'<p class="error" id="verdict">本节点不负责该前缀 · The prefix of '
            f"<strong>{html.escape(name)}</strong> is not served here.</p>"
        )
        return _page(f"{name} — not served here", body, name)
    if status is Status.UNREACHABLE:
        body = (
            f'<p class="error" id="verdict">负责该标识的节点未应答 · The node serving '
            f"<strong>{html.escape(name)}</strong> did not answer; try again shortly.</p>"
        )
        return _page(f"{name} — no answer", body, name)
    parts = [f'<h1 id="record-name">{html.escape(name)}</h1>']
    if resolution.enterprise is not None:
        prefix = resolution.prefix.prefix if resolution.prefix else ""
        parts.append(
            f'<p id="owner">所属企业 Owner: <strong>{html.escape(resolution.enterprise.org_name)}'
            f"</strong> (前缀 prefix {html.escape(prefix)})</p>"
        )
    if resolution.recursed:
        parts.append(
            '<p class="note" id="via">由负责该前缀的节点应答 · Answered by the node '
            "that serves this prefix.</p>"
        )
    if status is Status.REFERRAL:
        served_by = (
            "该前缀由企业节点解析 · This prefix is served by the enterprise's own node:"
            if resolution.prefix is not None
            else "该前缀由其他二级节点解析 · This prefix is served by another node:"
        )
        parts.append(f'<p class="note" id="verdict">{served_by}</p>')
        values = resolution.referral
    elif status is Status.VALUES_NOT_FOUND:
        parts.append('<p class="note" id="verdict">没有可公开的数据 · No public values.</p>')
        values = ()
    else:
        values = resolution.values
    if values:
        rows = "".join(
            f"<tr><td>{v.index}</td><td>{html.escape(v.type)}</td>"
            f'<td class="data">{_data_cell(v, handle_pattern)}</td></tr>'
            for v in values
        )
        parts.append(
            '<table id="values"><thead><tr><th>索引 Index</th><th>类型 Type</th>'
            f"<th>数据 Data</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    links = [n for n in linked_names(values, handle_pattern) if n != name]
    if links:
        items = "".join(f"<li>{handle_link(n)}</li>" for n in links)
        parts.append(
            f'<section id="linked"><h2>关联标识 Linked records</h2><ul>{items}</ul></section>'
        )
    return _page(name, "".join(parts), name)


def error_page(message: str, query: str = "") -> str:
    return _page(
        "idnode — error", f'<p class="error" id="verdict">{html.escape(message)}</p>', query
    )
