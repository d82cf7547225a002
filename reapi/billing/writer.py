"""Group commit for money writes.

Holds and settlements are small write transactions on every request. Instead
of one commit each, a writer task takes whatever operations are queued (up to
`max_batch`), runs them in ONE transaction, commits once, and only then answers
each caller: every request still waits for its own durable write, but N requests
share one commit. Operations in a batch are ordered by account so concurrent
batches (other processes) lock rows in the same order. If a batch fails, its
operations are retried one per transaction so one bad operation cannot fail others.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("reapi.billing")

Op = Callable[[AsyncConnection], Awaitable[Any]]


class BillingWriter:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 64, writers: int = 1) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.writers = writers
        self._queue: asyncio.Queue[tuple[int, Op, asyncio.Future, Callable[[Any], None] | None]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()) for _ in range(self.writers)]

    async def stop(self) -> None:
        # Let queued money operations finish before shutting down.
        while not self._queue.empty():
            await asyncio.sleep(0.01)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

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
                async with self.engine.begin() as conn:
                    results = [await op(conn) for _, op, _, _ in batch]
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
                async with self.engine.begin() as conn:
                    result = await op(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("billing operation failed")
                if not fut.done():
                    fut.set_exception(exc)
                continue
            self._deliver(fut, on_orphan, result)

    @staticmethod
    def _deliver(fut: asyncio.Future, on_orphan, result) -> None:
        if not fut.done():
            fut.set_result(result)
        elif on_orphan is not None:
            on_orphan(result)
