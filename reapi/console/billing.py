"""The billing page: the ledger of both wallets (credits, top-ups, holds, releases, charges),
newest first, each entry with its wallet's balance right after it (reapi.reports.statement)."""
from __future__ import annotations

from urllib.parse import urlencode

from reapi import reports
from reapi.billing.money import format_usd
from reapi.web import Request, Response, render

WALLETS = ("chat", "tasks")
PAGE = 100


def describe(kind: str, ref: str | None, note: str | None) -> str:
    if kind == "credit" and ref and ref.startswith("code_"):
        return "top-up: redemption code"
    if kind == "credit" and ref and ref.startswith("topup_"):
        return "top-up: card (Stripe)"
    return {"credit": "credit", "hold": "hold (call admitted)", "release": "hold released",
            "charge": "charge", "adjustment": "adjustment"}.get(kind, kind)


def entry_row(r: dict) -> dict:
    return {"id": r["id"], "created_at": r["created_at"], "wallet": r["wallet"], "kind": r["kind"],
            "what": describe(r["kind"], r["ref"], r["note"]), "ref": r["ref"], "note": r["note"],
            "amount_usd": format_usd(r["amount_nano"]), "negative": r["amount_nano"] < 0,
            "balance_after_usd": format_usd(r["balance_after_nano"])}


async def show(req: Request) -> Response:
    account_id = req.user["account_id"]  # type: ignore[index]
    wallet = req.query.get("wallet", "")
    wallet = wallet if wallet in WALLETS else ""
    raw = req.query.get("before", "")
    before = int(raw) if raw.isdigit() and len(raw) < 10 else None
    st = await reports.statement(req.gateway.engine, account_id, limit=PAGE, before_id=before, wallet=wallet or None)
    query = {"wallet": wallet} if wallet else {}
    context = {"title": "Billing", "wallet": wallet, "wallets": WALLETS,
               "balances_usd": {w: format_usd(n) for w, n in st.balances.items()},
               "entries": [entry_row(r) for r in st.rows],
               "next": f"/console/billing?{urlencode({**query, 'before': st.next_before_id})}"
               if st.next_before_id else None,
               "first": f"/console/billing?{urlencode(query)}" if before else None}
    return render(req, "console/billing.html", context)
