"""The dashboard: balances, spend today / 7 d / 30 d, requests in 24 h and the daily-spend chart
match 10,000 usage rows (SQLite and PostgreSQL). Its speed is measured by bench/console.py, not
by a timed test."""
from __future__ import annotations

import json
import random
import time

from sqlalchemy import insert

from reapi.billing.money import format_usd
from reapi.store import schema

DAY = 86_400_000
MODELS = ("gpt-5.5", "gpt-5.5-mini", "claude-x", "o-model", "tiny", "six", "seventh")


async def seed_usage(console, account_id: int, n: int, now: int) -> list[dict]:
    rng = random.Random(7)
    rows = []
    for i in range(n):
        age = rng.randrange(0, 40 * DAY)  # some older than the 30 days shown
        rows.append({"request_id": f"req_seed_{i}", "account_id": account_id, "key_id": 1,
                     "model": MODELS[rng.randrange(len(MODELS)) if i % 3 else 0], "group": "default",
                     "channel_id": 1, "stream": False, "status": "ok", "prompt_tokens": 10, "completion_tokens": 20,
                     "cached_tokens": 0, "cache_write_tokens": 0, "hold_nano": 0,
                     "cost_nano": rng.randrange(1, 5_000_000), "uncollected_nano": 0, "created_at": now - age,
                     "settled_at": now - age})
    async with console.gw.engine.begin() as conn:
        for i in range(0, n, 1000):
            await conn.execute(insert(schema.usage), rows[i:i + 1000])
    return rows


async def test_dashboard_numbers_and_chart_match_10000_usage_rows(web, console):
    c = web()
    await c.signup("dash@example.com")
    account_id = (await console.admin("GET", "/admin/users"))["data"][0]["account_id"]
    await console.admin("POST", f"/admin/accounts/{account_id}/credits", {"amount_usd": "12.34"}, expect=201)
    await console.admin("POST", f"/admin/accounts/{account_id}/credits", {"amount_usd": "1.5", "wallet": "tasks"},
                        expect=201)
    now = int(time.time() * 1000)
    rows = await seed_usage(console, account_id, 10_000, now)
    today = now // DAY
    _, _, body = await c.get("/console", params={"format": "json"})
    data = json.loads(body)
    assert data["balances_usd"] == {"chat": "12.34", "tasks": "1.50"}

    def spent(days: int) -> str:
        return format_usd(sum(r["cost_nano"] for r in rows if today - r["created_at"] // DAY < days))

    assert data["spend_usd"] == {"today": spent(1), "7d": spent(7), "30d": spent(30)}
    assert data["requests_24h"] == sum(1 for r in rows if r["created_at"] >= now - DAY)
    chart = data["chart"]
    assert len(chart["days"]) == 30 and chart["days"][-1] == time.strftime("%Y-%m-%d", time.gmtime(now / 1000))
    names = [s["model"] for s in chart["series"]]
    assert names[0] == "gpt-5.5" and names[-1] == "other" and len(names) == 6  # top 5 and the rest
    from decimal import Decimal

    drawn = sum(Decimal(v) for s in chart["series"] for v in s["cost_usd"])
    assert drawn == Decimal(spent(30))  # every nano of 30 days is in the chart
    _, _, html = await c.get("/console")
    assert html.count("<rect ") >= 30 and "Daily spend by model" in html and "<svg" in html
    assert f"{console.url}/v1" in html  # the snippet's base: the request's own origin (no REAPI_PUBLIC_URL)

