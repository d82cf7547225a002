"""The dashboard: balances of both wallets, spend today / 7 / 30 days, requests in the last
24 h, a chart of daily spend by model over 30 days, and the first-call snippet."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from reapi.billing.money import format_usd
from reapi.console.common import read
from reapi.store import queries, stats
from reapi.web import Request, Response, render
from reapi.web.charts import PALETTE, stacked_bars

DAY_MS = stats.DAY_MS
DAYS = 30
TOP_MODELS = len(PALETTE) - 1  # the rest are drawn together as "other"


async def _data(conn, account_id: int, now: int) -> dict:
    today = now // DAY_MS
    first = today - DAYS + 1
    return {"balances": await queries.balances(conn, account_id),
            "daily": await stats.daily_by_model(conn, account_id, first * DAY_MS),
            "requests_24h": await stats.requests_since(conn, account_id, now - DAY_MS)}


def spend_summary(daily: list[tuple[int, str, int, int]], today: int) -> dict[str, int]:
    out = {"today": 0, "7d": 0, "30d": 0}
    for day, _model, cost, _n in daily:
        age = today - day
        if age == 0:
            out["today"] += cost
        if age < 7:
            out["7d"] += cost
        if age < DAYS:
            out["30d"] += cost
    return out


def chart_series(daily: list[tuple[int, str, int, int]], today: int) -> tuple[list[int], list[tuple[str, list[int]]]]:
    """The 30 days (day numbers, oldest first) and one series per top model (+ "other")."""
    days = list(range(today - DAYS + 1, today + 1))
    index = {d: i for i, d in enumerate(days)}
    per_model: dict[str, list[int]] = {}
    for day, model, cost, _n in daily:
        if day in index:
            per_model.setdefault(model, [0] * DAYS)[index[day]] += cost
    ranked = sorted(per_model, key=lambda m: (-sum(per_model[m]), m))
    series = [(m, per_model[m]) for m in ranked[:TOP_MODELS] if sum(per_model[m]) > 0]
    rest = ranked[TOP_MODELS:]
    if rest:
        series.append(("other", [sum(per_model[m][i] for m in rest) for i in range(DAYS)]))
    return days, series


def _label(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, tz=timezone.utc).strftime("%m-%d")


def snippets(base: str, model: str) -> dict[str, str]:
    curl = (f"curl {base}/v1/chat/completions \\\n"
            f"  -H \"Authorization: Bearer $REAPI_API_KEY\" \\\n"
            f"  -H \"Content-Type: application/json\" \\\n"
            f"  -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'")
    python = ("import os\nfrom openai import OpenAI\n\n"
              f"client = OpenAI(base_url=\"{base}/v1\", api_key=os.environ[\"REAPI_API_KEY\"])\n"
              f"reply = client.chat.completions.create(\n    model=\"{model}\",\n"
              "    messages=[{\"role\": \"user\", \"content\": \"Hello!\"}],\n)\n"
              "print(reply.choices[0].message.content)")
    return {"curl": curl, "python": python}


async def show(req: Request) -> Response:
    now = int(time.time() * 1000)
    today = now // DAY_MS
    account_id = req.user["account_id"]  # type: ignore[index]
    data = await read(req, _data, account_id, now)
    spend = spend_summary(data["daily"], today)
    days, series = chart_series(data["daily"], today)
    labels = [_label(d) for d in days]
    served = req.gateway.catalog.snapshot.served_models(None)
    model = served[0] if served else "gpt-5.5"
    base = req.origin()
    context = {
        "title": "Dashboard", "account_id": account_id,
        "balances_usd": {w: format_usd(n) for w, n in data["balances"].items()},
        "spend_usd": {k: format_usd(v) for k, v in spend.items()},
        "requests_24h": data["requests_24h"],
        "chart": {"days": [datetime.fromtimestamp(d * 86400, tz=timezone.utc).strftime("%Y-%m-%d") for d in days],
                  "series": [{"model": m, "cost_usd": [format_usd(v) for v in vals]} for m, vals in series]},
        "base_url": base, "snippet_model": model, "snippets": snippets(base, model),
        "_svg": stacked_bars(labels, series, title="Daily spend by model, last 30 days (USD)"),
        "_legend": [(i, m) for i, (m, _v) in enumerate(series)],
    }
    return render(req, "console/dashboard.html", context)
