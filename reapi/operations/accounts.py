"""Accounts, their wallets' top-ups, and their API keys.

An account has one balance per wallet: "chat" (spent through /v1) and "tasks" (the task
gateway's). A key belongs to one workspace and spends that wallet only.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.billing.ledger import Credit, Debit
from reapi.billing.ledger import run as ledger_run
from reapi.billing.money import MAX_NANO, format_usd
from reapi.errors import bad_request
from reapi.operations import money
from reapi.operations.inputs import WALLETS, AccountIn, CreditIn, KeyIn, checked, not_found
from reapi.store import queries


async def account(conn: AsyncConnection, account_id: int) -> dict:
    """The account with `balances` (nano-USD per wallet). Raises 404."""
    acc = await queries.get_account(conn, account_id)
    if acc is None:
        raise not_found("Account", account_id)
    have = await queries.balances(conn, account_id)
    return {"id": acc["id"], "name": acc["name"], "created_at": acc["created_at"],
            "balances": {w: have.get(w, 0) for w in WALLETS}}


async def create_account(conn: AsyncConnection, name: str, *, credit_usd: str | int | None = None,
                         wallet: str = "chat", note: str = "initial credit") -> dict:
    """A new account, optionally with a first top-up of `credit_usd` into `wallet`; returns
    account(). Raises GatewayError(400) for a bad name or amount (nothing is created then)."""
    checked(AccountIn, name=name)
    amount = None
    if credit_usd is not None:
        amount = money.usd(checked(CreditIn, amount_usd=credit_usd, wallet=wallet).amount_usd, "amount_usd")
    acc = await queries.create_account(conn, name)
    if amount is not None:
        await ledger_run(conn, Credit(acc["id"], amount, note, wallet=wallet))
    return await account(conn, acc["id"])


async def add_credit(conn: AsyncConnection, account_id: int, amount_usd: str | int, *, wallet: str = "chat",
                     note: str | None = None) -> dict:
    """A top-up (amount > 0) into one wallet; returns {amount_nano, balance_nano} of that wallet.
    Raises 400 for a bad amount, or one the wallet's balance could not hold, and 404 for no account."""
    spec = checked(CreditIn, amount_usd=amount_usd, wallet=wallet, note=note)
    amount = money.usd(spec.amount_usd, "amount_usd")
    balance = (await account(conn, account_id))["balances"][spec.wallet]
    if balance + amount > MAX_NANO:  # BIGINT: the balance could not hold it
        raise bad_request(f"amount_usd would take the balance above the largest the store holds "
                          f"({format_usd(MAX_NANO)}).", param="amount_usd")
    new = await ledger_run(conn, Credit(account_id, amount, spec.note, wallet=spec.wallet))
    if new is None:
        raise not_found("Account", account_id)
    return {"account_id": account_id, "wallet": spec.wallet, "amount_nano": amount, "balance_nano": new,
            "note": spec.note}


async def debit(conn: AsyncConnection, account_id: int, amount_usd: str | int, *, wallet: str = "chat",
                note: str | None = None) -> dict:
    """Take money from one wallet (amount > 0): a ledger `adjustment` of -amount, never taking the
    balance below zero (the ledger's batch decides on the locked balance); returns {amount_nano,
    balance_nano} of that wallet. Raises 400 for a bad amount or one above the balance, 404 for no
    account."""
    spec = checked(CreditIn, amount_usd=amount_usd, wallet=wallet, note=note)
    amount = money.usd(spec.amount_usd, "amount_usd")
    done = await ledger_run(conn, Debit(account_id, amount, spec.note, wallet=spec.wallet))
    if done.refusal == "no_account":
        raise not_found("Account", account_id)
    if not done.ok:
        raise bad_request(f"amount_usd is more than the {spec.wallet} wallet holds "
                          f"({format_usd(done.balance_after)}); a debit never takes a balance below zero.",
                          param="amount_usd")
    return {"account_id": account_id, "wallet": spec.wallet, "amount_nano": amount,
            "balance_nano": done.balance_after, "note": spec.note}


async def create_key(conn: AsyncConnection, account_id: int, *, name: str = "default", workspace: str = "chat",
                     groups: Sequence[str] | None = None, models: Sequence[str] | None = None,
                     spend_limit_usd: str | int | None = None, rpm: int | None = None,
                     tpm: int | None = None, expires_at: str | datetime | None = None,
                     webhook_url: str | None = None, allow_private_webhooks: bool = False) -> dict:
    """A new key of `workspace` ("chat": sk-..., "tasks": rk_live_...); returns the key's fields
    with `key`, the secret (shown once: only its hash is stored). `expires_at` (a date or an ISO
    date-time, UTC unless it says otherwise) must lie in the future. `webhook_url` (tasks keys only)
    is the webhook of every task submitted without one in its body, held to the submit field's rule
    (reapi.webhooks.check_webhook_url; private targets only with `allow_private_webhooks`, the
    caller's REAPI_WEBHOOK_ALLOW_PRIVATE). Raises 400 or 404."""
    spec = checked(KeyIn, name=name, workspace=workspace, groups=None if groups is None else list(groups),
                   models=None if models is None else list(models), spend_limit_usd=spend_limit_usd,
                   rpm=rpm, tpm=tpm, expires_at=expires_at, webhook_url=webhook_url)
    if spec.webhook_url is not None:
        check_key_webhook(spec.workspace, spec.webhook_url, allow_private_webhooks)
    if spec.workspace == "tasks" and spec.spend_limit_usd is not None:
        # the task gateway holds per account (its tasks wallet); a key cap it would not enforce is refused
        raise bad_request("spend_limit_usd applies to chat keys only; a tasks key spends its account's tasks "
                          "wallet.", param="spend_limit_usd")
    limit = None if spec.spend_limit_usd is None else money.usd(spec.spend_limit_usd, "spend_limit_usd")
    expires = expiry_ms(spec.expires_at)
    if await queries.get_account(conn, account_id) is None:
        raise not_found("Account", account_id)
    v: dict[str, Any] = {**spec.model_dump(), "spend_limit_nano": limit, "expires_at": expires}
    kid, secret = await queries.create_key(conn, account_id, v)
    return {"id": kid, "key": secret, "account_id": account_id, "name": spec.name, "workspace": spec.workspace,
            "groups": spec.groups, "models": spec.models, "spend_limit_nano": limit, "rpm": spec.rpm,
            "tpm": spec.tpm, "expires_at": expires, "webhook_url": spec.webhook_url}


def check_key_webhook(workspace: str, url: str, allow_private: bool) -> None:
    """A key's default webhook: tasks keys only (chat has no tasks to report), and the URL rule of
    the submit field. Raises 400 naming `webhook_url`."""
    if workspace != "tasks":
        raise bad_request("webhook_url applies to tasks keys only; chat keys have no tasks to report.",
                          param="webhook_url")
    from reapi.webhooks.target import TargetRefused, check_webhook_url  # only when a key has one

    try:
        check_webhook_url(url, allow_private)
    except TargetRefused as exc:
        raise bad_request(f"{exc}.", param="webhook_url") from None


def expiry_ms(when: datetime | None) -> int | None:
    """A key's expiry as epoch ms (a naive date-time is UTC). Raises 400 unless it is in the future."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    ms = int(when.timestamp() * 1000)
    if ms <= queries.now_ms():
        raise bad_request("expires_at must be in the future.", param="expires_at")
    if ms > 253402300799000:  # 9999-12-31
        raise bad_request("expires_at is too far in the future.", param="expires_at")
    return ms


async def revoke_key(conn: AsyncConnection, key_id: int, *, account_id: int | None = None) -> bool:
    """Revoke a key; False if it was revoked already. Raises 404 for no such key, and, given
    `account_id`, for a key of another account (a console user touches only their own keys)."""
    if account_id is not None and await queries.key_account(conn, key_id) != account_id:
        raise not_found("Key", key_id)
    if await queries.revoke_key(conn, key_id):
        return True
    if not await queries.key_exists(conn, key_id):
        raise not_found("Key", key_id)
    return False
