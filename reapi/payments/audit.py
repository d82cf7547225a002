"""The top-ups' own check, run by `reapi ledger verify` beside the books' (billing.ledger.verify).

The ledger accepts a credit with any ref; this checks that top-ups and their credits agree: every
paid top-up has exactly one ledger credit of its amount, in its account and wallet, under its ref
(code_<code id> for a code, topup_<id> for Stripe); a top-up that is not paid has none; no
top-up ref is credited without its top-up; every redeemed code has its paid top-up; every
recorded Stripe event belongs to a paid Stripe top-up of its session.
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.store import schema

T, L, RC, E = schema.topups, schema.ledger, schema.redemption_codes, schema.stripe_events


def ref_of(topup: dict) -> str:
    return f"code_{topup['code_id']}" if topup["method"] == "code" else f"topup_{topup['id']}"


async def verify_topups(conn: AsyncConnection) -> list[str]:
    """Every way top-ups and their credits could disagree, as readable lines; empty when they agree."""
    problems: list[str] = []
    credits: dict[str, list[tuple[int, str, int]]] = {}
    q = (select(L.c.request_id, L.c.account_id, L.c.wallet, L.c.amount_nano)
         .where(L.c.kind == "credit", L.c.request_id.is_not(None),
                L.c.request_id.like("code\\_%", escape="\\") | L.c.request_id.like("topup\\_%", escape="\\")))
    for ref, acc, wallet, amount in await conn.execute(q):
        credits.setdefault(ref, []).append((acc, wallet, int(amount)))
    for t in (await conn.execute(select(T).order_by(T.c.id))).mappings():
        ref = ref_of(t)
        found = credits.pop(ref, [])
        tag = f"top-up {t['id']} ({t['method']}, {t['status']})"
        if t["status"] == "paid":
            if found != [(t["account_id"], t["wallet"], t["amount_nano"])]:
                problems.append(f"{tag}: credits {found} under {ref}, expected one of {t['amount_nano']} to account "
                                f"{t['account_id']} wallet {t['wallet']}")
        elif found:
            problems.append(f"{tag}: not paid but credited {found} under {ref}")
        if t["method"] == "code" and t["code_id"] is None:
            problems.append(f"{tag}: a code top-up without its code")
    for ref, found in sorted(credits.items()):
        problems.append(f"ledger credits {found} under {ref} without a top-up")
    orphans = await conn.execute(select(RC.c.id).where(RC.c.redeemed_at.is_not(None))
                                 .where(~select(T.c.id).where(T.c.code_id == RC.c.id, T.c.status == "paid").exists()))
    problems += [f"redemption code {cid}: redeemed without a paid top-up" for (cid,) in orphans]
    events = await conn.execute(select(E.c.event_id, E.c.topup_id).where(~select(T.c.id).where(
        T.c.id == E.c.topup_id, T.c.method == "stripe", T.c.status == "paid", T.c.session_id == E.c.session_id
    ).exists()))
    problems += [f"Stripe event {eid}: top-up {tid} is not a paid Stripe top-up of its session" for eid, tid in events]
    n = (await conn.execute(select(func.count()).select_from(T).where(T.c.method.not_in(["code", "stripe"])))).scalar()
    if n:
        problems.append(f"{n} top-ups of an unknown method")
    return problems
