"""Group commit for money writes.

Holds and settlements are small write transactions on every request. Instead
of one commit each, a writer task takes whatever operations are queued (up to
`max_batch`), runs them in ONE transaction, commits once, and only then answers
each caller: every request still waits for its own durable write, but N requests
share one commit. Operations in a batch are ordered by account so concurrent
batches (other processes) lock rows in the same order. If a batch fails, its
operations are retried one per transaction so one bad operation cannot fail others.

Operations are synchronous functions of a `Tx` (see ledger.py): for SQLite they run
on the sqlite3 driver directly (see SQLiteBatches), for PostgreSQL under `run_sync`
on asyncpg.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from reapi.billing.ledger import Tx
from reapi.store.db import sqlite_path

log = logging.getLogger("reapi.billing")

Op = Callable[[Tx], Any]


class SQLiteBatches:
    """Runs a batch on SQLite with as little overhead as the file allows.

    A batch is a few statements and a commit without fsync (WAL, synchronous=NORMAL):
    well under a millisecond, cheaper to run on the event loop than to hand to a thread.
    But it must never wait there for the write lock (another process, or this one's
    admin connection, may hold it), so the loop's connection has busy_timeout=0 and a
    batch that finds the database locked goes to a thread that waits for it. The WAL
    is checkpointed from that thread too, so the loop never pays for a checkpoint's fsync.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.inline = self._connect(busy_ms=0, autocheckpoint=0)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="reapi-billing")
        self._waiting: sqlite3.Connection | None = None  # the thread's connection, made in the thread
        self.commits = 0

    def _connect(self, busy_ms: int, autocheckpoint: int = 1000) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
        return conn

    async def run(self, ops: list[Op]) -> list[Any]:
        try:
            self.inline.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # locked by someone else: wait for it off the loop
            return await asyncio.get_running_loop().run_in_executor(self.thread, self._run_waiting, ops)
        return self._finish(self.inline, ops)

    def _run_waiting(self, ops: list[Op]) -> list[Any]:
        if self._waiting is None:
            self._waiting = self._connect(busy_ms=30000)
        self._waiting.execute("BEGIN IMMEDIATE")
        return self._finish(self._waiting, ops)

    def _finish(self, conn: sqlite3.Connection, ops: list[Op]) -> list[Any]:
        try:
            results = _apply_all(Tx(conn.cursor(), postgres=False), ops)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        return results

    def checkpoint(self) -> None:
        """In the thread: fold the WAL back into the database file (PASSIVE: blocks nobody)."""
        if self._waiting is None:
            self._waiting = self._connect(busy_ms=30000)
        self._waiting.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self.thread.submit(self.checkpoint).result()
        self.thread.shutdown(wait=True)
        for conn in (self.inline, self._waiting):
            if conn is not None:
                conn.close()


class BillingWriter:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 256, writers: int | None = None) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.sqlite: SQLiteBatches | None = None
        if engine.dialect.name == "sqlite":
            self.sqlite = SQLiteBatches(sqlite_path(engine.url))
        # SQLite has one writer at a time anyway; PostgreSQL takes a few batches in parallel
        # (row locks, taken in account order).
        self.writers = writers or (1 if self.sqlite else 4)
        self._queue: asyncio.Queue[tuple[int, Op, asyncio.Future, Callable[[Any], None] | None]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()) for _ in range(self.writers)]
        if self.sqlite:
            self._tasks.append(loop.create_task(self._checkpoint_forever()))

    async def _checkpoint_forever(self) -> None:
        seen = 0
        while True:
            await asyncio.sleep(1.0)
            if self.sqlite.commits != seen:
                seen = self.sqlite.commits
                await asyncio.get_running_loop().run_in_executor(self.sqlite.thread, self.sqlite.checkpoint)

    async def stop(self) -> None:
        # Let queued money operations finish before shutting down.
        while not self._queue.empty():
            await asyncio.sleep(0.01)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.sqlite:
            self.sqlite.close()

    async def submit(self, account_id: int, op: Op, on_orphan: Callable[[Any], None] | None = None) -> Any:
        """Run `op` in the next batch and return its result.

        If the caller is cancelled while waiting, the operation still completes (money
        operations are never half-done); `on_orphan(result)` then lets the caller's
        owner undo it, e.g. release a hold nobody will settle.
        """
        fut = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((account_id, op, fut, on_orphan))
        return await fut

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch.sort(key=lambda item: item[0])
            try:
                results = await self._transaction([op for _, op, _, _ in batch])
            except asyncio.CancelledError:
                raise
            except Exception:
                if len(batch) > 1:
                    log.warning("billing batch of %d failed; retrying one by one", len(batch), exc_info=True)
                await self._one_by_one(batch)
                continue
            for (_, _, fut, on_orphan), result in zip(batch, results):
                self._deliver(fut, on_orphan, result)

    async def _one_by_one(self, batch) -> None:
        for _, op, fut, on_orphan in batch:
            try:
                result = (await self._transaction([op]))[0]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("billing operation failed")
                if not fut.done():
                    fut.set_exception(exc)
                continue
            self._deliver(fut, on_orphan, result)

    async def _transaction(self, ops: list[Op]) -> list[Any]:
        """Run `ops` in one transaction and commit."""
        if self.sqlite is not None:
            return await self.sqlite.run(ops)
        async with self.engine.begin() as conn:
            return await conn.run_sync(_apply_on, ops)

    @staticmethod
    def _deliver(fut: asyncio.Future, on_orphan, result) -> None:
        if not fut.done():
            fut.set_result(result)
        elif on_orphan is not None:
            on_orphan(result)


def _apply_all(tx: Tx, ops: list[Op]) -> list[Any]:
    results = [op(tx) for op in ops]
    tx.flush()
    return results


def _apply_on(conn: Connection, ops: list[Op]) -> list[Any]:
    return _apply_all(Tx(conn.connection.dbapi_connection.cursor(), conn.dialect.name == "postgresql"), ops)
