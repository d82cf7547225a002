"""Redemption codes: mint a batch through reapi.operations.codes (its codes shown once, on the page
that answers the POST; the store keeps only their hash) and list the newest codes masked."""
from __future__ import annotations

from datetime import datetime, timezone

from reapi.admin_console.common import integer, opt, read, write
from reapi.billing.money import format_usd
from reapi.errors import GatewayError
from reapi.operations import codes as code_ops
from reapi.web import Request, Response, render

LISTED = 200


def _iso(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def masked(r: dict) -> dict:
    return {"id": r["id"], "code": "RC-****-****-****-" + r["last4"], "batch": r["batch"],
            "amount_usd": format_usd(r["amount_nano"]), "wallet": r["wallet"], "note": r["note"] or "",
            "created_at": _iso(r["created_at"]), "expires_at": _iso(r["expires_at"]),
            "redeemed": r["redeemed_at"] is not None, "redeemed_by": r["redeemed_by"]}


async def show(req: Request, *, minted: dict | None = None, error: str | None = None, status: int = 200) -> Response:
    rows = await read(req, code_ops.list_codes, LISTED)
    return render(req, "admin/codes.html", {"title": "Redemption codes", "codes": [masked(r) for r in rows],
                                            "minted": minted, "error": error, "max_count": code_ops.MAX_COUNT},
                  status=status)


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
