"""The overview: requests, spend and errors per model over 24 hours and 7 days, each channel's
health (its breaker state and recent error rate), and `reapi ledger verify`'s status line, run only
when the operator presses its button (it scans the whole ledger) and bounded in time."""
from __future__ import annotations

import asyncio

from reapi.admin_console.common import read
from reapi.billing.money import format_usd
from reapi.store import queries, stats
from reapi.web import Request, Response, render

HOUR_MS = 3_600_000
VERIFY_SECONDS = 30  # the on-demand ledger check gives up after this long
SHOWN_PROBLEMS = 50
_VERIFYING = asyncio.Lock()  # one check at a time per instance (never awaited while held: no waiting)


async def show(req: Request, *, ledger: dict | None = None) -> Response:
    now = queries.now_ms()
    windows = []
    for label, hours in (("24 h", 24), ("7 days", 24 * 7)):
        rows = await read(req, stats.overview_by_model, now - hours * HOUR_MS)
        windows.append({"window": label, "requests": sum(r[1] for r in rows),
                        "spend_usd": format_usd(sum(r[2] for r in rows)), "errors": sum(r[3] for r in rows),
                        "models": [{"model": m, "requests": n, "spend_usd": format_usd(c), "errors": e}
                                   for m, n, c, e in rows]})
    return render(req, "admin/overview.html", {"title": "Overview", "windows": windows, "ledger": ledger,
                                               "channels": await channel_health(req, now)})


async def verify_ledger(req: Request) -> Response:
    """POST: run the ledger check now (as `reapi ledger verify` does) and show its status line."""
    from reapi.billing.ledger import verify
    from reapi.payments.audit import verify_topups

    async def both() -> list[str]:
        async with req.gateway.engine.connect() as conn:
            return await verify(conn) + await verify_topups(conn)

    if _VERIFYING.locked():
        return await show(req, ledger={"ok": False, "timed_out": False, "problems": [], "count": 0,
                                       "line": "a ledger check is already running; try again when it ends"})
    start = asyncio.get_running_loop().time()
    try:
        async with _VERIFYING:
            async with asyncio.timeout(VERIFY_SECONDS):  # not wait_for: see reapi.aio
                problems = await both()
    except TimeoutError:
        return await show(req, ledger={"ok": False, "timed_out": True, "problems": [], "count": 0,
                                       "line": f"ledger check did not finish within {VERIFY_SECONDS} s"})
    took = asyncio.get_running_loop().time() - start
    line = ("ledger ok: every balance equals the sum of its entries" if not problems
            else f"ledger: {len(problems)} problem(s)")
    return await show(req, ledger={"ok": not problems, "timed_out": False, "count": len(problems),
                                   "problems": problems[:SHOWN_PROBLEMS], "line": line,
                                   "seconds": f"{took:.2f}"})


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
