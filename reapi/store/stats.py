"""Read-only aggregates of one account's usage for the console's dashboard.

Both queries are range scans of ix_usage_account_created (account_id, created_at): the
dashboard reads one account's last 30 days and nothing else. Days are UTC days
(created_at / 86400000, integer division on both stores)."""
from __future__ import annotations

from sqlalchemy import func, select
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

