"""Redemption codes: mint a batch through reapi.operations.codes (its codes shown once, on the page
that answers the POST; the store keeps only their hash), list the newest codes masked (all, used or
unused) and export that list as CSV, masked exactly as listed."""
from __future__ import annotations

from datetime import datetime, timezone

from reapi.admin_console.common import integer, opt, read, write
from reapi.billing.money import format_usd
from reapi.errors import GatewayError
from reapi.operations import codes as code_ops
from reapi.reports import csv_line
from reapi.web import Request, Response, render

LISTED = 200
EXPORTED = 10_000  # rows in one CSV export (newest first)
STATUSES = {"used": True, "unused": False}  # ?status= -> redeemed; anything else: every code
CSV_HEADER = ("code", "batch", "amount_usd", "wallet", "created_at", "expires_at", "redeemed", "redeemed_by", "note")


def _iso(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def masked(r: dict) -> dict:
    return {"id": r["id"], "code": "RC-****-****-****-" + r["last4"], "batch": r["batch"],
            "amount_usd": format_usd(r["amount_nano"]), "wallet": r["wallet"], "note": r["note"] or "",
            "created_at": _iso(r["created_at"]), "expires_at": _iso(r["expires_at"]),
            "redeemed": r["redeemed_at"] is not None, "redeemed_by": r["redeemed_by"]}


def _status(req: Request) -> str:
    raw = req.query.get("status", "")
    return raw if raw in STATUSES else ""


async def show(req: Request, *, minted: dict | None = None, error: str | None = None, status: int = 200) -> Response:
    which = _status(req) if minted is None and error is None else ""
    rows = await read(req, code_ops.list_codes, LISTED, redeemed=STATUSES.get(which))
    csv_href = "/admin/console/codes.csv" + (f"?status={which}" if which else "")
    return render(req, "admin/codes.html", {"title": "Redemption codes", "codes": [masked(r) for r in rows],
                                            "status": which, "csv": csv_href, "minted": minted, "error": error,
                                            "max_count": code_ops.MAX_COUNT}, status=status)


async def csv(req: Request) -> Response:
    """GET: the list (?status=used|unused) as CSV, newest first, at most EXPORTED rows, codes masked."""
    which = _status(req)
    rows = await read(req, code_ops.list_codes, EXPORTED, redeemed=STATUSES.get(which))
    out = [csv_line(CSV_HEADER)]
    for r in map(masked, rows):
        out.append(csv_line((r["code"], r["batch"], r["amount_usd"], r["wallet"], r["created_at"], r["expires_at"],
                             "yes" if r["redeemed"] else "no", r["redeemed_by"] or "", r["note"])))
    name = f"codes-{which or 'all'}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}.csv"
    return Response(200, b"".join(out), "text/csv; charset=utf-8",
                    [("content-disposition", f'attachment; filename="{name}"')])


async def mint(req: Request) -> Response:
    f = await req.form()
    try:
        b = await write(req, code_ops.create_codes, (f.get("amount_usd") or "").strip(), integer(f.get("count"), 1),
                        wallet=(f.get("wallet") or "chat"), expires_at=opt(f.get("expires_at")),
                        note=opt(f.get("note")), reload=False)
    except GatewayError as err:
        return await show(req, error=err.message, status=err.status)
    # the codes exist in clear only in this answer (pages are sent with cache-control: no-store)
    return await show(req, minted={"batch": b["batch"], "count": b["count"], "amount_usd": b["amount_usd"],
                                   "wallet": b["wallet"], "codes": b["codes"]})
