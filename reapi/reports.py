"""An account's usage and billing data, read for its owner: usage rows (a page, or all of them as
CSV), daily request and spend series (also by model), spend totals, the ledger statement of both
wallets with running balances, and its top-ups.

A floor (wings such as the console call it). Reads only; every query is bounded and served by an
index: usage by ix_usage_account_created (account_id, created_at; SQLite keeps the id in it, so
the keyset order created_at, id is the index order), the ledger by ix_ledger_account (account_id,
id), top-ups by ix_topups_account. No index was added to the hot path's tables for these pages.

Times are milliseconds since the epoch, days are UTC days. Money stays integer nano-USD here;
the CSV writes it as decimal strings (billing.money.format_usd).

May import: store, billing.money. Never a wing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from sqlalchemy import func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reapi.billing.money import format_usd
from reapi.store import schema

U, K, L, W, T = schema.usage, schema.api_keys, schema.ledger, schema.wallets, schema.topups
DAY_MS = 86_400_000
MAX_PAGE = 500
CSV_BATCH = 1000  # rows per read: each read is its own short transaction (SQLite's lock is the writer's)
_CURSOR = re.compile(r"^([0-9]{1,16})\.([0-9]{1,10})$")


@dataclass(frozen=True)
class UsageFilter:
    """Which usage rows: created in [since_ms, until_ms), of one model, of one key (None: any)."""
    since_ms: int | None = None
    until_ms: int | None = None
    model: str | None = None
    key_id: int | None = None


@dataclass
class UsagePage:
    rows: list[dict]
    next_cursor: str | None  # pass as `before` for the next (older) page; None on the last
    extra: dict = field(default_factory=dict)


def day_of(ms: int) -> int:
    """The UTC day number of a time (ms // DAY_MS)."""
    return ms // DAY_MS


def day_label(day: int) -> str:
    return datetime.fromtimestamp(day * DAY_MS / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def parse_cursor(text: str | None) -> tuple[int, int] | None:
    """"<created_at>.<id>" -> (created_at, id); anything else -> None (the first page)."""
    m = _CURSOR.match(text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _where(account_id: int, f: UsageFilter) -> list:
    cond = [U.c.account_id == account_id]
    if f.since_ms is not None:
        cond.append(U.c.created_at >= f.since_ms)
    if f.until_ms is not None:
        cond.append(U.c.created_at < f.until_ms)
    if f.model is not None:
        cond.append(U.c.model == f.model)
    if f.key_id is not None:
        cond.append(U.c.key_id == f.key_id)
    return cond


_COLUMNS = (U.c.id, U.c.created_at, U.c.request_id, U.c.key_id, U.c.model, U.c.status, U.c.prompt_tokens,
            U.c.completion_tokens, U.c.cached_tokens, U.c.cost_nano, U.c.error_code, U.c.stream,
            K.c.name.label("key_name"), K.c.key_prefix, K.c.key_last4)


def _usage_query(account_id: int, f: UsageFilter, before: tuple[int, int] | None, limit: int) -> Any:
    q = select(*_COLUMNS).select_from(U.outerjoin(K, K.c.id == U.c.key_id)).where(*_where(account_id, f))
    if before is not None:
        ts, rid = before
        # created_at <= ts bounds the index range; the OR only sorts out the ties at ts
        q = q.where(U.c.created_at <= ts, or_(U.c.created_at < ts, U.c.id < rid))
    return q.order_by(U.c.created_at.desc(), U.c.id.desc()).limit(limit)


async def usage_page(conn: AsyncConnection, account_id: int, f: UsageFilter = UsageFilter(), *, limit: int = 50,
                     before: str | None = None) -> UsagePage:
    """One page of the account's usage rows, newest first (keyset: no OFFSET, any page as fast as
    the first). Each row: id, created_at, request_id, key_id, key_name, key_prefix, key_last4, model, status,
    prompt/completion/cached tokens, cost_nano, error_code, stream."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = [dict(r) for r in (await conn.execute(_usage_query(account_id, f, parse_cursor(before),
                                                               limit + 1))).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = f"{rows[-1]['created_at']}.{rows[-1]['id']}" if more and rows else None
    return UsagePage(rows, cursor)


CSV_HEADER = ("time", "request_id", "key", "key_prefix", "model", "status", "prompt_tokens", "completion_tokens",
              "cached_tokens", "cost_usd", "error_code")


def _cell(v: object) -> str:
    """One CSV field: quoted when needed; text that a spreadsheet would run as a formula is defused."""
    s = "" if v is None else str(v)
    if s[:1] in ("=", "+", "-", "@", "\t", "\r"):
        s = "'" + s
    if any(c in s for c in ',"\r\n'):
        s = '"' + s.replace('"', '""') + '"'
    return s


def csv_line(values: tuple | list) -> bytes:
    return (",".join(_cell(v) for v in values) + "\r\n").encode()


def csv_row(r: dict) -> tuple:
    return (iso(r["created_at"]), r["request_id"], r["key_name"] or "", r["key_prefix"] or "", r["model"], r["status"],
            r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"], format_usd(r["cost_nano"]),
            r["error_code"] or "")


async def usage_csv(engine: AsyncEngine, account_id: int, f: UsageFilter = UsageFilter()) -> AsyncIterator[bytes]:
    """Every matching usage row as CSV (a header line, then one line per request, newest first),
    read in batches of CSV_BATCH rows, each batch in its own short transaction."""
    yield csv_line(CSV_HEADER)
    before: tuple[int, int] | None = None
    while True:
        async with engine.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(_usage_query(account_id, f, before, CSV_BATCH))).mappings()]
        if not rows:
            return
        yield b"".join(csv_line(csv_row(r)) for r in rows)
        if len(rows) < CSV_BATCH:
            return
        before = (rows[-1]["created_at"], rows[-1]["id"])


@dataclass(frozen=True)
class Day:
    day: int  # UTC day number
    requests: int
    spend_nano: int

    @property
    def label(self) -> str:
        return day_label(self.day)


def _day_column() -> Any:
    # integer division on both stores (created_at is BIGINT ms)
    return literal_column(f"usage.created_at / {DAY_MS}")


async def daily_series(conn: AsyncConnection, account_id: int, days: int, now_ms: int,
                       f: UsageFilter = UsageFilter()) -> list[Day]:
    """Requests and spend per UTC day for the last `days` days up to `now_ms`, oldest first, with a
    zero for each day without usage (filters as for usage_page, within that window)."""
    first = day_of(now_ms) - days + 1
    since = max(first * DAY_MS, f.since_ms or 0)
    window = UsageFilter(since, f.until_ms, f.model, f.key_id)
    d = _day_column()
    rows = await conn.execute(select(d.label("day"), func.count(), func.coalesce(func.sum(U.c.cost_nano), 0))
                              .where(*_where(account_id, window)).group_by(d))
    have = {int(day): (int(n), int(s)) for day, n, s in rows}
    return [Day(x, *have.get(x, (0, 0))) for x in range(first, first + days)]


async def daily_spend_by_model(conn: AsyncConnection, account_id: int, days: int, now_ms: int) -> dict:
    """Spend per UTC day and model over the last `days` days, for the dashboard's chart:
    {"days": [day numbers, oldest first], "labels": ["2026-12-01", ...],
     "models": {model: [spend_nano per day, aligned with days]}} (models by total spend, largest first)."""
    first = day_of(now_ms) - days + 1
    d = _day_column()
    rows = await conn.execute(select(d.label("day"), U.c.model, func.coalesce(func.sum(U.c.cost_nano), 0))
                              .where(U.c.account_id == account_id, U.c.created_at >= first * DAY_MS)
                              .group_by(d, U.c.model))
    series: dict[str, list[int]] = {}
    for day, model, spend in rows:
        i = int(day) - first
        if 0 <= i < days:
            series.setdefault(model, [0] * days)[i] += int(spend)
    ordered = dict(sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0])))
    day_list = list(range(first, first + days))
    return {"days": day_list, "labels": [day_label(x) for x in day_list], "models": ordered}


async def spend_summary(conn: AsyncConnection, account_id: int, now_ms: int) -> dict:
    """What /v1 calls cost: spend today (UTC), over the last 7 and 30 days (today included) in
    nano-USD, and the number of requests in the last 24 hours."""
    today = day_of(now_ms)
    since30 = (today - 29) * DAY_MS
    d = _day_column()
    spend_by_day = {int(day): int(s) for day, s in await conn.execute(
        select(d.label("day"), func.coalesce(func.sum(U.c.cost_nano), 0))
        .where(U.c.account_id == account_id, U.c.created_at >= since30).group_by(d))}
    requests = (await conn.execute(select(func.count()).select_from(U).where(
        U.c.account_id == account_id, U.c.created_at >= now_ms - DAY_MS, U.c.created_at <= now_ms))).scalar()
    return {"today_nano": spend_by_day.get(today, 0),
            "last_7_days_nano": sum(s for day, s in spend_by_day.items() if day > today - 7),
            "last_30_days_nano": sum(spend_by_day.values()),
            "requests_24h": int(requests or 0)}


async def models_used(conn: AsyncConnection, account_id: int, since_ms: int) -> list[str]:
    """The models the account called since `since_ms` (for a filter's choices)."""
    rows = await conn.execute(select(U.c.model).where(U.c.account_id == account_id, U.c.created_at >= since_ms)
                              .group_by(U.c.model).order_by(U.c.model))
    return [m for (m,) in rows]


@dataclass
class Statement:
    rows: list[dict]  # newest first; each with balance_after_nano (of its own wallet)
    balances: dict[str, int]  # now
    next_before_id: int | None


async def statement(engine: AsyncEngine, account_id: int, *, limit: int = 100, before_id: int | None = None,
                    wallet: str | None = None) -> Statement:
    """The ledger of the account's wallets (or one), newest first, each entry with the balance of its
    wallet right after it. Read in one snapshot (REPEATABLE READ on PostgreSQL), so the running
    balances agree with the entries. Each row: id, created_at, wallet, kind, amount_nano, ref, note,
    balance_after_nano."""
    limit = max(1, min(limit, MAX_PAGE))
    opts = {} if engine.dialect.name == "sqlite" else {"isolation_level": "REPEATABLE READ"}
    async with engine.connect() as conn:
        conn = await conn.execution_options(**opts) if opts else conn
        async with conn.begin():
            balances = {w: int(n) for w, n in await conn.execute(
                select(W.c.wallet, W.c.balance_nano).where(W.c.account_id == account_id))}
            q = select(L.c.id, L.c.created_at, L.c.wallet, L.c.kind, L.c.amount_nano, L.c.request_id.label("ref"),
                       L.c.note).where(L.c.account_id == account_id)
            if wallet is not None:
                q = q.where(L.c.wallet == wallet)
            if before_id is not None:
                q = q.where(L.c.id < before_id)
            rows = [dict(r) for r in (await conn.execute(q.order_by(L.c.id.desc()).limit(limit + 1))).mappings()]
            running = dict(balances)
            if rows:
                newer = await conn.execute(select(L.c.wallet, func.sum(L.c.amount_nano))
                                           .where(L.c.account_id == account_id, L.c.id > rows[0]["id"])
                                           .group_by(L.c.wallet))
                for w, total in newer:
                    running[w] = running.get(w, 0) - int(total)
    more = len(rows) > limit
    rows = rows[:limit]
    for r in rows:
        r["balance_after_nano"] = running.get(r["wallet"], 0)
        running[r["wallet"]] = running.get(r["wallet"], 0) - r["amount_nano"]
    return Statement(rows, balances, rows[-1]["id"] if more and rows else None)


async def topups(conn: AsyncConnection, account_id: int, limit: int = 50) -> list[dict]:
    """The account's top-ups, newest first (Stripe and codes), with their status."""
    rows = await conn.execute(select(T).where(T.c.account_id == account_id).order_by(T.c.id.desc()).limit(limit))
    return [dict(r) for r in rows.mappings()]
