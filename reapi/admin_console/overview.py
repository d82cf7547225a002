"""The overview: requests, spend and errors per model over 24 hours and 7 days, and each channel's
health (its breaker state and recent error rate)."""
from __future__ import annotations

from reapi.admin_console.common import read
from reapi.billing.money import format_usd
from reapi.store import queries, stats
from reapi.web import Request, Response, render

HOUR_MS = 3_600_000


async def show(req: Request) -> Response:
    now = queries.now_ms()
    windows = []
    for label, hours in (("24 h", 24), ("7 days", 24 * 7)):
        rows = await read(req, stats.overview_by_model, now - hours * HOUR_MS)
        windows.append({"window": label, "requests": sum(r[1] for r in rows),
                        "spend_usd": format_usd(sum(r[2] for r in rows)), "errors": sum(r[3] for r in rows),
                        "models": [{"model": m, "requests": n, "spend_usd": format_usd(c), "errors": e}
                                   for m, n, c, e in rows]})
    return render(req, "admin/overview.html", {"title": "Overview", "windows": windows,
                                               "channels": await channel_health(req, now)})


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
