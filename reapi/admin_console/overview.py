"""The overview: requests, spend, errors and latency per model and per channel over 24 hours or 7
days (tables and server-drawn SVG charts, from reapi.store.stats: range scans of ix_usage_created),
tasks by state over both windows, each channel's health (its breaker state and recent error rate),
and `reapi ledger verify`'s status line: run only when the operator presses its button (it scans the
whole ledger), bounded in time, its result kept in the store (ledger_checks) so every instance shows
the last check and when it ran."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import orjson

from reapi.admin_console.common import read, write
from reapi.billing.money import format_usd
from reapi.store import queries, stats
from reapi.tasks.ids import first_id_at
from reapi.tasks.queries import PUBLIC_STATUS
from reapi.web import Request, Response, render
from reapi.web.charts import PALETTE, stacked_bars

HOUR_MS = 3_600_000
VERIFY_SECONDS = 30  # the on-demand ledger check gives up after this long
SHOWN_PROBLEMS = 50
PROBLEM_CHARS = 500  # each kept problem line at most this long
TOP = len(PALETTE) - 1  # series drawn apart in a chart; the rest together as "other"
# window -> (label, length, chart bucket)
WINDOWS = {"24h": ("24 h", 24 * HOUR_MS, HOUR_MS), "7d": ("7 days", 7 * 24 * HOUR_MS, 6 * HOUR_MS)}
_VERIFYING = asyncio.Lock()  # one check at a time per instance (never awaited while held: no waiting)


async def show(req: Request, *, ledger: dict | None = None) -> Response:
    now = queries.now_ms()
    chosen = req.query.get("window") or "24h"
    if chosen not in WINDOWS:
        chosen = "24h"
    label, length, bucket = WINDOWS[chosen]
    since = now - length
    names = {ch["id"]: ch["name"] for ch in await read(req, queries.list_channels)}
    sections, charts = [], {}
    for by in ("model", "channel"):
        rows = await read(req, stats.overview_series, since, bucket, by)
        items = _totals(rows, names if by == "channel" else None)
        sections.append({"by": by, "rows": items})
        charts[by] = _charts(rows, items, names if by == "channel" else None, since, now, bucket, label)
    totals = sections[0]["rows"]
    context = {
        "title": "Overview", "window": chosen, "window_label": label,
        "windows": [{"key": k, "label": v[0], "href": f"/admin/console?window={k}"} for k, v in WINDOWS.items()],
        "requests": sum(i["requests"] for i in totals), "errors": sum(i["errors"] for i in totals),
        "spend_usd": format_usd(sum(i["cost_nano"] for i in totals)),
        "by": sections, "tasks": await _tasks(req, now),
        "ledger": ledger if ledger is not None else await last_check(req),
        "channels": await channel_health(req, now), "_charts": charts}
    return render(req, "admin/overview.html", context)


def _totals(rows: list[tuple], names: dict | None) -> list[dict]:
    """One row per model (or channel) over the window, the busiest first."""
    acc: dict = {}
    for _, k, n, c, e, lat, settled in rows:
        a = acc.setdefault(k, [0, 0, 0, 0, 0])
        for i, v in enumerate((n, c, e, lat, settled)):
            a[i] += v
    out = []
    for k, (n, c, e, lat, settled) in sorted(acc.items(), key=lambda kv: (-kv[1][0], str(kv[0]))):
        out.append({"key": k, "name": str(k) if names is None else names.get(k, f"#{k} (deleted)"),
                    "requests": n, "spend_usd": format_usd(c), "errors": e,
                    "error_rate": f"{100 * e / n:.1f}%" if n else "–",
                    "avg_latency_ms": lat // settled if settled else None, "cost_nano": c})
    return out


def _charts(rows: list[tuple], items: list[dict], names: dict | None, since: int, now: int, bucket: int,
            label: str) -> dict:
    """Requests, spend and errors per bucket (the busiest items apart, the rest as "other"), and the
    average latency per item: SVG drawn by reapi.web.charts."""
    first, last = since // bucket, now // bucket
    n = last - first + 1
    top = [i["key"] for i in items[:TOP]]
    legend = [i["name"] for i in items[:TOP]] + (["other"] if len(items) > TOP else [])
    series = {m: {k: [0] * n for k in (*top, "other")} for m in ("requests", "spend", "errors")}
    for b, k, req_n, cost, errs, _, _ in rows:
        i = b - first
        if 0 <= i < n:
            slot = k if k in top else "other"
            series["requests"][slot][i] += req_n
            series["spend"][slot][i] += cost
            series["errors"][slot][i] += errs
    hours = bucket // HOUR_MS
    labels = [_bucket_label(first + i, bucket) for i in range(n)]
    what = "model" if names is None else "channel"
    out = {"legend": list(enumerate(legend))}
    for metric, title in (("requests", "Requests"), ("spend", "Spend (USD)"), ("errors", "Errors")):
        drawn = [(name, series[metric][k]) for name, k in zip(legend, [*top, "other"])]
        out[metric] = stacked_bars(labels, drawn, unit_nano=metric == "spend",
                                   title=f"{title} per {hours} h by {what}, last {label}")
    timed = [i for i in items if i["avg_latency_ms"] is not None]
    out["latency"] = stacked_bars([i["name"][:18] for i in timed], [("ms", [i["avg_latency_ms"] for i in timed])],
                                  unit_nano=False, title=f"Average latency (ms) by {what}, last {label}")
    return out


def _bucket_label(b: int, bucket: int) -> str:
    t = datetime.fromtimestamp(b * bucket / 1000, tz=timezone.utc)
    return t.strftime("%H:00") if bucket < 6 * HOUR_MS else t.strftime("%m-%d %H")


async def _tasks(req: Request, now: int) -> list[dict]:
    """Tasks by state (processing / completed / failed, as the task API shows them) over both windows."""
    out = []
    for key, (label, length, _) in WINDOWS.items():
        states = await read(req, stats.tasks_by_state, first_id_at(now - length))
        shown = {s: 0 for s in ("processing", "completed", "failed")}
        for state, n in states.items():
            shown[PUBLIC_STATUS.get(state, state)] = shown.get(PUBLIC_STATUS.get(state, state), 0) + n
        out.append({"window": key, "label": label, **shown})
    return out


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


async def last_check(req: Request) -> dict | None:
    """The stored last check as the status line shows it (None: never run)."""
    row = await read(req, stats.last_ledger_check)
    if row is None:
        return None
    problems = orjson.loads(row["problems"])
    if row["timed_out"]:
        line = f"ledger check did not finish within {VERIFY_SECONDS} s"
    elif row["ok"]:
        line = "ledger ok: every balance equals the sum of its entries"
    else:
        line = f"ledger: {row['problem_count']} problem(s)"
    return {"ok": row["ok"], "timed_out": row["timed_out"], "count": row["problem_count"], "problems": problems,
            "line": line, "seconds": f"{row['duration_ms'] / 1000:.2f}", "ran_at": _iso(row["ran_at"]),
            "ran_at_ms": row["ran_at"]}


async def verify_ledger(req: Request) -> Response:
    """POST: run the ledger check now (as `reapi ledger verify` does), keep its result in the store
    and show its status line."""
    from reapi.billing.ledger import verify
    from reapi.payments.audit import verify_topups

    async def both() -> list[str]:
        async with req.gateway.engine.connect() as conn:
            return await verify(conn) + await verify_topups(conn)

    if _VERIFYING.locked():
        busy = await last_check(req) or {"ok": False, "timed_out": False, "problems": [], "count": 0}
        return await show(req, ledger={**busy, "line": "a ledger check is already running; try again when it ends"})
    loop = asyncio.get_running_loop()
    start = loop.time()
    timed_out, problems = False, []
    try:
        async with _VERIFYING:
            async with asyncio.timeout(VERIFY_SECONDS):  # not wait_for: see reapi.aio
                problems = await both()
    except TimeoutError:
        timed_out = True
    took_ms = int((loop.time() - start) * 1000)
    user_id = req.user["id"] if req.user else None  # type: ignore[index]
    kept = orjson.dumps([p[:PROBLEM_CHARS] for p in problems[:SHOWN_PROBLEMS]]).decode()
    await write(req, stats.save_ledger_check, ran_at=queries.now_ms(), ok=not problems and not timed_out,
                timed_out=timed_out, problem_count=len(problems), problems=kept, duration_ms=took_ms,
                user_id=user_id, reload=False)
    return await show(req)


async def channel_health(req: Request, now: int) -> list[dict]:
    recent = await read(req, stats.overview_by_channel, now - HOUR_MS)
    health = req.gateway.health
    out = []
    for ch in await read(req, queries.list_channels):
        n, e = recent.get(ch["id"], (0, 0))
        h = health.state(ch["id"])
        out.append({"id": ch["id"], "name": ch["name"], "type": ch["type"], "enabled": ch["enabled"],
                    "state": h["state"], "cooldown_remaining_s": round(h["cooldown_remaining_s"], 1),
                    "requests_1h": n, "errors_1h": e,
                    "error_rate_1h": f"{100 * e / n:.1f}%" if n else "–"})
    return out
