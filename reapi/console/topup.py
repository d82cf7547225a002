"""The top-up page: redeem a code, pay by card through Stripe Checkout (when configured), and the
account's past top-ups with their status. The rules (a code credits once, the throttle, what a
Stripe session credits) live in reapi.payments and reapi.operations.codes."""
from __future__ import annotations

from reapi import reports
from reapi.billing.money import format_usd
from reapi.console.common import read
from reapi.errors import GatewayError
from reapi.operations import codes as code_ops
from reapi.payments import stripe as stripe_topups
from reapi.store import queries
from reapi.web import Request, Response, WebError, redirect, render

WALLETS = ("chat", "tasks")
METHODS = {"code": "Redemption code", "stripe": "Card (Stripe)"}
STATUS = {"pending": "awaiting payment", "paid": "paid", "failed": "failed", "expired": "expired",
          "mismatch": "held for review"}


def topup_row(t: dict) -> dict:
    return {"id": t["id"], "method": METHODS.get(t["method"], t["method"]), "wallet": t["wallet"],
            "amount_usd": format_usd(t["amount_nano"]), "status": t["status"],
            "status_text": STATUS.get(t["status"], t["status"]), "created_at": t["created_at"],
            "completed_at": t["completed_at"]}


async def _data(conn, account_id: int) -> dict:
    return {"balances": await queries.balances(conn, account_id), "topups": await reports.topups(conn, account_id)}


def _query_id(req: Request, name: str) -> int | None:
    raw = req.query.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) < 10 else None


async def _page(req: Request, status: int = 200, **ctx) -> Response:
    account_id = req.user["account_id"]  # type: ignore[index]
    data = await read(req, _data, account_id)
    rows = [topup_row(t) for t in data["topups"]]
    mine = {r["id"]: r for r in rows}
    s = req.settings
    lo, hi = stripe_topups.amount_range(s)
    flashes = []
    for name, text in (("redeemed", "{amount} USD added to your {wallet} balance."),
                       ("paid", "Thank you: your payment of {amount} USD is being confirmed. Your {wallet} balance "
                                "goes up as soon as Stripe confirms it."),
                       ("cancelled", "The payment of {amount} USD was cancelled: nothing was charged.")):
        t = mine.get(_query_id(req, name) or 0)
        if t is not None:
            flashes.append(("ok" if name != "cancelled" else "notice",
                            text.format(amount=t["amount_usd"], wallet=t["wallet"])))
    context = {"title": "Top up", "balances_usd": {w: format_usd(n) for w, n in data["balances"].items()},
               "topups": rows, "wallets": WALLETS, "stripe": stripe_topups.enabled(s),
               "presets": stripe_topups.presets(s), "min_usd": lo, "max_usd": hi, "flashes": flashes,
               "form": ctx.pop("form", {}), **ctx}
    return render(req, "console/topup.html", context, status)


async def show(req: Request) -> Response:
    return await _page(req)


async def redeem(req: Request) -> Response:
    form = await req.form()
    code = form.get("code", "")[:200]
    gw = req.gateway
    try:
        r = await code_ops.redeem_throttled(gw.engine, gw.limiter, req.user["account_id"], code)  # type: ignore
    except GatewayError as err:
        if err.status not in (400, 429):
            raise
        resp = await _page(req, err.status, redeem_error=err.message, form={"code": code.strip()})
        resp.headers.extend(err.headers.items())
        return resp
    return redirect(f"/console/topup?redeemed={r.topup_id}")


async def stripe(req: Request) -> Response:
    if not stripe_topups.enabled(req.settings):
        raise WebError(404, "Card payments are not enabled on this gateway.")
    form = await req.form()
    amount = (form.get("amount_custom", "").strip() or form.get("amount", "").strip())[:40]
    wallet = form.get("wallet", "chat")
    fields = {"amount": form.get("amount", ""), "amount_custom": form.get("amount_custom", "")[:40], "wallet": wallet}
    try:
        if wallet not in WALLETS:
            raise GatewayError(400, "Choose the chat or the tasks balance.", param="wallet")
        nano = stripe_topups.parse_amount(req.settings, amount)
        c = await stripe_topups.start_checkout(req.gateway.engine, req.settings, req.user["account_id"],  # type: ignore
                                               wallet, nano, req.origin())
    except GatewayError as err:
        if err.status not in (400, 502):
            raise
        return await _page(req, err.status, stripe_error=err.message, form=fields)
    # Stripe's own page (an https URL checked by payments.stripe), not a path on this site
    return Response(303, b"", "text/plain; charset=utf-8", [("location", c.url)])
