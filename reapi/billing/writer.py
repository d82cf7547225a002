"""Group commit for money writes.

Holds and settlements are small write transactions on every request. Instead
of one commit each, a writer task takes whatever operations are queued (up to
`max_batch`), runs them in ONE transaction, commits once, and only then answers
each caller: every request still waits for its own durable write, but N requests
share one commit. Operations in a batch are ordered by account so concurrent
batches (other processes) lock rows in the same order. If a batch fails, its
operations are retried one per transaction so one bad operation cannot fail others.

A hold must never stay open because its close failed: a Settlement that still fails
alone is replaced by a Release of the same hold (status failed, error_code
settlement_failed: nothing charged), and a Release that fails is retried with backoff.
Only if that fails too does the caller get MoneyNotClosed; the release is then retried
at every sweep (`sweep`) until it is written.

The generic operations (TaskHold, Capture, ReleaseHold: the task gateway's) go through the same
batches; a Capture or ReleaseHold that fails alone fails to its caller (its hold stays open, in
the holds table, for the caller to close again). The sweeper releases chat holds only.

A batch is applied by ledger.py on the driver itself: sqlite3 (see SQLiteBatches) or
asyncpg (see PostgresBatches), without SQLAlchemy in between.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from reapi.aio import nice_thread, stop_tasks
from reapi.billing.ledger import (HoldRequest, Op, Release, Settlement, abandoned_releases, abandoned_sql,
                                  run_asyncpg, run_sync)
from reapi.store.db import sqlite_path

log = logging.getLogger("reapi.billing")

CHECKPOINT_S = 1.0
WAL_LIMIT = 64 << 20  # a WAL this big is folded back with writers paused, so it cannot grow forever
RELEASE_RETRIES_S = (0.0, 0.05, 0.25, 1.0, 2.5)  # a failed close is tried again after each of these pauses


class MoneyNotClosed(Exception):
    """A Settlement or Release could not be written, nor the hold released instead: the hold
    is still open. The writer keeps retrying the release at every sweep."""


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

    def __init__(self, path: str, instance_id: str | None = None) -> None:
        self.path = path
        self.instance_id = instance_id
        self.inline = self._connect(busy_ms=0, autocheckpoint=0)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="reapi-billing")
        self.checkpointer = ThreadPoolExecutor(1, thread_name_prefix="reapi-checkpoint", initializer=nice_thread,
                                               initargs=(19,))
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
            results = run_sync(conn.cursor(), False, ops, self.instance_id)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        return results

    async def fetch(self, sql: str, params: tuple) -> list[tuple]:
        """A read (no write lock: a WAL reader waits for nobody), on the loop; off it should
        the file be busy anyway (e.g. during a WAL restart)."""
        try:
            return self.inline.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return await asyncio.get_running_loop().run_in_executor(self.thread, self._fetch_waiting, sql, params)

    def _fetch_waiting(self, sql: str, params: tuple) -> list[tuple]:
        if self._waiting is None:
            self._waiting = self._connect(busy_ms=30000)
        return self._waiting.execute(sql, params).fetchall()

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


class PostgresBatches:
    """Runs batches on PostgreSQL over plain asyncpg connections, one per writer task
    (no pool checkout, no ping: a broken connection fails its batch and is replaced).

    With `async_holds` (REAPI_PG_HOLD_COMMIT=async, the default) a batch of nothing but chat holds
    commits without waiting for its WAL flush (synchronous_commit=off, on connections kept for such
    batches); every other batch, settlements and releases above all, waits for it. Row locks and
    visibility are the same either way: no hold can overdraw. What changes is only what a crash of
    PostgreSQL itself (not of reapi) within the WAL writer's window (3 x wal_writer_delay, 600 ms by
    default) may lose: holds whose calls were in flight. A lost hold's call then finds no hold to
    settle and is charged nothing; balances and entries stay consistent (`reapi ledger verify`).
    The next durable commit flushes every earlier one, so a hold followed by any settlement is
    durable too."""

    def __init__(self, dsn: str, instance_id: str | None = None, async_holds: bool = False) -> None:
        import asyncpg  # here, so SQLite deployments never load it

        self.dsn = dsn
        self.instance_id = instance_id
        self.async_holds = async_holds
        self._connect = asyncpg.connect
        self._idle: list[Any] = []
        self._idle_async: list[Any] = []

    async def _conn(self, durable: bool = True) -> Any:
        # enable_seqscan=off: these connections run only the ledger's few statements, each of
        # which finds its rows by primary or unique key (or, the sweep, by the partial index of
        # pending rows). A plan cached while the tables were empty (and never re-planned where
        # autovacuum is off) scanned the whole usage table in every batch: the bench slowed
        # from 1,600 to 700 req/s within a minute.
        idle = self._idle if durable else self._idle_async
        if idle:
            return idle.pop()
        settings = {"enable_seqscan": "off"}
        if not durable:
            settings["synchronous_commit"] = "off"
        return await self._connect(self.dsn, server_settings=settings)

    async def run(self, ops: list[Op]) -> list[Any]:
        durable = not self.async_holds or any(type(op) is not HoldRequest for op in ops)
        conn = await self._conn(durable)
        try:
            async with conn.transaction():
                results = await run_asyncpg(conn, ops, self.instance_id)
        except BaseException:
            conn.terminate()  # whatever state it is in, do not reuse it
            raise
        (self._idle if durable else self._idle_async).append(conn)
        return results

    async def fetch(self, sql: str, params: tuple) -> list[tuple]:
        conn = await self._conn()
        try:
            rows = await conn.fetch(sql, *params)
        except BaseException:
            conn.terminate()
            raise
        self._idle.append(conn)
        return [tuple(r) for r in rows]

    async def close(self) -> None:
        for idle in (self._idle, self._idle_async):
            while idle:
                await idle.pop().close()


def _shard(op: Op) -> int:
    """The account of an operation; a Capture or ReleaseHold names only its ref, which stands in
    (any queue is correct: the batch's row locks keep the books exact)."""
    account_id = getattr(op, "account_id", None)
    return account_id if account_id is not None else zlib.crc32(op.ref.encode())


class BillingWriter:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 256, writers: int | None = None,
                 instance_id: str | None = None, async_holds: bool = False) -> None:
        """`instance_id`: the serving process's lease id, recorded on every hold it takes;
        `async_holds`: PostgreSQL commits hold-only batches without waiting for the WAL flush
        (see PostgresBatches)."""
        self.engine = engine
        self.max_batch = max_batch
        self.instance_id = instance_id
        self.sqlite: SQLiteBatches | None = None
        self.postgres: PostgresBatches | None = None
        if engine.dialect.name == "sqlite":
            self.sqlite = SQLiteBatches(sqlite_path(engine.url), instance_id)
        elif engine.dialect.name == "postgresql":
            self.postgres = PostgresBatches(engine.url.set(drivername="postgresql").render_as_string(
                hide_password=False), instance_id, async_holds)
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
        self._closing: set[asyncio.Task] = set()  # closes being retried (see _close_anyway)
        self.unclosed: dict[str, Release] = {}  # releases that failed every retry, tried again by sweep()

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
            if not self._inflight and not self._closing and all(q.empty() for q in self._queues):
                break
            await asyncio.sleep(0.01)
        for t in self._closing:
            t.cancel()
        await stop_tasks(*self._tasks)
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
        shard = _shard(op)
        self._queues[shard % self.writers].put_nowait((shard, op, fut, on_orphan))
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
                if isinstance(op, (Settlement, Release)):
                    # Off this queue's task: its other operations need not wait for the retries.
                    task = asyncio.get_running_loop().create_task(self._close_anyway(op, fut, on_orphan))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)
                    continue
                log.exception("billing operation failed")
                if not fut.done():
                    fut.set_exception(exc)
                continue
            self._deliver(fut, on_orphan, result)

    async def _close_anyway(self, op: Settlement | Release, fut: asyncio.Future, on_orphan) -> None:
        """A close that failed alone: release the hold instead (a settlement), retried with backoff.
        The caller gets what the close would have answered (a settlement: 0, nothing charged;
        None if the hold was already closed), or MoneyNotClosed."""
        settling = isinstance(op, Settlement)
        release = Release(op.request_id, op.account_id, op.key_id, op.key_limited, op.hold_nano, status="failed",
                          error_code="settlement_failed") if settling else op
        log.error("billing: %s of request %s failed; %s", "settlement" if settling else "release", op.request_id,
                  "releasing its hold instead" if settling else "retrying", exc_info=True)
        released = await self._release_retrying(release)
        if released is not None:
            if settling and released:
                log.warning("billing: request %s was not charged: its settlement failed, its hold was released",
                            op.request_id)
            self._deliver(fut, on_orphan, (0 if released else None) if settling else released)
            return
        log.error("billing: could not release the hold of request %s; retrying at every sweep", op.request_id)
        self.unclosed[release.request_id] = release
        if not fut.done():
            fut.set_exception(MoneyNotClosed(f"the hold of request {op.request_id} could not be closed"))

    async def _release_retrying(self, release: Release) -> bool | None:
        """Write `release`, trying again after each of RELEASE_RETRIES_S: its result (False: the hold
        was already closed), or None if every try failed."""
        for pause in RELEASE_RETRIES_S:
            await asyncio.sleep(pause)
            try:
                return (await self._transaction([release]))[0]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("billing: release of request %s failed", release.request_id, exc_info=True)
        return None

    async def sweep(self, age_cutoff_ms: int) -> int:
        """Release abandoned holds: those whose instance's lease ran out or is gone, and any pending
        since before `age_cutoff_ms` (see ledger.ABANDONED). One read of the pending rows; the
        releases go through the batches like any other (a hold closed meanwhile is left alone).
        Closes that failed every retry earlier are tried again first. Returns how many holds
        were released."""
        released = 0
        for rid, release in list(self.unclosed.items()):
            try:
                released += bool((await self._transaction([release]))[0])
            except Exception:
                log.warning("billing: release of request %s failed again", rid, exc_info=True)
                continue
            self.unclosed.pop(rid, None)
        store = self.postgres or self.sqlite
        rows = await store.fetch(abandoned_sql(self.postgres is not None), (age_cutoff_ms, self.instance_id or ""))
        if rows:
            results = await asyncio.gather(*(self.submit(op) for op in abandoned_releases(rows)),
                                           return_exceptions=True)
            released += sum(1 for r in results if r is True)
        return released

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
