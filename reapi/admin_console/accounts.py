"""Accounts (search by id, name or user e-mail; both balances; credit a wallet with a note, a ledger
credit through ops.add_credit), an account's keys (revoke through ops.revoke_key) and one call's
usage record by its request id."""
from __future__ import annotations

from reapi import operations as ops
from reapi.admin_console.common import read, write
from reapi.billing.money import format_usd
from reapi.errors import GatewayError
from reapi.operations.inputs import not_found
from reapi.store import queries
from reapi.web import Request, Response, render, redirect


async def show(req: Request, *, error: str | None = None, status: int = 200) -> Response:
    q = req.query.get("q", "").strip()[:200]
    rows = await read(req, queries.find_accounts, q)
    accounts = [{"id": r["id"], "name": r["name"], "created_at": r["created_at"],
                 "balances_usd": {w: format_usd(n) for w, n in r["balances"].items()}} for r in rows]
    notice = None
    if req.query.get("credited"):
        notice = f"Credited account {req.query.get('credited')[:12]}."
    return render(req, "admin/accounts.html", {"title": "Accounts", "q": q, "accounts": accounts,
                                               "error": error, "notice": notice}, status=status)


async def credit(req: Request) -> Response:
    f = await req.form()
    aid = req.path_params["account_id"]
    try:
        await write(req, ops.add_credit, aid, f.get("amount_usd", "").strip(), wallet=f.get("wallet", "chat"),
                    note=(f.get("note") or "").strip() or None, reload=False)
    except GatewayError as err:
        return await show(req, error=f"Account {aid}: {err.message}", status=err.status)
    return redirect(f"/admin/console/accounts?credited={aid}")


async def keys(req: Request) -> Response:
    aid = req.path_params["account_id"]
    acc = await read(req, ops.account, aid)
    rows = await read(req, queries.list_keys, aid)
    out = [{"id": k["id"], "name": k["name"], "workspace": k.get("workspace"),
            "key": f"…{k['key_last4']}" if k.get("key_last4") else f"{k.get('key_prefix', '')}…",
            "revoked": k.get("revoked_at") is not None, "spent_usd": format_usd(k.get("spent_nano") or 0)}
           for k in rows]
    return render(req, "admin/keys.html", {"title": f"Keys of account {aid}", "account": {
        "id": acc["id"], "name": acc["name"]}, "keys": out,
        "notice": "Key revoked." if req.query.get("done") == "revoked" else None})


async def revoke(req: Request) -> Response:
    kid = req.path_params["key_id"]
    aid = await read(req, queries.key_account, kid)
    if aid is None:
        raise not_found("Key", kid)
    await write(req, ops.revoke_key, kid)
    return redirect(f"/admin/console/accounts/{aid}/keys?done=revoked")


async def usage(req: Request) -> Response:
    rid = req.query.get("request_id", "").strip()[:64]
    row = await read(req, queries.usage_by_request, rid) if rid else None
    record = None
    if row is not None:
        record = {k: row[k] for k in ("request_id", "account_id", "key_id", "model", "group", "channel_id",
                                      "status", "prompt_tokens", "completion_tokens", "cached_tokens",
                                      "cache_write_tokens", "error_code", "created_at")}
        record.update(stream=bool(row["stream"]), cost_usd=format_usd(row["cost_nano"]),
                      hold_usd=format_usd(row["hold_nano"]))
    return render(req, "admin/usage.html", {"title": "Usage", "request_id": rid, "record": record,
                                            "searched": bool(rid)})
