"""Read-only aggregates of one account's usage for the console's dashboard.

Both queries are range scans of ix_usage_account_created (account_id, created_at): the
dashboard reads one account's last 30 days and nothing else. Days are UTC days
(created_at / 86400000, integer division on both stores)."""
from __future__ import annotations

from sqlalchemy import case, func, select
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



async def overview_by_model(conn: AsyncConnection, since_ms: int) -> list[tuple[str, int, int, int]]:
    """(model, requests, cost nano, errors) of every account's calls since `since_ms` (the operator
    console's overview); an error is a call whose status is not "ok"."""
    errors = func.sum(case((U.c.status != "ok", 1), else_=0))
    rows = await conn.execute(select(U.c.model, func.count(), func.sum(U.c.cost_nano), errors)
                              .where(U.c.created_at >= since_ms).group_by(U.c.model).order_by(U.c.model))
    return [(m, int(n), int(c or 0), int(e or 0)) for m, n, c, e in rows]


async def overview_by_channel(conn: AsyncConnection, since_ms: int) -> dict[int, tuple[int, int]]:
    """channel id -> (requests, errors) since `since_ms`."""
    errors = func.sum(case((U.c.status != "ok", 1), else_=0))
    rows = await conn.execute(select(U.c.channel_id, func.count(), errors)
                              .where(U.c.created_at >= since_ms, U.c.channel_id.is_not(None))
                              .group_by(U.c.channel_id))
    return {int(c): (int(n), int(e or 0)) for c, n, e in rows}
