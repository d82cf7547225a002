"""Group commit for money writes.

Holds and settlements are small write transactions on every request. Instead
of one commit each, a writer task takes whatever operations are queued (up to
`max_batch`), runs them in ONE transaction, commits once, and only then answers
each caller: every request still waits for its own durable write, but N requests
share one commit. Operations in a batch are ordered by account so concurrent
batches (other processes) lock rows in the same order. If a batch fails, its
operations are retried one per transaction so one bad operation cannot fail others.

A batch is applied by ledger.py on the driver itself: sqlite3 (see SQLiteBatches) or
asyncpg (see PostgresBatches), without SQLAlchemy in between.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from reapi.billing.ledger import Op, run_asyncpg, run_sync
from reapi.store.db import sqlite_path

log = logging.getLogger("reapi.billing")

CHECKPOINT_S = 1.0
WAL_LIMIT = 64 << 20  # a WAL this big is folded back with writers paused, so it cannot grow forever


class SQLiteBatches:
    """Runs a batch on SQLite with as little overhead as the file allows.

    A batch is a few statements and a commit without fsync (WAL, synchronous=NORMAL):
    well under a millisecond, cheaper to run on the event loop than to hand to a thread.
    But it must never wait there for the write lock (another process, or this one's
    admin connection, may hold it), so the loop's connection has busy_timeout=0 and a
    batch that finds the database locked goes to a thread that waits for it. The WAL
    is checkpointed by a third, low-priority thread: copying pages takes tens of
    milliseconds of CPU every second, which at normal priority slowed the requests
    sharing the core (bench, concurrency 1: p99 2.4-4 ms, 1.6-2.8 ms at nice 19).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.inline = self._connect(busy_ms=0, autocheckpoint=0)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="reapi-billing")
        self.checkpointer = ThreadPoolExecutor(1, thread_name_prefix="reapi-checkpoint", initializer=_lowest_priority)
        self._waiting: sqlite3.Connection | None = None  # the locked-file thread's connection
        self._folding: sqlite3.Connection | None = None  # the checkpoint thread's connection
        self.commits = 0

    def _connect(self, busy_ms: int, autocheckpoint: int = 1000) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")  # shrink the file when the WAL starts over
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
            results = run_sync(conn.cursor(), False, ops)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        return results

    def checkpoint(self) -> None:
        """In the thread: fold the WAL back into the database file. PASSIVE blocks nobody,
        but under constant writes it may never catch up with the end of the WAL, and only
        a fully folded WAL starts over; past WAL_LIMIT a RESTART waits for that."""
        if self._folding is None:
            self._folding = self._connect(busy_ms=30000)
        try:
            big = os.path.getsize(self.path + "-wal") > WAL_LIMIT
        except OSError:
            big = False
        self._folding.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        if big:  # the PASSIVE pass did the bulk; writers wait only for the rest
            self._folding.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    def close(self) -> None:
        self.checkpointer.submit(self.checkpoint).result()
        self.checkpointer.shutdown(wait=True)
        self.thread.shutdown(wait=True)
        for conn in (self.inline, self._waiting, self._folding):
            if conn is not None:
                conn.close()


def _lowest_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only (Linux)
    except (OSError, AttributeError):
        pass


class PostgresBatches:
    """Runs batches on PostgreSQL over plain asyncpg connections, one per writer task
    (no pool checkout, no ping: a broken connection fails its batch and is replaced)."""

    def __init__(self, dsn: str) -> None:
        import asyncpg  # here, so SQLite deployments never load it

        self.dsn = dsn
        self._connect = asyncpg.connect
        self._idle: list[Any] = []

    async def run(self, ops: list[Op]) -> list[Any]:
        # enable_seqscan=off: these connections run only the ledger's few statements, each of
        # which finds its rows by primary or unique key. A plan cached while the tables were
        # empty (and never re-planned where autovacuum is off) scanned the whole usage table
        # in every batch: the bench slowed from 1,600 to 700 req/s within a minute.
        conn = self._idle.pop() if self._idle else await self._connect(
            self.dsn, server_settings={"enable_seqscan": "off"})
        try:
            async with conn.transaction():
                results = await run_asyncpg(conn, ops)
        except BaseException:
            conn.terminate()  # whatever state it is in, do not reuse it
            raise
        self._idle.append(conn)
        return results

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()


class BillingWriter:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 256, writers: int | None = None) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.sqlite: SQLiteBatches | None = None
        self.postgres: PostgresBatches | None = None
        if engine.dialect.name == "sqlite":
            self.sqlite = SQLiteBatches(sqlite_path(engine.url))
        elif engine.dialect.name == "postgresql":
            self.postgres = PostgresBatches(engine.url.set(drivername="postgresql").render_as_string(
                hide_password=False))
        # SQLite has one writer at a time anyway. PostgreSQL runs a few batches in parallel,
        # one queue per shard of accounts: one account's operations always meet in the same
        # batches instead of spreading over parallel writers' row locks. Each shard keeps
        # two batches in flight: the second is sent while the first commits and takes the
        # row locks the moment they are free, instead of a round trip later.
        self.writers = writers or (1 if self.sqlite else 4)
        self.depth = 1 if self.sqlite else 2
        self._queues: list[asyncio.Queue[tuple[int, Op, asyncio.Future, Callable[[Any], None] | None]]] = [
            asyncio.Queue() for _ in range(self.writers)]
        self._inflight = 0
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(q)) for q in self._queues for _ in range(self.depth)]
        if self.sqlite:
            self._tasks.append(loop.create_task(self._checkpoint_forever()))

    async def _checkpoint_forever(self) -> None:
        seen = 0
        while True:
            await asyncio.sleep(CHECKPOINT_S)
            if self.sqlite.commits != seen:
                seen = self.sqlite.commits
                await asyncio.get_running_loop().run_in_executor(self.sqlite.checkpointer, self.sqlite.checkpoint)

    async def stop(self) -> None:
        # Let queued and running money operations finish before shutting down.
        for _ in range(1000):
            if not self._inflight and all(q.empty() for q in self._queues):
                break
            await asyncio.sleep(0.01)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.sqlite:
            self.sqlite.close()
        if self.postgres:
            await self.postgres.close()

    async def submit(self, op: Op, on_orphan: Callable[[Any], None] | None = None) -> Any:
        """Run `op` in the next batch and return its result.

        If the caller is cancelled while waiting, the operation still completes (money
        operations are never half-done); `on_orphan(result)` then lets the caller's
        owner undo it, e.g. release a hold nobody will settle.
        """
        fut = asyncio.get_running_loop().create_future()
        self._queues[op.account_id % self.writers].put_nowait((op.account_id, op, fut, on_orphan))
        return await fut

    async def _run(self, queue: asyncio.Queue) -> None:
        while True:
            first = await queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            batch.sort(key=lambda item: item[0])
            self._inflight += 1
            try:
                await self._batch(batch)
            finally:
                self._inflight -= 1

    async def _batch(self, batch: list) -> None:
        try:
            results = await self._transaction([op for _, op, _, _ in batch])
        except asyncio.CancelledError:
            raise
        except Exception:
            if len(batch) > 1:
                log.warning("billing batch of %d failed; retrying one by one", len(batch), exc_info=True)
            await self._one_by_one(batch)
            return
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
        return await self.postgres.run(ops)

    @staticmethod
    def _deliver(fut: asyncio.Future, on_orphan, result) -> None:
        if not fut.done():
            fut.set_result(result)
        elif on_orphan is not None:
            on_orphan(result)
