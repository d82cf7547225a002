"""The usage page (one row per request, newest first, keyset pages, filters for dates, model and
key, a chart of requests and spend per day) and its CSV download. The reads are reapi.reports'."""
from __future__ import annotations

import time
from datetime import date, datetime, timezone
from urllib.parse import urlencode

from reapi import reports
from reapi.billing.money import format_usd
from reapi.console.common import read
from reapi.store import queries
from reapi.web import Request, Response, render
from reapi.web.charts import stacked_bars

DAY_MS = reports.DAY_MS
DEFAULT_DAYS = 30
MAX_CHART_DAYS = 366
PAGE = 50


def _date(raw: str) -> int | None:
    """"2026-12-01" -> the start of that UTC day in ms, or None."""
    try:
        d = date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        return None
    return None if d is None else int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)


def filters(req: Request, keys: dict[int, dict]) -> tuple[reports.UsageFilter, dict, list[str]]:
    """The query's filters (from/to: UTC dates, both included; model; key: one of the account's
    key ids), the values to show back in the form, and what was ignored as malformed."""
    q = req.query
    problems: list[str] = []
    shown = {k: q.get(k, "").strip()[:200] for k in ("from", "to", "model", "key")}
    since = _date(shown["from"]) if shown["from"] else None
    if shown["from"] and since is None:
        problems.append("from")
        shown["from"] = ""
    until = _date(shown["to"]) if shown["to"] else None
    if shown["to"] and until is None:
        problems.append("to")
        shown["to"] = ""
    key_id = int(shown["key"]) if shown["key"].isdigit() and int(shown["key"]) in keys else None
    if shown["key"] and key_id is None:
        problems.append("key")
        shown["key"] = ""
    f = reports.UsageFilter(since_ms=since, until_ms=None if until is None else until + DAY_MS,
                            model=shown["model"] or None, key_id=key_id)
    return f, shown, problems


def usage_row(r: dict) -> dict:
    return {"id": r["id"], "created_at": r["created_at"], "request_id": r["request_id"], "key_id": r["key_id"],
            "key": r["key_name"] or f"key {r['key_id']}", "model": r["model"], "status": r["status"],
            "prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
            "cached_tokens": r["cached_tokens"], "cost_usd": format_usd(r["cost_nano"]), "error_code": r["error_code"]}


def chart_window(f: reports.UsageFilter, now: int) -> tuple[int, int]:
    """(days, end_ms) of the chart: the filter's date range (at most MAX_CHART_DAYS), else 30 days to now."""
    end = (f.until_ms - 1) if f.until_ms is not None else now
    if f.since_ms is not None:
        days = reports.day_of(end) - reports.day_of(f.since_ms) + 1
    else:
        days = DEFAULT_DAYS
    return max(1, min(days, MAX_CHART_DAYS)), end


async def _keys(conn, account_id: int) -> dict[int, dict]:
    return {k["id"]: k for k in await queries.list_keys(conn, account_id)}


async def _data(conn, req: Request, account_id: int, before: str | None, now: int) -> dict:
    """Everything the page shows, in one read."""
    keys = await _keys(conn, account_id)
    f, shown, problems = filters(req, keys)
    days, end = chart_window(f, now)
    return {"keys": keys, "filter": f, "shown": shown, "problems": problems,
            "page": await reports.usage_page(conn, account_id, f, limit=PAGE, before=before),
            "series": await reports.daily_series(conn, account_id, days, end, f),
            "models": await reports.models_used(conn, account_id, now - 365 * DAY_MS)}


async def show(req: Request) -> Response:
    account_id = req.user["account_id"]  # type: ignore[index]
    before = req.query.get("before") or None
    now = int(time.time() * 1000)
    data = await read(req, _data, req, account_id, before, now)
    keys, f, shown, problems = data["keys"], data["filter"], data["shown"], data["problems"]
    page: reports.UsagePage = data["page"]
    series: list[reports.Day] = data["series"]
    query = {k: v for k, v in shown.items() if v}
    labels = [d.label[5:] for d in series]
    context = {
        "title": "Usage", "filters": shown, "ignored": problems,
        "rows": [usage_row(r) for r in page.rows],
        "next": f"/console/usage?{urlencode({**query, 'before': page.next_cursor})}" if page.next_cursor else None,
        "first": f"/console/usage?{urlencode(query)}" if before else None,
        "csv": "/console/usage.csv" + (f"?{urlencode(query)}" if query else ""),
        "keys": [{"id": k["id"], "name": k["name"]} for k in keys.values()],
        "models": sorted(set(data["models"]) | ({f.model} if f.model else set())),
        "daily": [{"day": d.label, "requests": d.requests, "spend_usd": format_usd(d.spend_nano)} for d in series],
        "_requests_svg": stacked_bars(labels, [("requests", [d.requests for d in series])], unit_nano=False,
                                      title="Requests per day"),
        "_spend_svg": stacked_bars(labels, [("spend", [d.spend_nano for d in series])],
                                   title="Spend per day (USD)"),
    }
    return render(req, "console/usage.html", context)


async def csv(req: Request) -> Response:
    """Every matching row as CSV (streamed in batches; see reports.usage_csv)."""
    account_id = req.user["account_id"]  # type: ignore[index]
    keys = await read(req, _keys, account_id)
    f, _, _ = filters(req, keys)
    name = f"usage-{account_id}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}.csv"
    return Response(200, b"", "text/csv; charset=utf-8", [("content-disposition", f'attachment; filename="{name}"')],
                    stream=reports.usage_csv(req.gateway.engine, account_id, f))
