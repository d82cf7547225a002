"""Balance changes: holds, settlements, releases, credits, operator debits, and the books' self-check.

An account has one balance per wallet ("chat", "tasks": the wallets table). Money moves
only in batches (see writer.py), and a batch first LOCKS what it will touch: the wallets'
rows, then the spend-limited keys' rows, then the usage rows and generic holds it closes
(PostgreSQL: SELECT ... ORDER BY key FOR UPDATE; SQLite: the database write lock of BEGIN
IMMEDIATE). Under those locks the operations are decided in Python on the values read, and
the results written back in a few statements: nobody else can spend the same balance
meanwhile, in this process or any other, so no combination of concurrent requests can spend
more than a wallet holds. A batch costs a few statements whatever its size. Every change of
a balance is appended to the ledger in the same transaction, with its wallet and its ref
(ledger.request_id: what the entry is for). Entries per hold:

    hold    -H   when the call (or task) is admitted (H = worst-case cost)
    release +H   when it ends, whatever its outcome
    charge  -C   when it succeeded (C = its cost; for a chat call C may exceed H only by what
                 the balance could still pay, the rest is recorded as uncollected)

Two kinds of hold record, each closed exactly once:
- chat calls (HoldRequest, Settlement, Release: always the "chat" wallet): the usage row,
  ref = the request id; nothing else is written per request (but a Responses call's
  stored-response row, which moves no money: Settlement.stored_response);
- generic holds (TaskHold, Capture, ReleaseHold: any wallet, e.g. the task gateway's
  "tasks"): a row of the holds table, ref = e.g. "task_...".
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

W = schema.wallets
U = schema.usage
L = schema.ledger
H = schema.holds
WALLETS = schema.WALLETS
CHAT = "chat"  # the wallet of /v1 calls (HoldRequest, Settlement, Release)


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
    # A Responses call's stored-response row (reapi.store.responses.row_values), written in this
    # batch so the call costs one commit, not two; it moves no money and is written even if the
    # hold was already closed (the response exists upstream either way).
    stored_response: tuple | None = None


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
    """Add money to one wallet; the result is its new balance, or None if the account (or that
    wallet) does not exist. `ref`: what it is for, e.g. a top-up's code or payment session id."""
    account_id: int
    amount_nano: int
    note: str | None = None
    kind: str = "credit"
    wallet: str = CHAT
    ref: str | None = None


@dataclass(slots=True)
class Debit:
    """Take `amount_nano` (> 0) from one wallet as an `adjustment` entry (an operator's correction),
    all or nothing and never below zero: the result is a HoldResult (refused "no_account",
    "invalid_amount" or "insufficient_balance" without moving anything)."""
    account_id: int
    amount_nano: int
    note: str | None = None
    wallet: str = CHAT


@dataclass(slots=True)
class TaskHold:
    """Hold `amount_nano` of `wallet` for `ref` (e.g. "task_..."), all or nothing: the result is a
    HoldResult, refused ("insufficient_balance", "no_account", "duplicate_ref") without
    overdrawing. Closed later by exactly one Capture or ReleaseHold of the same ref."""
    ref: str
    account_id: int
    wallet: str
    amount_nano: int


@dataclass(slots=True)
class Capture:
    """Charge up to the held amount for `ref` and release the rest; the result is the amount
    charged, or None if `ref` has no open hold (never taken, or already closed)."""
    ref: str
    amount_nano: int


@dataclass(slots=True)
class ReleaseHold:
    """Give the hold of `ref` back in full; the result is False if it has no open hold."""
    ref: str


Op = Union[HoldRequest, Settlement, Release, Credit, Debit, TaskHold, Capture, ReleaseHold]
GENERIC = (TaskHold, Capture, ReleaseHold)
_GENERIC_TYPES = frozenset(GENERIC)


# --- the statements --------------------------------------------------------------------

SET_BALANCE = "UPDATE wallets SET balance_nano = ? WHERE account_id = ? AND wallet = ?"
SET_SPENT = "UPDATE api_keys SET spent_nano = ? WHERE id = ?"
SETTLE_USAGE = ("UPDATE usage SET status = ?, prompt_tokens = ?, completion_tokens = ?, cached_tokens = ?, "
                "cache_write_tokens = ?, cost_nano = ?, uncollected_nano = ?, settled_at = ? WHERE request_id = ?")
RELEASE_USAGE = "UPDATE usage SET status = ?, error_code = ?, cost_nano = 0, settled_at = ? WHERE request_id = ?"
INSERT_HOLD = ("INSERT INTO holds (ref, account_id, wallet, amount_nano, created_at, captured_nano, status) "
               "VALUES (?, ?, ?, ?, ?, 0, 'pending')")
CLOSE_HOLD = "UPDATE holds SET status = ?, captured_nano = ?, closed_at = ? WHERE ref = ?"
INSERT_LEDGER = ("INSERT INTO ledger (account_id, kind, amount_nano, request_id, note, created_at, wallet) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)")
INSERT_RESPONSE = ("INSERT INTO responses (account_id, id, channel_id, key_id, model, request_id, background, "
                   "prompt_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
INSERT_USAGE = ('INSERT INTO usage (request_id, account_id, key_id, model, "group", channel_id, stream, status, '
                "hold_nano, created_at, instance_id, prompt_tokens, completion_tokens, cached_tokens, "
                "cache_write_tokens, cost_nano, uncollected_nano) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0)")
# The store's clock in epoch milliseconds: leases are written and judged by it, so instances
# on machines whose clocks disagree still agree on which lease ran out.
DB_NOW = {"postgresql": "(extract(epoch from clock_timestamp()) * 1000)::bigint",
          "sqlite": "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"}

# Chat holds nobody will close: pending usage rows (the partial index ix_usage_pending holds only
# those, i.e. the calls in flight) whose instance's lease ran out or is gone, or, whatever their
# instance, older than the age limit. Parameters: the age cut-off (ms), the sweeping instance.
# A row without instance (written before migration 0003, or by an older release still
# running) is judged by age only, and an instance never judges its own lease. Generic holds
# (the holds table: tasks run for as long as they run) are never swept: their owner closes them.
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
# (empty arrays write nothing). No two parts touch the same row: a request (or ref) is
# inserted, settled or released at most once per batch. The `= ANY(...)` beside each join lets
# the prepared (generic) plan find rows by index: joined to unnest() alone it may scan the
# whole table, which grows by a row per request.
PG_WRITE = """
WITH bal AS (
  UPDATE wallets w SET balance_nano = v.b FROM unnest($1::int[], $2::text[], $3::bigint[]) AS v(a, wl, b)
  WHERE w.account_id = v.a AND w.wallet = v.wl AND w.account_id = ANY($1::int[])),
keys AS (
  UPDATE api_keys k SET spent_nano = v.s FROM unnest($4::int[], $5::bigint[]) AS v(id, s)
  WHERE k.id = v.id AND k.id = ANY($4::int[])),
new_usage AS (
  INSERT INTO usage (request_id, account_id, key_id, model, "group", channel_id, stream, status, hold_nano,
                     created_at, instance_id, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens,
                     cost_nano, uncollected_nano)
  SELECT r, a, k, m, g, c, s, st, h, t, $54::text, 0, 0, 0, 0, 0, 0
  FROM unnest($6::text[], $7::int[], $8::int[], $9::text[], $10::text[], $11::int[], $12::bool[], $13::text[],
              $14::bigint[], $15::bigint[]) AS v(r, a, k, m, g, c, s, st, h, t)),
settled AS (
  UPDATE usage u SET status = v.st, prompt_tokens = v.p, completion_tokens = v.c, cached_tokens = v.ca,
                     cache_write_tokens = v.cw, cost_nano = v.cost, uncollected_nano = v.un, settled_at = v.t
  FROM unnest($16::text[], $17::int[], $18::int[], $19::int[], $20::int[], $21::bigint[], $22::bigint[],
              $23::bigint[], $24::text[]) AS v(st, p, c, ca, cw, cost, un, t, r)
  WHERE u.request_id = v.r AND u.request_id = ANY($24::text[])),
released AS (
  UPDATE usage u SET status = v.st, error_code = v.e, cost_nano = 0, settled_at = v.t
  FROM unnest($25::text[], $26::text[], $27::bigint[], $28::text[]) AS v(st, e, t, r)
  WHERE u.request_id = v.r AND u.request_id = ANY($28::text[])),
new_holds AS (
  INSERT INTO holds (ref, account_id, wallet, amount_nano, created_at, captured_nano, status)
  SELECT r, a, wl, h, t, 0, 'pending'
  FROM unnest($29::text[], $30::int[], $31::text[], $32::bigint[], $33::bigint[]) AS v(r, a, wl, h, t)),
closed_holds AS (
  UPDATE holds h SET status = v.st, captured_nano = v.c, closed_at = v.t
  FROM unnest($34::text[], $35::bigint[], $36::bigint[], $37::text[]) AS v(st, c, t, r)
  WHERE h.ref = v.r AND h.ref = ANY($37::text[])),
entries AS (
  INSERT INTO ledger (account_id, kind, amount_nano, request_id, note, created_at, wallet)
  SELECT * FROM unnest($38::int[], $39::text[], $40::bigint[], $41::text[], $42::text[], $43::bigint[],
                       $44::text[])),
new_responses AS (
  INSERT INTO responses (account_id, id, channel_id, key_id, model, request_id, background, prompt_tokens,
                         created_at)
  SELECT * FROM unnest($45::int[], $46::text[], $47::int[], $48::int[], $49::text[], $50::text[], $51::bool[],
                       $52::int[], $53::bigint[])
  ON CONFLICT DO NOTHING)
SELECT 1
"""
# Each part's columns, in the order of the parts above: balances (account, wallet, value), keys
# (id, value), then the SQLite rows' columns. $54 is the batch's instance id.
_PG_WIDTHS = (3, 2, 10, 9, 4, 5, 4, 7, 9)


def _columns(rows: list[tuple], width: int) -> list[list]:
    return [list(c) for c in zip(*rows)] if rows else [[] for _ in range(width)]


# The wallets a batch locks, PostgreSQL: exactly the (account, wallet) pairs it names.
PG_LOCK_WALLETS = ("SELECT w.account_id, w.wallet, w.balance_nano FROM wallets w "
                   "WHERE w.account_id = ANY($1::int[]) "
                   "AND (w.account_id, w.wallet) IN (SELECT * FROM unnest($1::int[], $2::text[])) "
                   "ORDER BY w.account_id, w.wallet FOR UPDATE")


class Tx:
    """The state of one money batch, apart from any I/O.

    `reads()` names what must be known before locking (the account and wallet of the generic
    holds the batch closes, which never change: read without a lock; nothing for chat calls),
    `locks()` the rows the batch needs, read and locked next (see the module docstring);
    `absorb()` takes both in; the operations then decide in memory (`decide`); `writes()`
    says what to write back. `run_sync` and `run_asyncpg` below do the I/O for a DB-API
    cursor and for an asyncpg connection. The caller owns the transaction."""

    __slots__ = ("postgres", "instance_id", "balances", "spent", "pending", "known_holds", "open_holds",
                 "_dirty_wallets", "_dirty_keys", "_ledger", "_usage", "_settled", "_released", "_new_holds",
                 "_closed_holds", "_responses")

    def __init__(self, postgres: bool, instance_id: str | None = None) -> None:
        self.postgres = postgres
        self.instance_id = instance_id  # recorded on every chat hold: whose lease keeps it open
        self.balances: dict[tuple[int, str], int] = {}  # (account, wallet) -> balance
        self.spent: dict[int, int] = {}
        self.pending: set[str] = set()  # chat requests with an open hold
        self.known_holds: dict[str, tuple[int, str, int]] = {}  # ref -> (account, wallet, amount), any status
        self.open_holds: set[str] = set()  # generic refs with an open hold (locked)
        self._dirty_wallets: set[tuple[int, str]] = set()
        self._dirty_keys: set[int] = set()
        self._ledger: list[tuple] = []
        self._usage: list[tuple] = []
        self._settled: list[tuple] = []
        self._released: list[tuple] = []
        self._new_holds: list[tuple] = []
        self._closed_holds: list[tuple] = []
        self._responses: list[tuple] = []

    def _select(self, columns: str, table: str, key: str, values: list, extra: str = "") -> tuple[str, tuple]:
        """Rows whose `key` is in `values`; locked, in key order, on PostgreSQL."""
        if self.postgres:
            cast = "int" if key == "id" else "text"
            return (f"SELECT {columns} FROM {table} WHERE {key} = ANY($1::{cast}[]){extra} "
                    f"ORDER BY {key} FOR UPDATE", (values,))
        return f"SELECT {columns} FROM {table} WHERE {key} IN ({','.join('?' * len(values))}){extra}", tuple(values)

    def reads(self, ops: list[Op]) -> list[tuple[str, str, tuple]]:
        """(kind, sql, params): the generic holds the batch names, unlocked (none for chat calls)."""
        refs = sorted({op.ref for op in ops if type(op) in _GENERIC_TYPES})
        if not refs:
            return []
        sql, params = self._select("ref, account_id, wallet, amount_nano", "holds", "ref", refs)
        return [("known_holds", sql.replace(" FOR UPDATE", ""), params)]

    def locks(self, ops: list[Op]) -> list[tuple[str, str, tuple]]:
        """(kind, sql, params) to run in this order: wallets, keys, usage rows, generic holds.
        One pass over the batch (it runs twice per chat call)."""
        pairs: set[tuple[int, str]] = set()
        keys: set[int] = set()
        closing: set[str] = set()
        refs: set[str] = set()
        known = self.known_holds
        for op in ops:
            t = type(op)
            if t is HoldRequest:
                pairs.add((op.account_id, CHAT))
                if op.key_spend_limit_nano is not None:
                    keys.add(op.key_id)
            elif t is Settlement or t is Release:
                pairs.add((op.account_id, CHAT))
                closing.add(op.request_id)
                if op.key_limited:
                    keys.add(op.key_id)
            elif t is Credit or t is Debit or t is TaskHold:
                pairs.add((op.account_id, op.wallet))
            else:  # Capture, ReleaseHold: the wallet of the hold they close, if it exists
                hold = known.get(op.ref)
                if hold is not None:
                    pairs.add(hold[:2])
                    refs.add(op.ref)
        ordered = sorted(pairs)
        if self.postgres:
            out = [("wallets", PG_LOCK_WALLETS, ([a for a, _ in ordered], [w for _, w in ordered]))]
        else:  # under the write lock already: every wallet of these accounts, none locked apart
            out = [("wallets", *self._select("account_id, wallet, balance_nano", "wallets", "account_id",
                                             sorted({a for a, _ in ordered})))]
        if keys:
            out.append(("keys", *self._select("id, spent_nano", "api_keys", "id", sorted(keys))))
        if closing:
            out.append(("usage", *self._select("request_id", "usage", "request_id", sorted(closing),
                                               " AND status = 'pending'")))
        if refs:
            out.append(("holds", *self._select("ref", "holds", "ref", sorted(refs), " AND status = 'pending'")))
        return out

    def absorb(self, kind: str, rows) -> None:
        if kind == "wallets":
            self.balances = {(r[0], r[1]): r[2] for r in rows}
        elif kind == "keys":
            self.spent = {r[0]: r[1] for r in rows}
        elif kind == "usage":
            self.pending = {r[0] for r in rows}
        elif kind == "known_holds":
            self.known_holds = {r[0]: (r[1], r[2], r[3]) for r in rows}
        else:
            self.open_holds = {r[0] for r in rows}

    def move(self, wallet: tuple[int, str], delta: int) -> None:
        self.balances[wallet] += delta
        self._dirty_wallets.add(wallet)

    def spend(self, key_id: int, delta: int) -> None:
        self.spent[key_id] += delta
        self._dirty_keys.add(key_id)

    def ledger(self, wallet: tuple[int, str], kind: str, amount: int, ref: str | None, note: str | None,
               ts: int) -> None:
        self._ledger.append((wallet[0], kind, amount, ref, note, ts, wallet[1]))

    def _parts(self) -> list[tuple[str, list[tuple]]]:
        return [(SET_BALANCE, [(self.balances[w], *w) for w in sorted(self._dirty_wallets)]),
                (SET_SPENT, [(self.spent[k], k) for k in sorted(self._dirty_keys)]),
                (INSERT_USAGE, self._usage), (SETTLE_USAGE, self._settled), (RELEASE_USAGE, self._released),
                (INSERT_HOLD, self._new_holds), (CLOSE_HOLD, self._closed_holds), (INSERT_LEDGER, self._ledger),
                (INSERT_RESPONSE, self._responses)]

    def writes(self) -> list[tuple[str, list[tuple]]]:
        """(sql, rows) for executemany, SQLite placeholders."""
        return [(sql, rows) for sql, rows in self._parts() if rows]

    def pg_write_args(self) -> list[list]:
        """The arrays for PG_WRITE: balances and spent are (value, id...), the statement wants (id..., value)."""
        args: list = []
        for i, ((_, rows), width) in enumerate(zip(self._parts(), _PG_WIDTHS)):
            if i < 2:
                rows = [(*r[1:], r[0]) for r in rows]
            args += _columns(rows, width)[:width]  # usage: the instance id goes once, as $54
        args.append(self.instance_id)
        return args


def _hold(tx: Tx, req: HoldRequest, ts: int) -> HoldResult:
    wallet = (req.account_id, CHAT)
    balance = tx.balances.get(wallet)
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
    tx.move(wallet, -amount)
    if limited:
        tx.spend(req.key_id, amount)
    tx.ledger(wallet, "hold", -amount, req.request_id, None, ts)
    tx._usage.append((req.request_id, req.account_id, req.key_id, req.model, req.group, req.channel_id, req.stream,
                      "pending", amount, ts, tx.instance_id))
    return HoldResult(True, amount=amount, balance_after=tx.balances[wallet])


def _settle(tx: Tx, s: Settlement, ts: int) -> int | None:
    if s.stored_response is not None:
        tx._responses.append(s.stored_response)
    if s.request_id not in tx.pending:
        return None
    tx.pending.discard(s.request_id)
    wallet = (s.account_id, CHAT)
    cost = s.cost_nano if type(s.cost_nano) is int and s.cost_nano > 0 else 0  # exact, maybe beyond BIGINT
    charged = cost
    extra = cost - s.hold_nano
    if extra > 0:
        # The upstream reported more than the hold covered: collect what the balance allows
        # (so the charge never exceeds hold + balance, which fits the balance's column).
        charged = s.hold_nano + min(extra, max(0, tx.balances[wallet]))
    tx.move(wallet, s.hold_nano - charged)
    if s.key_limited and s.key_id in tx.spent:
        tx.spend(s.key_id, charged - s.hold_nano)
    tx._settled.append((s.status, count(s.prompt_tokens), count(s.completion_tokens), count(s.cached_tokens),
                        count(s.cache_write_tokens), charged, nano(cost - charged), ts, s.request_id))
    tx.ledger(wallet, "release", s.hold_nano, s.request_id, None, ts)
    tx.ledger(wallet, "charge", -charged, s.request_id, None, ts)
    return charged


def _release(tx: Tx, r: Release, ts: int) -> bool:
    if r.request_id not in tx.pending:
        return False
    tx.pending.discard(r.request_id)
    wallet = (r.account_id, CHAT)
    tx.move(wallet, r.hold_nano)
    if r.key_limited and r.key_id in tx.spent:
        tx.spend(r.key_id, -r.hold_nano)
    tx._released.append((r.status, error_code(r.error_code), ts, r.request_id))
    tx.ledger(wallet, "release", r.hold_nano, r.request_id, None, ts)
    return True


def _credit(tx: Tx, c: Credit, ts: int) -> int | None:
    wallet = (c.account_id, c.wallet)
    if wallet not in tx.balances:
        return None
    tx.move(wallet, c.amount_nano)
    tx.ledger(wallet, c.kind, c.amount_nano, c.ref, c.note, ts)
    return tx.balances[wallet]


def _debit(tx: Tx, d: Debit, ts: int) -> HoldResult:
    wallet = (d.account_id, d.wallet)
    balance = tx.balances.get(wallet)
    if balance is None:
        return HoldResult(False, refusal="no_account")
    if type(d.amount_nano) is not int or d.amount_nano <= 0:
        return HoldResult(False, balance_after=balance, refusal="invalid_amount")
    if d.amount_nano > balance:
        return HoldResult(False, balance_after=balance, refusal="insufficient_balance")
    tx.move(wallet, -d.amount_nano)
    tx.ledger(wallet, "adjustment", -d.amount_nano, None, d.note, ts)
    return HoldResult(True, amount=d.amount_nano, balance_after=tx.balances[wallet])


def _task_hold(tx: Tx, t: TaskHold, ts: int) -> HoldResult:
    wallet = (t.account_id, t.wallet)
    balance = tx.balances.get(wallet)
    if balance is None:
        return HoldResult(False, refusal="no_account")
    if t.ref in tx.known_holds:  # one hold per ref, ever (a ref taken earlier in this batch too)
        return HoldResult(False, balance_after=balance, refusal="duplicate_ref")
    amount = t.amount_nano
    if type(amount) is not int or amount < 0:
        return HoldResult(False, balance_after=balance, refusal="invalid_amount")
    if amount > balance:
        return HoldResult(False, balance_after=balance, refusal="insufficient_balance")
    # Known (a second TaskHold of the ref is refused) but not open in this batch: a close can only
    # follow the hold's commit (one statement cannot insert a row and update it).
    tx.known_holds[t.ref] = (t.account_id, t.wallet, amount)
    tx.move(wallet, -amount)
    tx.ledger(wallet, "hold", -amount, t.ref, None, ts)
    tx._new_holds.append((t.ref, t.account_id, t.wallet, amount, ts))
    return HoldResult(True, amount=amount, balance_after=tx.balances[wallet])


def _close_hold(tx: Tx, ref: str, wanted: int, ts: int) -> int | None:
    """Close the generic hold of `ref`: charge `wanted` clamped to [0, held], release the whole hold."""
    if ref not in tx.open_holds:
        return None
    tx.open_holds.discard(ref)
    account_id, wallet_name, held = tx.known_holds[ref]
    wallet = (account_id, wallet_name)
    charged = min(nano(wanted), held)
    tx.move(wallet, held - charged)
    tx.ledger(wallet, "release", held, ref, None, ts)
    if wanted is not None:
        tx.ledger(wallet, "charge", -charged, ref, None, ts)
    tx._closed_holds.append(("released" if wanted is None else "captured", charged, ts, ref))
    return charged


def _capture(tx: Tx, c: Capture, ts: int) -> int | None:
    return _close_hold(tx, c.ref, c.amount_nano if c.amount_nano is not None else 0, ts)


def _release_hold(tx: Tx, r: ReleaseHold, ts: int) -> bool:
    return _close_hold(tx, r.ref, None, ts) is not None


_APPLY = {HoldRequest: _hold, Settlement: _settle, Release: _release, Credit: _credit, Debit: _debit,
          TaskHold: _task_hold,
          Capture: _capture, ReleaseHold: _release_hold}


def decide(tx: Tx, ops: list[Op]) -> list[Any]:
    """Every operation in order, on the locked values. Results are in `ops` order."""
    ts = now_ms()
    return [_APPLY[type(op)](tx, op, ts) for op in ops]


def run_sync(cursor: Any, postgres: bool, ops: list[Op], instance_id: str | None = None) -> list[Any]:
    """A batch on a DB-API cursor, inside the caller's transaction."""
    tx = Tx(postgres, instance_id)
    for step in (tx.reads, tx.locks):
        for kind, sql, params in step(ops):
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
    for step in (tx.reads, tx.locks):
        for kind, sql, params in step(ops):
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
_MONEY_IN = ("credit", "adjustment")  # kinds of entry that need no hold record, ref or not


async def verify(conn: AsyncConnection) -> list[str]:
    """Every way the books could be wrong, as readable lines; empty when they balance.

    Every wallet's balance against its entries (and no entry for a wallet that does not exist);
    every entry's sign against its kind; every chat usage record and every generic hold against
    its own entries, all in its own wallet: one hold of -hold, a release of +hold once closed
    (none while pending), a charge of -cost; no negative amount, count or uncollected amount."""
    problems: list[str] = []
    sums = {(a, w): int(total) for a, w, total in (await conn.execute(
        select(L.c.account_id, L.c.wallet, func.coalesce(func.sum(L.c.amount_nano), 0))
        .group_by(L.c.account_id, L.c.wallet))).all()}
    for acc_id, wallet, balance in (await conn.execute(
            select(W.c.account_id, W.c.wallet, W.c.balance_nano).order_by(W.c.account_id, W.c.wallet))).all():
        tag = f"account {acc_id} wallet {wallet}"
        total = sums.pop((acc_id, wallet), 0)
        if wallet not in WALLETS:
            problems.append(f"{tag}: unknown wallet")
        if balance != total:
            problems.append(f"{tag}: balance {balance} != ledger sum {total} (nano-USD)")
        if balance < 0:
            problems.append(f"{tag}: negative balance {balance}")
    for (acc_id, wallet), total in sorted(sums.items()):
        problems.append(f"account {acc_id} wallet {wallet}: ledger entries summing to {total} without a wallet")
    wrong_sign = (L.c.kind.in_(["hold", "charge"]) & (L.c.amount_nano > 0)) | (
        L.c.kind.in_(["release", "credit"]) & (L.c.amount_nano < 0))
    for e in (await conn.execute(select(L.c.id, L.c.kind, L.c.amount_nano, L.c.request_id).where(wrong_sign)
                                 .order_by(L.c.id))).all():
        problems.append(f"ledger entry {e.id} ({e.kind}, request {e.request_id}): amount {e.amount_nano} has the "
                        f"wrong sign for a {e.kind}")
    # ref -> kind -> (sum, count), and ref -> the (account, wallet) pairs of its entries
    entries: dict[str, dict[str, tuple[int, int]]] = {}
    where: dict[str, set[tuple[int, str]]] = {}
    for rid, acc_id, wallet, kind, total, n in (await conn.execute(
            select(L.c.request_id, L.c.account_id, L.c.wallet, L.c.kind, func.sum(L.c.amount_nano), func.count())
            .where(L.c.request_id.is_not(None))
            .group_by(L.c.request_id, L.c.account_id, L.c.wallet, L.c.kind))).all():
        total_, n_ = entries.setdefault(rid, {}).get(kind, (0, 0))
        entries[rid][kind] = (total_ + int(total), n_ + n)
        where.setdefault(rid, set()).add((acc_id, wallet))
    columns = (U.c.request_id, U.c.account_id, U.c.status, U.c.hold_nano, U.c.cost_nano, U.c.uncollected_nano,
               U.c.prompt_tokens, U.c.completion_tokens, U.c.cached_tokens, U.c.cache_write_tokens)
    for r in (await conn.execute(select(*columns))).all():
        problems += _usage_problems(r, entries.pop(r.request_id, {}))
        problems += _placed(f"usage {r.request_id} ({r.status})", where.pop(r.request_id, set()),
                            (r.account_id, CHAT))
    for h in (await conn.execute(select(H).order_by(H.c.ref))).all():
        problems += _hold_problems(h, entries.pop(h.ref, {}))
        problems += _placed(f"hold {h.ref} ({h.status})", where.pop(h.ref, set()), (h.account_id, h.wallet))
    for rid in sorted(entries):
        if set(entries[rid]) - set(_MONEY_IN):
            problems.append(f"ledger entries for request {rid} without a usage record or hold")
    return problems


def _placed(tag: str, found: set[tuple[int, str]], home: tuple[int, str]) -> list[str]:
    """A hold record's entries must all be in its own account's wallet."""
    stray = sorted(found - {home})
    return [f"{tag}: entries in account {a} wallet {w}, not its account {home[0]} wallet {home[1]}"
            for a, w in stray]


def _entry_counts(tag: str, kinds: dict[str, tuple[int, int]], held: int, closed: bool,
                  cost: int) -> list[str]:
    """One hold of -held; one release of +held once closed (none before); charges summing to -cost."""
    out: list[str] = []
    hold, holds = kinds.get("hold", (0, 0))
    release, releases = kinds.get("release", (0, 0))
    charge, charges = kinds.get("charge", (0, 0))
    if holds != 1 or hold != -held:
        out.append(f"{tag}: {holds} hold entr{'y' if holds == 1 else 'ies'} of {hold} for a hold of {held}")
    want_releases = 1 if closed else 0
    if releases != want_releases or release != want_releases * held:
        out.append(f"{tag}: {releases} release entr{'y' if releases == 1 else 'ies'} of {release} for a hold of "
                   f"{held} ({'closed' if closed else 'still pending'})")
    if charges > 1 or charge != -cost:
        out.append(f"{tag}: charge entries of {charge} for a cost of {cost}")
    other = sorted(set(kinds) - {"hold", "release", "charge"})
    if other:
        out.append(f"{tag}: unexpected ledger entries of kind {', '.join(other)}")
    return out


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
    return out + _entry_counts(tag, kinds, r.hold_nano, r.status != "pending", r.cost_nano)


def _hold_problems(h: Any, kinds: dict[str, tuple[int, int]]) -> list[str]:
    """What is wrong with one generic hold and its ledger entries."""
    out: list[str] = []
    tag = f"hold {h.ref} ({h.status})"
    if h.status not in ("pending", "captured", "released"):
        out.append(f"{tag}: unknown status")
    if h.wallet not in WALLETS:
        out.append(f"{tag}: unknown wallet {h.wallet}")
    if h.amount_nano < 0 or not 0 <= h.captured_nano <= h.amount_nano:
        out.append(f"{tag}: captured {h.captured_nano} of a hold of {h.amount_nano}")
    if h.status != "captured" and h.captured_nano:
        out.append(f"{tag}: captured {h.captured_nano} but not captured")
    if (h.status == "pending") != (h.closed_at is None):
        out.append(f"{tag}: closed_at {h.closed_at}")
    moved = -sum(total for total, _ in kinds.values())
    expected = h.amount_nano if h.status == "pending" else h.captured_nano
    if moved != expected:
        out.append(f"{tag}: cost {expected} != ledger {moved}")
    return out + _entry_counts(tag, kinds, h.amount_nano, h.status != "pending", h.captured_nano)
