"""Balance changes: holds, settlements, releases, credits, and the books' self-check.

Money moves only in batches (see writer.py), and a batch first LOCKS what it will
touch: the accounts' rows, then the spend-limited keys' rows, then the usage rows
it settles (PostgreSQL: SELECT ... ORDER BY id FOR UPDATE; SQLite: the database
write lock of BEGIN IMMEDIATE). Under those locks the operations are decided in
Python on the values read, and the results written back in a few statements:
nobody else can spend the same balance meanwhile, in this process or any other,
so no combination of concurrent requests can spend more than an account holds.
A batch costs about seven statements whatever its size, instead of a few per
operation. Every change of a balance is appended to the ledger in the same
transaction. Entries per request:

    hold    -H   when the call is admitted (H = worst-case cost)
    release +H   when the call ends, whatever its outcome
    charge  -C   when it succeeded (C = the call's cost, C may exceed H only by what
                 the balance could still pay; the rest is recorded as uncollected)
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Union

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.store import schema

A = schema.accounts
U = schema.usage
L = schema.ledger


def now_ms() -> int:
    return int(time.time() * 1000)


# --- what may be written ------------------------------------------------------------------
# Nothing a call reports is trusted to fit the columns: a value that does not fit would fail
# the settlement's transaction and leave the hold open. Every count and string is made to fit
# here, just before it is written (the adapters validate too).

INT_MAX = 2**31 - 1  # INTEGER columns (token counts)
BIGINT_MAX = 2**63 - 1  # BIGINT columns (nano-USD)
CODE_MAX = 64  # usage.error_code
_CODE = re.compile(r"[a-z0-9_.\-]+")


def count(value: Any) -> int:
    """A token count as stored: an int in [0, INT_MAX]; anything else is 0."""
    if type(value) is not int or value < 0:
        return 0
    return value if value <= INT_MAX else INT_MAX


def nano(value: Any) -> int:
    """An amount as stored: an int in [0, BIGINT_MAX]; anything else is 0."""
    if type(value) is not int or value < 0:
        return 0
    return value if value <= BIGINT_MAX else BIGINT_MAX


def error_code(value: Any) -> str | None:
    """An error code as stored: lower-case letters, digits and `_.-`, at most CODE_MAX long;
    anything else (a number, a list, other characters) is "upstream_error"."""
    if value is None:
        return None
    if type(value) is not str or not _CODE.fullmatch(value):
        return "upstream_error"
    return value[:CODE_MAX]


# --- the operations -------------------------------------------------------------------


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


@dataclass(slots=True)
class Settlement:
    """Charge a finished call; its result is the amount charged, or None if the hold was
    already released (swept as abandoned): then nothing moves, nothing is charged twice."""
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


@dataclass(slots=True)
class Release:
    """Give a failed call's hold back in full; the result is False if it was already closed."""
    request_id: str
    account_id: int
    key_id: int
    key_limited: bool
    hold_nano: int
    status: str = "failed"  # or "expired" (swept) or "cancelled"
    error_code: str | None = None


@dataclass(slots=True)
class Credit:
    """Add money; the result is the new balance, or None if the account does not exist."""
    account_id: int
    amount_nano: int
    note: str | None = None
    kind: str = "credit"


Op = Union[HoldRequest, Settlement, Release, Credit]


# --- the statements --------------------------------------------------------------------

SET_BALANCE = "UPDATE accounts SET balance_nano = ? WHERE id = ?"
SET_SPENT = "UPDATE api_keys SET spent_nano = ? WHERE id = ?"
SETTLE_USAGE = ("UPDATE usage SET status = ?, prompt_tokens = ?, completion_tokens = ?, cached_tokens = ?, "
                "cache_write_tokens = ?, cost_nano = ?, uncollected_nano = ?, settled_at = ? WHERE request_id = ?")
RELEASE_USAGE = "UPDATE usage SET status = ?, error_code = ?, cost_nano = 0, settled_at = ? WHERE request_id = ?"
INSERT_LEDGER = ("INSERT INTO ledger (account_id, kind, amount_nano, request_id, note, created_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)")
INSERT_USAGE = ('INSERT INTO usage (request_id, account_id, key_id, model, "group", channel_id, stream, status, '
                "hold_nano, created_at, instance_id, prompt_tokens, completion_tokens, cached_tokens, "
                "cache_write_tokens, cost_nano, uncollected_nano) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0)")
# The store's clock in epoch milliseconds: leases are written and judged by it, so instances
# on machines whose clocks disagree still agree on which lease ran out.
DB_NOW = {"postgresql": "(extract(epoch from clock_timestamp()) * 1000)::bigint",
          "sqlite": "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"}

# Holds nobody will close: pending rows (the partial index ix_usage_pending holds only those,
# i.e. the calls in flight) whose instance's lease ran out or is gone, or, whatever their
# instance, older than the age limit. Parameters: the age cut-off (ms), the sweeping instance.
# A row without instance (written before migration 0003, or by an older release still
# running) is judged by age only, and an instance never judges its own lease.
ABANDONED = """
SELECT u.request_id, u.account_id, u.key_id, u.hold_nano, k.spend_limit_nano
FROM usage u LEFT JOIN instances i ON i.id = u.instance_id LEFT JOIN api_keys k ON k.id = u.key_id
WHERE u.status = 'pending' AND (u.created_at < ? OR (u.instance_id IS NOT NULL AND u.instance_id <> ?
      AND (i.id IS NULL OR i.expires_at < {now})))
"""


def abandoned_sql(postgres: bool) -> str:
    sql = ABANDONED.replace("{now}", DB_NOW["postgresql" if postgres else "sqlite"])
    return _numbered(sql) if postgres else sql


def abandoned_releases(rows) -> list[Release]:
    """The releases for ABANDONED's rows: nothing charged, the whole hold given back."""
    return [Release(rid, acc, kid, limit is not None, held, status="expired", error_code="abandoned")
            for rid, acc, kid, held, limit in rows]


def _numbered(sql: str) -> str:
    """qmark placeholders to PostgreSQL's $1, $2, ... (asyncpg)."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))


# PostgreSQL writes a whole batch in ONE statement: each part unnests its column arrays
# (empty arrays write nothing). No two parts touch the same row: a request is inserted,
# settled or released at most once per batch. The `= ANY(...)` beside each join lets the
# prepared (generic) plan find rows by index: joined to unnest() alone it may scan the
# whole table, which grows by a row per request.
PG_WRITE = """
WITH acc AS (
  UPDATE accounts a SET balance_nano = v.b FROM unnest($1::int[], $2::bigint[]) AS v(id, b)
  WHERE a.id = v.id AND a.id = ANY($1::int[])),
keys AS (
  UPDATE api_keys k SET spent_nano = v.s FROM unnest($3::int[], $4::bigint[]) AS v(id, s)
  WHERE k.id = v.id AND k.id = ANY($3::int[])),
new_usage AS (
  INSERT INTO usage (request_id, account_id, key_id, model, "group", channel_id, stream, status, hold_nano,
                     created_at, instance_id, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
                     cost_nano, uncollected_nano)
  SELECT r, a, k, m, g, c, s, st, h, t, $34::text, 0, 0, 0, 0, 0, 0
  FROM unnest($5::text[], $6::int[], $7::int[], $8::text[], $9::text[], $10::int[], $11::bool[], $12::text[],
              $13::bigint[], $14::bigint[]) AS v(r, a, k, m, g, c, s, st, h, t)),
settled AS (
  UPDATE usage u SET status = v.st, prompt_tokens = v.p, completion_tokens = v.c, cached_tokens = v.ca,
                     cache_write_tokens = v.cw, cost_nano = v.cost, uncollected_nano = v.un, settled_at = v.t
  FROM unnest($15::text[], $16::int[], $17::int[], $18::int[], $19::int[], $20::bigint[], $21::bigint[],
              $22::bigint[], $23::text[]) AS v(st, p, c, ca, cw, cost, un, t, r)
  WHERE u.request_id = v.r AND u.request_id = ANY($23::text[])),
released AS (
  UPDATE usage u SET status = v.st, error_code = v.e, cost_nano = 0, settled_at = v.t
  FROM unnest($24::text[], $25::text[], $26::bigint[], $27::text[]) AS v(st, e, t, r)
  WHERE u.request_id = v.r AND u.request_id = ANY($27::text[])),
entries AS (
  INSERT INTO ledger (account_id, kind, amount_nano, request_id, note, created_at)
  SELECT * FROM unnest($28::int[], $29::text[], $30::bigint[], $31::text[], $32::text[], $33::bigint[]))
SELECT 1
"""
_PG_WIDTHS = (2, 2, 10, 9, 4, 6)  # columns of each part above, in order; $34 is the batch's instance id


def _columns(rows: list[tuple], width: int) -> list[list]:
    return [list(c) for c in zip(*rows)] if rows else [[] for _ in range(width)]


class Tx:
    """The state of one money batch, apart from any I/O.

    `locks()` names the rows the batch needs, read and locked first (see the module
    docstring); `absorb()` takes them in; the operations then decide in memory
    (`apply_batch`); `writes()` says what to write back. `run_sync` and `run_asyncpg`
    below do the I/O for a DB-API cursor and for an asyncpg connection. The caller
    owns the transaction."""

    __slots__ = ("postgres", "instance_id", "balances", "spent", "pending", "_dirty_accounts", "_dirty_keys",
                 "_ledger", "_usage", "_settled", "_released")

    def __init__(self, postgres: bool, instance_id: str | None = None) -> None:
        self.postgres = postgres
        self.instance_id = instance_id  # recorded on every hold: whose lease keeps it open
        self.balances: dict[int, int] = {}
        self.spent: dict[int, int] = {}
        self.pending: set[str] = set()
        self._dirty_accounts: set[int] = set()
        self._dirty_keys: set[int] = set()
        self._ledger: list[tuple] = []
        self._usage: list[tuple] = []
        self._settled: list[tuple] = []
        self._released: list[tuple] = []

    def _select(self, columns: str, table: str, key: str, values: list, extra: str = "") -> tuple[str, tuple]:
        """Rows whose `key` is in `values`; locked, in key order, on PostgreSQL."""
        if self.postgres:
            cast = "text" if key == "request_id" else "int"
            return (f"SELECT {columns} FROM {table} WHERE {key} = ANY($1::{cast}[]){extra} "
                    f"ORDER BY {key} FOR UPDATE", (values,))
        return f"SELECT {columns} FROM {table} WHERE {key} IN ({','.join('?' * len(values))}){extra}", tuple(values)

    def locks(self, ops: list[Op]) -> list[tuple[str, str, tuple]]:
        """(kind, sql, params) to run in this order: accounts, then keys, then usage rows."""
        out = [("accounts", *self._select("id, balance_nano", "accounts", "id",
                                          sorted({op.account_id for op in ops})))]
        keys = sorted({op.key_id for op in ops if (op.key_spend_limit_nano is not None if isinstance(op, HoldRequest)
                                                   else getattr(op, "key_limited", False))})
        if keys:
            out.append(("keys", *self._select("id, spent_nano", "api_keys", "id", keys)))
        closing = sorted({op.request_id for op in ops if isinstance(op, (Settlement, Release))})
        if closing:
            out.append(("usage", *self._select("request_id", "usage", "request_id", closing,
                                               " AND status = 'pending'")))
        return out

    def absorb(self, kind: str, rows) -> None:
        if kind == "accounts":
            self.balances = {r[0]: r[1] for r in rows}
        elif kind == "keys":
            self.spent = {r[0]: r[1] for r in rows}
        else:
            self.pending = {r[0] for r in rows}

    def move(self, account_id: int, delta: int) -> None:
        self.balances[account_id] += delta
        self._dirty_accounts.add(account_id)

    def spend(self, key_id: int, delta: int) -> None:
        self.spent[key_id] += delta
        self._dirty_keys.add(key_id)

    def ledger(self, account_id: int, kind: str, amount: int, request_id: str | None, note: str | None,
               ts: int) -> None:
        self._ledger.append((account_id, kind, amount, request_id, note, ts))

    def _parts(self) -> list[tuple[str, list[tuple]]]:
        return [(SET_BALANCE, [(self.balances[a], a) for a in sorted(self._dirty_accounts)]),
                (SET_SPENT, [(self.spent[k], k) for k in sorted(self._dirty_keys)]),
                (INSERT_USAGE, self._usage), (SETTLE_USAGE, self._settled), (RELEASE_USAGE, self._released),
                (INSERT_LEDGER, self._ledger)]

    def writes(self) -> list[tuple[str, list[tuple]]]:
        """(sql, rows) for executemany, SQLite placeholders."""
        return [(sql, rows) for sql, rows in self._parts() if rows]

    def pg_write_args(self) -> list[list]:
        """The arrays for PG_WRITE: balances and spent are (value, id), the statement wants (id, value)."""
        parts = self._parts()
        args: list = []
        for i, ((_, rows), width) in enumerate(zip(parts, _PG_WIDTHS)):
            cols = _columns(rows, width)
            if i == 2 and rows:
                cols = cols[:width]  # the instance id goes once, as $34
            args += cols[::-1] if i < 2 else cols
        args.append(self.instance_id)
        return args


def _hold(tx: Tx, req: HoldRequest, ts: int) -> HoldResult:
    balance = tx.balances.get(req.account_id)
    if balance is None:
        return HoldResult(False, refusal="no_account")
    available, refusal = balance, "insufficient_balance"
    limited = req.key_spend_limit_nano is not None and req.key_id in tx.spent
    if limited:
        key_left = max(0, req.key_spend_limit_nano - tx.spent[req.key_id])
        if key_left < available:
            available, refusal = key_left, "key_spend_limit_reached"
    amount = req.worst_nano
    if amount > available:
        # The worst case does not fit: a smaller hold (a lower output cap) may.
        amount = req.resize(available)
        if amount is None or amount > available:
            return HoldResult(False, balance_after=balance, refusal=refusal)
    tx.move(req.account_id, -amount)
    if limited:
        tx.spend(req.key_id, amount)
    tx.ledger(req.account_id, "hold", -amount, req.request_id, None, ts)
    tx._usage.append((req.request_id, req.account_id, req.key_id, req.model, req.group, req.channel_id, req.stream,
                      "pending", amount, ts, tx.instance_id))
    return HoldResult(True, amount=amount, balance_after=tx.balances[req.account_id])


def _settle(tx: Tx, s: Settlement, ts: int) -> int | None:
    if s.request_id not in tx.pending:
        return None
    tx.pending.discard(s.request_id)
    cost = s.cost_nano if type(s.cost_nano) is int and s.cost_nano > 0 else 0  # exact, maybe beyond BIGINT
    charged = cost
    extra = cost - s.hold_nano
    if extra > 0:
        # The upstream reported more than the hold covered: collect what the balance allows
        # (so the charge never exceeds hold + balance, which fits the balance's column).
        charged = s.hold_nano + min(extra, max(0, tx.balances[s.account_id]))
    tx.move(s.account_id, s.hold_nano - charged)
    if s.key_limited and s.key_id in tx.spent:
        tx.spend(s.key_id, charged - s.hold_nano)
    tx._settled.append((s.status, count(s.prompt_tokens), count(s.completion_tokens), count(s.cached_tokens),
                        count(s.cache_write_tokens), charged, nano(cost - charged), ts, s.request_id))
    tx.ledger(s.account_id, "release", s.hold_nano, s.request_id, None, ts)
    tx.ledger(s.account_id, "charge", -charged, s.request_id, None, ts)
    return charged


def _release(tx: Tx, r: Release, ts: int) -> bool:
    if r.request_id not in tx.pending:
        return False
    tx.pending.discard(r.request_id)
    tx.move(r.account_id, r.hold_nano)
    if r.key_limited and r.key_id in tx.spent:
        tx.spend(r.key_id, -r.hold_nano)
    tx._released.append((r.status, error_code(r.error_code), ts, r.request_id))
    tx.ledger(r.account_id, "release", r.hold_nano, r.request_id, None, ts)
    return True


def _credit(tx: Tx, c: Credit, ts: int) -> int | None:
    if c.account_id not in tx.balances:
        return None
    tx.move(c.account_id, c.amount_nano)
    tx.ledger(c.account_id, c.kind, c.amount_nano, None, c.note, ts)
    return tx.balances[c.account_id]


_APPLY = {HoldRequest: _hold, Settlement: _settle, Release: _release, Credit: _credit}


def decide(tx: Tx, ops: list[Op]) -> list[Any]:
    """Every operation in order, on the locked values. Results are in `ops` order."""
    ts = now_ms()
    return [_APPLY[type(op)](tx, op, ts) for op in ops]


def run_sync(cursor: Any, postgres: bool, ops: list[Op], instance_id: str | None = None) -> list[Any]:
    """A batch on a DB-API cursor, inside the caller's transaction."""
    tx = Tx(postgres, instance_id)
    for kind, sql, params in tx.locks(ops):
        cursor.execute(sql, params)
        tx.absorb(kind, cursor.fetchall())
    results = decide(tx, ops)
    for sql, rows in tx.writes():
        cursor.executemany(_numbered(sql) if postgres else sql, rows)
    return results


async def run_asyncpg(conn: Any, ops: list[Op], instance_id: str | None = None) -> list[Any]:
    """A batch on an asyncpg connection, inside the caller's transaction: the locks,
    then one statement for all writes."""
    tx = Tx(True, instance_id)
    for kind, sql, params in tx.locks(ops):
        tx.absorb(kind, await conn.fetch(sql, *params))
    results = decide(tx, ops)
    await conn.execute(PG_WRITE, *tx.pg_write_args())
    return results


def apply_on(conn: Connection, ops: list[Op]) -> list[Any]:
    """A batch on a SQLAlchemy connection (under `run_sync` for async engines)."""
    return run_sync(conn.connection.dbapi_connection.cursor(), conn.dialect.name == "postgresql", ops)


async def run(conn: AsyncConnection, op: Op) -> Any:
    """One operation from async code, in the caller's transaction: `await run(conn, Credit(...))`."""
    return (await conn.run_sync(apply_on, [op]))[0]


# The sign each kind of entry must have: a hold takes, a release gives back, a charge takes.
_SIGN = {"hold": -1, "release": 1, "charge": -1, "credit": 1}


async def verify(conn: AsyncConnection) -> list[str]:
    """Every way the books could be wrong, as readable lines; empty when they balance.

    Balances against their entries; every entry's sign against its kind; every usage record
    against its own entries: one hold of -hold, a release of +hold once the call is closed
    (none while pending), a charge of -cost; no negative cost, count or uncollected amount."""
    problems: list[str] = []
    sums = dict((await conn.execute(
        select(L.c.account_id, func.coalesce(func.sum(L.c.amount_nano), 0)).group_by(L.c.account_id))).all())
    for acc_id, balance in (await conn.execute(select(A.c.id, A.c.balance_nano))).all():
        total = int(sums.get(acc_id, 0))
        if balance != total:
            problems.append(f"account {acc_id}: balance {balance} != ledger sum {total} (nano-USD)")
        if balance < 0:
            problems.append(f"account {acc_id}: negative balance {balance}")
    wrong_sign = (L.c.kind.in_(["hold", "charge"]) & (L.c.amount_nano > 0)) | (
        L.c.kind.in_(["release", "credit"]) & (L.c.amount_nano < 0))
    for e in (await conn.execute(select(L.c.id, L.c.kind, L.c.amount_nano, L.c.request_id).where(wrong_sign)
                                 .order_by(L.c.id))).all():
        problems.append(f"ledger entry {e.id} ({e.kind}, request {e.request_id}): amount {e.amount_nano} has the "
                        f"wrong sign for a {e.kind}")
    # request -> kind -> (sum, count)
    entries: dict[str, dict[str, tuple[int, int]]] = {}
    for rid, kind, total, n in (await conn.execute(
            select(L.c.request_id, L.c.kind, func.sum(L.c.amount_nano), func.count())
            .where(L.c.request_id.is_not(None)).group_by(L.c.request_id, L.c.kind))).all():
        entries.setdefault(rid, {})[kind] = (int(total), n)
    columns = (U.c.request_id, U.c.status, U.c.hold_nano, U.c.cost_nano, U.c.uncollected_nano, U.c.prompt_tokens,
               U.c.completion_tokens, U.c.cached_tokens, U.c.cache_write_tokens)
    for r in (await conn.execute(select(*columns))).all():
        problems += _usage_problems(r, entries.pop(r.request_id, {}))
    for rid in sorted(entries):
        problems.append(f"ledger entries for request {rid} without a usage record")
    return problems


def _usage_problems(r: Any, kinds: dict[str, tuple[int, int]]) -> list[str]:
    """What is wrong with one usage record and its ledger entries (request -> kind -> (sum, count))."""
    out: list[str] = []
    tag = f"usage {r.request_id} ({r.status})"
    moved = -sum(total for total, _ in kinds.values())
    expected = r.hold_nano if r.status == "pending" else r.cost_nano
    if moved != expected:
        out.append(f"{tag}: cost {expected} != ledger {moved}")
    for name in ("hold_nano", "cost_nano", "uncollected_nano", "prompt_tokens", "completion_tokens",
                 "cached_tokens", "cache_write_tokens"):
        if getattr(r, name) < 0:
            out.append(f"{tag}: negative {name} {getattr(r, name)}")
    hold, holds = kinds.get("hold", (0, 0))
    release, releases = kinds.get("release", (0, 0))
    charge, charges = kinds.get("charge", (0, 0))
    if holds != 1 or hold != -r.hold_nano:
        out.append(f"{tag}: {holds} hold entr{'y' if holds == 1 else 'ies'} of {hold} for a hold of {r.hold_nano}")
    want_releases = 0 if r.status == "pending" else 1
    if releases != want_releases or release != want_releases * r.hold_nano:
        out.append(f"{tag}: {releases} release entr{'y' if releases == 1 else 'ies'} of {release} for a hold of "
                   f"{r.hold_nano} ({'still pending' if r.status == 'pending' else 'closed'})")
    if charges > 1 or charge != -r.cost_nano:
        out.append(f"{tag}: charge entries of {charge} for a cost of {r.cost_nano}")
    other = sorted(set(kinds) - {"hold", "release", "charge"})
    if other:
        out.append(f"{tag}: unexpected ledger entries of kind {', '.join(other)}")
    return out
