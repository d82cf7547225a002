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
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.store import schema

A = schema.accounts
K = schema.api_keys
U = schema.usage
L = schema.ledger


def now_ms() -> int:
    return int(time.time() * 1000)


# The statements of the hot path, as plain SQL: written once, no query building per call.
TAKE = "UPDATE accounts SET balance_nano = balance_nano - ? WHERE id = ? AND balance_nano >= ? RETURNING balance_nano"
ADD = "UPDATE accounts SET balance_nano = balance_nano + ? WHERE id = ?"
ADD_RETURNING = ADD + " RETURNING balance_nano"
BALANCE = "SELECT balance_nano FROM accounts WHERE id = ?"
BALANCE_FOR_UPDATE = BALANCE + " FOR UPDATE"
KEY_TAKE = "UPDATE api_keys SET spent_nano = spent_nano + ? WHERE id = ? AND spent_nano + ? <= ? RETURNING id"
KEY_ADD = "UPDATE api_keys SET spent_nano = spent_nano + ? WHERE id = ?"
KEY_SPENT = "SELECT spent_nano FROM api_keys WHERE id = ?"
CLAIM_SETTLE = ("UPDATE usage SET status = ?, prompt_tokens = ?, completion_tokens = ?, cached_tokens = ?, "
                "cache_write_tokens = ?, cost_nano = ?, settled_at = ? WHERE request_id = ? AND status = 'pending' "
                "RETURNING id")
CLAIM_RELEASE = ("UPDATE usage SET status = ?, error_code = ?, cost_nano = 0, settled_at = ? "
                 "WHERE request_id = ? AND status = 'pending' RETURNING id")
SET_UNCOLLECTED = "UPDATE usage SET cost_nano = ?, uncollected_nano = ? WHERE id = ?"
ABANDONED = ("SELECT u.request_id, u.account_id, u.key_id, u.hold_nano, k.spend_limit_nano FROM usage u "
             "LEFT JOIN api_keys k ON k.id = u.key_id WHERE u.status = 'pending' AND u.created_at < ?")
INSERT_LEDGER = ("INSERT INTO ledger (account_id, kind, amount_nano, request_id, note, created_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)")
INSERT_USAGE = ('INSERT INTO usage (request_id, account_id, key_id, model, "group", channel_id, stream, status, '
                "hold_nano, created_at, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, "
                "cost_nano, uncollected_nano) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0)")


def _numbered(sql: str) -> str:
    """qmark placeholders to PostgreSQL's $1, $2, ... (asyncpg)."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))


class Tx:
    """One money transaction on a synchronous connection (a worker thread's for SQLite,
    `run_sync`'s for PostgreSQL). Statements go straight to the DB-API cursor: these few
    fixed statements need no SQL building. Ledger and usage rows are collected and
    inserted with one executemany each by `flush()`, which runs before commit."""

    __slots__ = ("cur", "postgres", "_ledger", "_usage")

    def __init__(self, cursor: Any, postgres: bool) -> None:
        self.cur = cursor  # a DB-API cursor
        self.postgres = postgres
        self._ledger: list[tuple] = []
        self._usage: list[tuple] = []

    def _sql(self, sql: str) -> str:
        return _PG.setdefault(sql, _numbered(sql)) if self.postgres else sql

    def scalar(self, sql: str, *params: Any) -> Any:
        self.cur.execute(self._sql(sql), params)
        rows = self.cur.fetchall()  # to the end, so SQLite's statement is done before commit
        return rows[0][0] if rows else None

    def run(self, sql: str, *params: Any) -> None:
        self.cur.execute(self._sql(sql), params)

    def all(self, sql: str, *params: Any) -> list[tuple]:
        self.cur.execute(self._sql(sql), params)
        return [tuple(r) for r in self.cur.fetchall()]

    def ledger(self, account_id: int, kind: str, amount: int, request_id: str | None, note: str | None,
               ts: int) -> None:
        self._ledger.append((account_id, kind, amount, request_id, note, ts))

    def usage(self, row: tuple) -> None:
        self._usage.append(row)

    def flush(self) -> None:
        if self._usage:
            self.cur.executemany(self._sql(INSERT_USAGE), self._usage)
            self._usage = []
        if self._ledger:
            self.cur.executemany(self._sql(INSERT_LEDGER), self._ledger)
            self._ledger = []


_PG: dict[str, str] = {}


def apply(conn: Connection, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one money operation in the given transaction."""
    tx = Tx(conn.connection.dbapi_connection.cursor(), conn.dialect.name == "postgresql")
    result = fn(tx, *args)
    tx.flush()
    return result


async def run(conn: AsyncConnection, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one money operation from async code, e.g. `await run(conn, credit, account_id, amount, note)`."""
    return await conn.run_sync(apply, fn, *args)


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


def _take(tx: Tx, req: HoldRequest, amount: int) -> int | None:
    """Conditionally take `amount` from the account (and the key's cap). New balance, or None."""
    new_balance = tx.scalar(TAKE, amount, req.account_id, amount)
    if new_balance is None:
        return None
    if req.key_spend_limit_nano is not None:
        if tx.scalar(KEY_TAKE, amount, req.key_id, amount, req.key_spend_limit_nano) is None:
            tx.run(ADD, amount, req.account_id)  # undo the account side; nothing is in the ledger yet
            return None
    return new_balance


def hold(tx: Tx, req: HoldRequest) -> HoldResult:
    amount = req.worst_nano
    new_balance = _take(tx, req, amount)
    attempts = 0
    while new_balance is None:
        # Slow path: the worst case does not fit. Read what is left only to size a smaller
        # hold; the conditional update below still guards against a concurrent spender.
        attempts += 1
        balance = tx.scalar(BALANCE_FOR_UPDATE if tx.postgres else BALANCE, req.account_id)
        if balance is None:
            return HoldResult(False, refusal="no_account")
        available, refusal = balance, "insufficient_balance"
        if req.key_spend_limit_nano is not None:
            spent = tx.scalar(KEY_SPENT, req.key_id) or 0
            key_left = max(0, req.key_spend_limit_nano - spent)
            if key_left < available:
                available, refusal = key_left, "key_spend_limit_reached"
        amount = req.resize(available)
        if amount is None or attempts > 3:
            return HoldResult(False, balance_after=balance, refusal=refusal)
        new_balance = _take(tx, req, amount)
    ts = now_ms()
    tx.ledger(req.account_id, "hold", -amount, req.request_id, None, ts)
    tx.usage((req.request_id, req.account_id, req.key_id, req.model, req.group, req.channel_id, req.stream,
              "pending", amount, ts))
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


def settle(tx: Tx, s: Settlement) -> int | None:
    """Charge a finished call. Returns the amount charged, or None if the hold was already
    released (swept as abandoned): then nothing moves, so nothing is charged twice."""
    ts = now_ms()
    claimed = tx.scalar(CLAIM_SETTLE, s.status, s.prompt_tokens, s.completion_tokens, s.cached_tokens,
                        s.cache_write_tokens, s.cost_nano, ts, s.request_id)
    if claimed is None:
        return None
    charged = s.cost_nano
    extra = s.cost_nano - s.hold_nano
    if extra > 0:
        # The upstream reported more than the hold covered: collect what the balance allows.
        if tx.scalar(TAKE, extra, s.account_id, extra) is None:
            balance = tx.scalar(BALANCE_FOR_UPDATE if tx.postgres else BALANCE, s.account_id) or 0
            collectable = max(0, balance)
            tx.run(ADD, -collectable, s.account_id)
            charged = s.hold_nano + collectable
            tx.run(SET_UNCOLLECTED, charged, s.cost_nano - charged, claimed)
    else:
        tx.run(ADD, s.hold_nano - charged, s.account_id)
    if s.key_limited:
        tx.run(KEY_ADD, charged - s.hold_nano, s.key_id)
    tx.ledger(s.account_id, "release", s.hold_nano, s.request_id, None, ts)
    tx.ledger(s.account_id, "charge", -charged, s.request_id, None, ts)
    return charged


def release(tx: Tx, request_id: str, account_id: int, key_id: int, key_limited: bool, hold_nano: int,
            status: str = "failed", error_code: str | None = None) -> bool:
    """Give a failed call's hold back in full. False if it was already settled or released."""
    ts = now_ms()
    if tx.scalar(CLAIM_RELEASE, status, error_code, ts, request_id) is None:
        return False
    tx.run(ADD, hold_nano, account_id)
    if key_limited:
        tx.run(KEY_ADD, -hold_nano, key_id)
    tx.ledger(account_id, "release", hold_nano, request_id, None, ts)
    return True


def sweep(tx: Tx, older_than_ms: int) -> int:
    """Release holds of calls pending since before `older_than_ms` (their process died)."""
    n = 0
    for request_id, account_id, key_id, hold_nano, limit in tx.all(ABANDONED, older_than_ms):
        n += release(tx, request_id, account_id, key_id, limit is not None, hold_nano, status="expired",
                     error_code="abandoned")
    return n


def credit(tx: Tx, account_id: int, amount_nano: int, note: str | None, kind: str = "credit") -> int | None:
    """Add money (a top-up). Returns the new balance, or None if the account does not exist."""
    new_balance = tx.scalar(ADD_RETURNING, amount_nano, account_id)
    if new_balance is None:
        return None
    tx.ledger(account_id, kind, amount_nano, None, note, now_ms())
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
