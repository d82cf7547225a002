"""/admin/codes: mint batches of redemption codes (shown once) and list them masked."""
from __future__ import annotations

from fastapi import APIRouter

from reapi.admin.common import BeforeId, Gw, Limit, iso, page, read, write
from reapi.billing.money import format_usd
from reapi.operations import codes as code_ops

router = APIRouter(prefix="/admin/codes", tags=["codes"])


def code_out(r: dict) -> dict:
    """A code as the list shows it: masked to its last 4 characters, never its hash."""
    return {"id": r["id"], "code": "RC-****-****-****-" + r["last4"], "batch": r["batch"],
            "amount_usd": format_usd(r["amount_nano"]), "wallet": r["wallet"], "note": r["note"],
            "created_at": iso(r["created_at"]), "expires_at": iso(r["expires_at"]),
            "redeemed": r["redeemed_at"] is not None, "redeemed_at": iso(r["redeemed_at"]),
            "redeemed_by": r["redeemed_by"]}


@router.post("", status_code=201)
async def create_codes(gw: Gw, body: code_ops.CodesIn) -> dict:
    """A batch of codes: `codes` are shown only in this answer (the store keeps their sha256)."""
    b = await write(gw, code_ops.create_codes, body.amount_usd, body.count, wallet=body.wallet,
                    expires_at=body.expires_at, note=body.note, reload=False)
    return {"batch": b["batch"], "count": b["count"], "amount_usd": b["amount_usd"], "wallet": b["wallet"],
            "expires_at": iso(b["expires_at"]), "note": b["note"], "codes": b["codes"]}


@router.get("")
async def list_codes(gw: Gw, limit: Limit = 100, before_id: BeforeId = None) -> dict:
    return page(await read(gw, code_ops.list_codes, limit, before_id), limit, code_out)
