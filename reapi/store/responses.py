"""The stored-responses table: which channel made a Responses id, for which account (schema.responses).

A call that is charged writes its row in its settlement's own batch (`values`: one commit per call).
`Recorder` writes the others (background responses, streams that end without a charge) group-committed (every row submitted while a write is in flight goes in the
next one: one transaction for many calls). On SQLite it runs its short insert on the event loop with its
own connection that never waits for the write lock (as reapi.billing.writer does: a commit without fsync
in WAL mode is cheaper than a thread hop) and hands a batch that finds the file locked to a thread that
waits; on PostgreSQL it goes through the engine. `find`, `forget` and `open_hold` are single statements
for the stored-response routes. A row never moves money: a background response's hold is its usage row.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reapi.store.db import sqlite_path

log = logging.getLogger("reapi.store")

COLUMNS = ("account_id", "id", "channel_id", "key_id", "model", "request_id", "background", "prompt_tokens",
           "created_at")
SQLITE_INSERT = ("INSERT INTO responses (account_id, id, channel_id, key_id, model, request_id, background, "
                 "prompt_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
INSERT = ("INSERT INTO responses (account_id, id, channel_id, key_id, model, request_id, background, prompt_tokens, "
          "created_at) VALUES (:account_id, :id, :channel_id, :key_id, :model, :request_id, :background, "
          ":prompt_tokens, :created_at) "
          "ON CONFLICT DO NOTHING")


@dataclass(frozen=True, slots=True)
class Stored:
    account_id: int
    id: str
    channel_id: int
    key_id: int
    model: str
    request_id: str
    background: bool
    prompt_tokens: int = 0
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class OpenHold:
    """A background response's hold, still pending: what its settlement needs."""
    request_id: str
    account_id: int
    key_id: int
    key_limited: bool
    hold_nano: int


def values(row: Stored) -> tuple:
    """The row's column values (COLUMNS order), clamped to the columns: what Recorder writes, and what a
    Responses call's settlement writes in its own batch (reapi.billing.ledger.Settlement.stored_response)."""
    return (row.account_id, row.id, row.channel_id, row.key_id, row.model[:200], row.request_id, row.background,
            min(max(0, row.prompt_tokens), 2**31 - 1), row.created_at or int(time.time() * 1000))


class Recorder:
    """Group-committed inserts of new rows; `record` returns once its row is durable (or raises)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.pending: list[tuple[tuple, asyncio.Future]] = []
        self.task: asyncio.Task | None = None
        self.path = sqlite_path(engine.url) if engine.dialect.name == "sqlite" else None
        self.inline: sqlite3.Connection | None = None
        self.waiting: sqlite3.Connection | None = None
        self.thread: ThreadPoolExecutor | None = None

    def _connect(self, busy_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        return conn

    @staticmethod
    def _insert(conn: sqlite3.Connection, rows: list[tuple]) -> None:
        try:
            conn.executemany(SQLITE_INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _insert_waiting(self, rows: list[tuple]) -> None:
        if self.waiting is None:
            self.waiting = self._connect(30000)
        self.waiting.execute("BEGIN IMMEDIATE")
        self._insert(self.waiting, rows)

    async def _write(self, rows: list[tuple]) -> None:
        if self.path is None:
            async with self.engine.begin() as conn:
                await conn.execute(text(INSERT), [dict(zip(COLUMNS, r)) for r in rows])
            return
        if self.inline is None:
            self.inline = self._connect(0)
        try:
            self.inline.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # locked by another writer: wait for it off the loop
            if self.thread is None:
                self.thread = ThreadPoolExecutor(1, thread_name_prefix="reapi-responses")
            await asyncio.get_running_loop().run_in_executor(self.thread, self._insert_waiting, rows)
            return
        self._insert(self.inline, rows)

    async def record(self, row: Stored) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((values(row), fut))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await self._write([p for p, _ in batch])
            except Exception as exc:
                log.error("could not record %d stored response(s): %s", len(batch), type(exc).__name__)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(RuntimeError("stored response not recorded"))
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)


async def find(engine: AsyncEngine, account_id: int, rid: str) -> Stored | None:
    """The row of `rid` for this account (None: unknown, or another account's)."""
    async with engine.connect() as conn:
        r = (await conn.execute(text(
            "SELECT account_id, id, channel_id, key_id, model, request_id, background, prompt_tokens, created_at "
            "FROM responses WHERE account_id = :a AND id = :i"), {"a": account_id, "i": rid})).first()
    return None if r is None else Stored(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8])


async def forget(engine: AsyncEngine, account_id: int, rid: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM responses WHERE account_id = :a AND id = :i"),
                           {"a": account_id, "i": rid})


async def open_hold(engine: AsyncEngine, request_id: str) -> OpenHold | None:
    """The still-pending hold of the call that made a background response (None once it is closed)."""
    async with engine.connect() as conn:
        r = (await conn.execute(text(
            "SELECT u.request_id, u.account_id, u.key_id, k.spend_limit_nano, u.hold_nano FROM usage u "
            "LEFT JOIN api_keys k ON k.id = u.key_id WHERE u.request_id = :r AND u.status = 'pending'"),
            {"r": request_id})).first()
    return None if r is None else OpenHold(r[0], r[1], r[2], r[3] is not None, r[4])
