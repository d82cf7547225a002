"""Balance changes: holds, settlements, releases, credits, and the books' self-check.

Each function runs inside a transaction it is given and moves money only with
conditional updates (`... WHERE balance_nano >= :amount`), never read-then-write,
so concurrent requests of one account can never together spend more than its
balance, in one process or many. Every change of a balance is appended to the
ledger in the same transaction. Entries per request:

    hold    -H   when the call is admitted (H = worst-case cost)
    release +H   when the call ends, whatever its outcome
    charge  -C   when it succeeded (C = the call's cost, C may exceed H only by what
                 the balance could still pay; the rest is recorded as uncollected)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.store import schema

A = schema.accounts
K = schema.api_keys
U = schema.usage
L = schema.ledger


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class HoldRequest:
    request_id: str
    account_id: int
    key_id: int
    key_spend_limit_nano: int | None
    model: str
    group: str
    channel_id: int | None
    stream: bool
    worst_nano: int  # the hold wanted: prompt plus the requested output cap
    # Given what the account (and key) can still spend, the smaller hold to take instead
    # (by lowering the output cap), or None when not even the minimum call fits.
    resize: Callable[[int], int | None]


@dataclass(slots=True)
class HoldResult:
    ok: bool
    amount: int = 0
    balance_after: int = 0
    refusal: str | None = None  # "insufficient_balance" | "key_spend_limit_reached" | "no_account"


async def _take(conn: AsyncConnection, req: HoldRequest, amount: int) -> int | None:
    """Conditionally take `amount` from the account (and the key's cap). New balance, or None."""
    new_balance = (await conn.execute(
        update(A).where(A.c.id == req.account_id, A.c.balance_nano >= amount)
        .values(balance_nano=A.c.balance_nano - amount).returning(A.c.balance_nano))).scalar()
    if new_balance is None:
        return None
    if req.key_spend_limit_nano is not None:
        ok = (await conn.execute(
            update(K).where(K.c.id == req.key_id, K.c.spent_nano + amount <= req.key_spend_limit_nano)
            .values(spent_nano=K.c.spent_nano + amount).returning(K.c.id))).scalar()
        if ok is None:  # undo the account side; nothing was written to the ledger yet
            await conn.execute(update(A).where(A.c.id == req.account_id)
                               .values(balance_nano=A.c.balance_nano + amount))
            return None
    return new_balance


async def hold(conn: AsyncConnection, req: HoldRequest) -> HoldResult:
    amount = req.worst_nano
    new_balance = await _take(conn, req, amount)
    attempts = 0
    while new_balance is None:
        # Slow path: the worst case does not fit. Read what is left only to size a smaller
        # hold; the conditional update below still guards against a concurrent spender.
        attempts += 1
        q = select(A.c.balance_nano).where(A.c.id == req.account_id)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        balance = (await conn.execute(q)).scalar()
        if balance is None:
            return HoldResult(False, refusal="no_account")
        available, refusal = balance, "insufficient_balance"
        if req.key_spend_limit_nano is not None:
            spent = (await conn.execute(select(K.c.spent_nano).where(K.c.id == req.key_id))).scalar() or 0
            key_left = max(0, req.key_spend_limit_nano - spent)
            if key_left < available:
                available, refusal = key_left, "key_spend_limit_reached"
        amount = req.resize(available)
        if amount is None or attempts > 3:
            return HoldResult(False, balance_after=balance, refusal=refusal)
        new_balance = await _take(conn, req, amount)
    ts = now_ms()
    await conn.execute(insert(L).values(account_id=req.account_id, kind="hold", amount_nano=-amount,
                                        request_id=req.request_id, created_at=ts))
    await conn.execute(insert(U).values(
        request_id=req.request_id, account_id=req.account_id, key_id=req.key_id, model=req.model,
        group=req.group, channel_id=req.channel_id, stream=req.stream, status="pending", hold_nano=amount,
        created_at=ts))
    return HoldResult(True, amount=amount, balance_after=new_balance)


@dataclass(slots=True)
class Settlement:
    request_id: str
    account_id: int
    key_id: int
    key_limited: bool
    hold_nano: int
    cost_nano: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    status: str = "ok"  # or "client_closed": charged for what was produced before the client left


async def settle(conn: AsyncConnection, s: Settlement) -> int | None:
    """Charge a finished call. Returns the amount charged, or None if the hold was already
    released (swept as abandoned): then nothing moves, so nothing is charged twice."""
    ts = now_ms()
    claimed = (await conn.execute(
        update(U).where(U.c.request_id == s.request_id, U.c.status == "pending")
        .values(status=s.status, prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens,
                cached_tokens=s.cached_tokens, cache_write_tokens=s.cache_write_tokens, cost_nano=s.cost_nano,
                settled_at=ts).returning(U.c.id))).scalar()
    if claimed is None:
        return None
    charged = s.cost_nano
    extra = s.cost_nano - s.hold_nano
    if extra > 0:
        # The upstream reported more than the hold covered: collect what the balance allows.
        got = (await conn.execute(update(A).where(A.c.id == s.account_id, A.c.balance_nano >= extra)
                                  .values(balance_nano=A.c.balance_nano - extra).returning(A.c.id))).scalar()
        if got is None:
            q = select(A.c.balance_nano).where(A.c.id == s.account_id)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            balance = (await conn.execute(q)).scalar() or 0
            collectable = max(0, balance)
            await conn.execute(update(A).where(A.c.id == s.account_id)
                               .values(balance_nano=A.c.balance_nano - collectable))
            charged = s.hold_nano + collectable
            await conn.execute(update(U).where(U.c.id == claimed).values(
                cost_nano=charged, uncollected_nano=s.cost_nano - charged))
    else:
        await conn.execute(update(A).where(A.c.id == s.account_id)
                           .values(balance_nano=A.c.balance_nano + (s.hold_nano - charged)))
    if s.key_limited:
        await conn.execute(update(K).where(K.c.id == s.key_id)
                           .values(spent_nano=K.c.spent_nano + (charged - s.hold_nano)))
    await conn.execute(insert(L), [
        {"account_id": s.account_id, "kind": "release", "amount_nano": s.hold_nano,
         "request_id": s.request_id, "note": None, "created_at": ts},
        {"account_id": s.account_id, "kind": "charge", "amount_nano": -charged,
         "request_id": s.request_id, "note": None, "created_at": ts},
    ])
    return charged


async def release(conn: AsyncConnection, request_id: str, account_id: int, key_id: int, key_limited: bool,
                  hold_nano: int, status: str = "failed", error_code: str | None = None) -> bool:
    """Give a failed call's hold back in full. False if it was already settled or released."""
    ts = now_ms()
    claimed = (await conn.execute(
        update(U).where(U.c.request_id == request_id, U.c.status == "pending")
        .values(status=status, error_code=error_code, cost_nano=0, settled_at=ts).returning(U.c.id))).scalar()
    if claimed is None:
        return False
    await conn.execute(update(A).where(A.c.id == account_id).values(balance_nano=A.c.balance_nano + hold_nano))
    if key_limited:
        await conn.execute(update(K).where(K.c.id == key_id).values(spent_nano=K.c.spent_nano - hold_nano))
    await conn.execute(insert(L).values(account_id=account_id, kind="release", amount_nano=hold_nano,
                                        request_id=request_id, created_at=ts))
    return True


async def sweep(conn: AsyncConnection, older_than_ms: int) -> int:
    """Release holds of calls pending since before `older_than_ms` (their process died)."""
    rows = (await conn.execute(
        select(U.c.request_id, U.c.account_id, U.c.key_id, U.c.hold_nano)
        .where(U.c.status == "pending", U.c.created_at < older_than_ms))).all()
    n = 0
    for r in rows:
        limited = (await conn.execute(select(K.c.spend_limit_nano).where(K.c.id == r.key_id))).scalar() is not None
        n += await release(conn, r.request_id, r.account_id, r.key_id, limited, r.hold_nano,
                           status="expired", error_code="abandoned")
    return n


async def credit(conn: AsyncConnection, account_id: int, amount_nano: int, note: str | None,
                 kind: str = "credit") -> int | None:
    """Add money (a top-up). Returns the new balance, or None if the account does not exist."""
    new_balance = (await conn.execute(
        update(A).where(A.c.id == account_id).values(balance_nano=A.c.balance_nano + amount_nano)
        .returning(A.c.balance_nano))).scalar()
    if new_balance is None:
        return None
    await conn.execute(insert(L).values(account_id=account_id, kind=kind, amount_nano=amount_nano,
                                        note=note, created_at=now_ms()))
    return new_balance


async def verify(conn: AsyncConnection) -> list[str]:
    """Every way the books could be wrong, as readable lines; empty when they balance."""
    problems: list[str] = []
    sums = dict((await conn.execute(
        select(L.c.account_id, func.coalesce(func.sum(L.c.amount_nano), 0)).group_by(L.c.account_id))).all())
    for acc_id, balance in (await conn.execute(select(A.c.id, A.c.balance_nano))).all():
        total = int(sums.get(acc_id, 0))
        if balance != total:
            problems.append(f"account {acc_id}: balance {balance} != ledger sum {total} (nano-USD)")
        if balance < 0:
            problems.append(f"account {acc_id}: negative balance {balance}")
    per_request = dict((await conn.execute(
        select(L.c.request_id, func.sum(L.c.amount_nano)).where(L.c.request_id.is_not(None))
        .group_by(L.c.request_id))).all())
    for r in (await conn.execute(select(U.c.request_id, U.c.status, U.c.hold_nano, U.c.cost_nano))).all():
        moved = -int(per_request.get(r.request_id, 0))
        expected = r.hold_nano if r.status == "pending" else r.cost_nano
        if moved != expected:
            problems.append(f"usage {r.request_id} ({r.status}): cost {expected} != ledger {moved}")
    return problems
