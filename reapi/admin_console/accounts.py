"""Accounts (search by id, name or user e-mail; both balances; credit a wallet with a note, a ledger
credit through ops.add_credit), one account's page (its balances, a debit with a note: a ledger
adjustment through ops.debit, never below zero; its recent calls and tasks), an account's keys
(revoke through ops.revoke_key) and one call's usage record by its request id."""
from __future__ import annotations

from reapi import operations as ops
from reapi import reports
from reapi.admin_console.common import named, read, write
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
        if f.get("from") == "account" and err.status != 404:
            return await detail(req, error=f"Account {aid}: {named(err)}", status=err.status)
        return await show(req, error=f"Account {aid}: {err.message}", status=err.status)
    if f.get("from") == "account":  # the form on the account's own page
        return redirect(f"/admin/console/accounts/{aid}?done=credited")
    return redirect(f"/admin/console/accounts?credited={aid}")


RECENT = 50  # calls and tasks shown on an account's page
_NOTICES = {"credited": "Credited the account.", "debited": "Debited the account."}


async def detail(req: Request, *, error: str | None = None, status: int = 200) -> Response:
    """GET: one account: balances, credit and debit forms, its newest calls and tasks."""
    aid = req.path_params["account_id"]
    acc = await read(req, ops.account, aid)
    calls = [{"request_id": r["request_id"], "created_at": r["created_at"], "model": r["model"],
              "key": f"…{r['key_last4']}" if r["key_last4"] else "", "status": r["status"],
              "prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
              "cached_tokens": r["cached_tokens"], "cost_usd": format_usd(r["cost_nano"]),
              "error_code": r["error_code"]}
             for r in (await read(req, reports.usage_page, aid, limit=RECENT)).rows]
    tasks = [{"id": t["id"], "model": t["model"], "state": t["status"], "created_at": t["created_at"],
              # a task's cost is held at submit and captured only on success; a failed task was not charged
              "cost_usd": format_usd(0 if t["status"] == "failed" else t["cost_nano"])}
             for t in await read(req, queries.recent_tasks, aid, RECENT)]
    return render(req, "admin/account.html", {
        "title": f"Account {aid}", "account": {"id": acc["id"], "name": acc["name"], "created_at": acc["created_at"],
                                               "balances_usd": {w: format_usd(n) for w, n in acc["balances"].items()}},
        "calls": calls, "tasks": tasks, "error": error, "notice": _NOTICES.get(req.query.get("done", ""))},
        status=status)


async def debit(req: Request) -> Response:
    """POST: take money from a wallet with a note (ops.debit: a ledger adjustment, never below zero)."""
    f = await req.form()
    aid = req.path_params["account_id"]
    try:
        await write(req, ops.debit, aid, f.get("amount_usd", "").strip(), wallet=f.get("wallet", "chat"),
                    note=(f.get("note") or "").strip() or None, reload=False)
    except GatewayError as err:
        if err.status == 404:
            raise
        return await detail(req, error=f"Account {aid}: {named(err)}", status=err.status)
    return redirect(f"/admin/console/accounts/{aid}?done=debited")


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
