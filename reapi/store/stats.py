"""Read-only aggregates of one account's usage for the console's dashboard, and of every account's
for the operator overview (range scans of ix_usage_created; tasks by their time-ordered ids).

Both queries are range scans of ix_usage_account_created (account_id, created_at): the
dashboard reads one account's last 30 days and nothing else. Days are UTC days
(created_at / 86400000, integer division on both stores)."""
from __future__ import annotations

from sqlalchemy import case, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.store import schema

U = schema.usage
DAY_MS = 86_400_000


async def daily_by_model(conn: AsyncConnection, account_id: int, since_ms: int) -> list[tuple[int, str, int, int]]:
    """(utc day number, model, cost nano, requests) of the account's calls since `since_ms`."""
    day = (U.c.created_at // DAY_MS).label("day")  # floor division: an integer day on both stores
    rows = await conn.execute(
        select(day, U.c.model, func.sum(U.c.cost_nano), func.count())
        .where(U.c.account_id == account_id, U.c.created_at >= since_ms)
        .group_by(day, U.c.model))
    return [(int(d), m, int(c or 0), int(n)) for d, m, c, n in rows]


async def requests_since(conn: AsyncConnection, account_id: int, since_ms: int) -> int:
    return (await conn.execute(select(func.count()).select_from(U)
                               .where(U.c.account_id == account_id, U.c.created_at >= since_ms))).scalar_one()


ERROR = U.c.status.in_(("failed", "expired"))  # a call that was released, not one still in flight


async def overview_by_channel(conn: AsyncConnection, since_ms: int) -> dict[int, tuple[int, int]]:
    """channel id -> (requests, errors) since `since_ms`."""
    errors = func.sum(case((ERROR, 1), else_=0))
    rows = await conn.execute(select(U.c.channel_id, func.count(), errors)
                              .where(U.c.created_at >= since_ms, U.c.channel_id.is_not(None))
                              .group_by(U.c.channel_id))
    return {int(c): (int(n), int(e or 0)) for c, n, e in rows}


async def overview_series(conn: AsyncConnection, since_ms: int, bucket_ms: int,
                          by: str) -> list[tuple[int, object, int, int, int, int, int]]:
    """(bucket number, model or channel id, requests, cost nano, errors, summed latency ms, settled calls)
    of every account's calls since `since_ms`, in buckets of `bucket_ms` (created_at // bucket_ms).
    Latency is a call's hold-to-settlement time (settled_at - created_at): the whole call, streams
    included. A range scan of ix_usage_created: bounded by the window, never the whole table."""
    key = U.c.model if by == "model" else U.c.channel_id
    bucket = (U.c.created_at // bucket_ms).label("bucket")
    settled = U.c.settled_at.is_not(None)
    q = (select(bucket, key, func.count(), func.sum(U.c.cost_nano), func.sum(case((ERROR, 1), else_=0)),
                func.sum(case((settled, U.c.settled_at - U.c.created_at), else_=0)),
                func.sum(case((settled, 1), else_=0)))
         .where(U.c.created_at >= since_ms).group_by(bucket, key))
    if by != "model":
        q = q.where(U.c.channel_id.is_not(None))
    rows = await conn.execute(q)
    return [(int(b), k, int(n), int(c or 0), int(e or 0), int(lat or 0), int(s or 0)) for b, k, n, c, e, lat, s in rows]


async def tasks_by_state(conn: AsyncConnection, since_id: str) -> dict[str, int]:
    """internal task state -> count of the tasks whose id is at least `since_id` (task ids sort by
    creation time, so reapi.tasks.ids.first_id_at(t) makes this a primary-key range: the tasks since t)."""
    T = schema.tasks
    rows = await conn.execute(select(T.c.status, func.count()).where(T.c.id >= since_id)
                              .group_by(T.c.status))
    return {s: int(n) for s, n in rows}


async def last_ledger_check(conn: AsyncConnection) -> dict | None:
    L = schema.ledger_checks
    r = (await conn.execute(select(L).where(L.c.id == 1))).mappings().first()
    return None if r is None else dict(r)


async def save_ledger_check(conn: AsyncConnection, *, ran_at: int, ok: bool, timed_out: bool, problem_count: int,
                            problems: str, duration_ms: int, user_id: int | None) -> None:
    """Replace the one stored check (in the caller's transaction)."""
    L = schema.ledger_checks
    await conn.execute(delete(L).where(L.c.id == 1))
    await conn.execute(insert(L).values(id=1, ran_at=ran_at, ok=ok, timed_out=timed_out, problem_count=problem_count,
                                        problems=problems, duration_ms=duration_ms, user_id=user_id))
