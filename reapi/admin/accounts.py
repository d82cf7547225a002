"""/admin/accounts: accounts, their wallets' top-ups and debits, usage records and ledger."""
from __future__ import annotations

from fastapi import APIRouter

from reapi import operations as ops
from reapi.admin.common import BeforeId, Gw, Id, Limit, iso, page, read, write
from reapi.billing.money import format_usd
from reapi.operations.inputs import AccountIn, CreditIn
from reapi.store import queries

router = APIRouter(prefix="/admin/accounts", tags=["accounts"])


def account_out(a: dict) -> dict:
    """balance_usd is the chat wallet's (what /v1 spends); balances has every wallet."""
    balances = {w: format_usd(n) for w, n in a["balances"].items()}
    return {"id": a["id"], "name": a["name"], "balance_usd": balances["chat"], "balances": balances,
            "created_at": iso(a["created_at"])}


def usage_out(r: dict) -> dict:
    return {"request_id": r["request_id"], "key_id": r["key_id"], "model": r["model"], "group": r["group"],
            "channel_id": r["channel_id"], "stream": bool(r["stream"]), "status": r["status"],
            "prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
            "cached_tokens": r["cached_tokens"], "cache_write_tokens": r["cache_write_tokens"],
            "hold_usd": format_usd(r["hold_nano"]), "cost_usd": format_usd(r["cost_nano"]),
            "uncollected_usd": format_usd(r["uncollected_nano"]), "error_code": r["error_code"],
            "created_at": iso(r["created_at"]), "settled_at": iso(r["settled_at"])}


def ledger_out(r: dict) -> dict:
    out = {"id": r["id"], "kind": r["kind"], "amount_usd": format_usd(r["amount_nano"]),
           "request_id": r["request_id"], "note": r["note"], "created_at": iso(r["created_at"])}
    if "wallet" in r:
        out["wallet"] = r["wallet"]
    return out


@router.post("", status_code=201)
async def create_account(gw: Gw, body: AccountIn) -> dict:
    return account_out(await write(gw, ops.create_account, body.name, reload=False))


@router.get("/{account_id}")
async def get_account(gw: Gw, account_id: Id) -> dict:
    return account_out(await read(gw, ops.account, account_id))


@router.post("/{account_id}/credits", status_code=201)
async def add_credit(gw: Gw, account_id: Id, body: CreditIn) -> dict:
    """A top-up of one wallet ("chat" by default, or "tasks")."""
    c = await write(gw, ops.add_credit, account_id, body.amount_usd, wallet=body.wallet, note=body.note,
                    reload=False)
    return {"account_id": account_id, "wallet": c["wallet"], "amount_usd": format_usd(c["amount_nano"]),
            "balance_usd": format_usd(c["balance_nano"]), "note": c["note"]}


@router.post("/{account_id}/debits", status_code=201)
async def debit(gw: Gw, account_id: Id, body: CreditIn) -> dict:
    """An operator's correction: take money from one wallet (a ledger `adjustment`), never below zero."""
    d = await write(gw, ops.debit, account_id, body.amount_usd, wallet=body.wallet, note=body.note, reload=False)
    return {"account_id": account_id, "wallet": d["wallet"], "amount_usd": format_usd(d["amount_nano"]),
            "balance_usd": format_usd(d["balance_nano"]), "note": d["note"]}


@router.get("/{account_id}/usage")
async def usage(gw: Gw, account_id: Id, limit: Limit = 100, before_id: BeforeId = None) -> dict:
    return page(await read(gw, queries.list_usage, account_id, limit, before_id), limit, usage_out)


@router.get("/{account_id}/ledger")
async def ledger(gw: Gw, account_id: Id, limit: Limit = 100, before_id: BeforeId = None) -> dict:
    return page(await read(gw, queries.list_ledger, account_id, limit, before_id), limit, ledger_out)
