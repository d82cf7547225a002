"""The task worker: claims due tasks with a lease, submits each upstream once, polls it to the end.

Any number of workers (inside `reapi serve`, or alone as `reapi worker`, on any machines) share one
store. A worker claims due open tasks by setting its lease on them (PostgreSQL: the candidates are
locked FOR UPDATE SKIP LOCKED, so two workers never claim the same task; SQLite: the claim runs under
the database's write lock), renews the leases of the tasks it works on, and lets each go (lease
cleared, next step's time set) after each step. A task whose worker died is claimed again once
its lease has run out (REAPI_TASK_LEASE_SECONDS).

Steps, each ended by a compare-and-set on the status (and the lease):
- queued: pick a channel (priority tiers, weights, cool-downs: reapi.relay.select/health), mark
  the task `submitting` (committed BEFORE the request is sent), send the submit. An answer that
  says the task was not accepted (connect error, 429, 5xx) puts it back to `queued` with a
  backoff; a rejection (other 4xx) fails it; a lost answer (timeout, broken connection) fails it:
  its outcome is unknown and it is never sent twice. The upstream id is stored (`running`)
  before any poll.
- submitting, claimed: its worker died mid-submit, the outcome is unknown: failed, released.
- running: one poll; 429/5xx/timeouts leave it running with a backoff; the end captures
  (completed, after copying the outputs) or releases (failed) in the terminal transaction.
- past its deadline (the model's max_seconds): failed with 50005, released.

The worker also runs the webhook Deliverer (reapi.webhooks), refreshes the task metrics and deletes
output files past their retention.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from sqlalchemy import text

from reapi import metrics
from reapi.aio import stop_tasks, wait_event
from reapi.billing.ledger import DB_NOW
from reapi.catalog import Channel
from reapi.relay.select import pick
from reapi.store.probe import Probe
from reapi.tasks import lifecycle
from reapi.tasks.outputs import save_outputs
from reapi.tasks.providers import PROVIDERS
from reapi.tasks.providers.base import Polled, ProviderRequest, TaskUpstreamError

log = logging.getLogger("reapi.tasks")

MAX_ANSWER = 64 << 20  # an upstream answer (synchronous providers return images in it)
REQUEST_S = 60  # one asynchronous submit or poll
MAX_SAVE_TRIES = 5
STOP_GRACE_S = 10.0  # on a clean stop, how long the steps in flight may take to finish
SYNCHRONOUS = ("openai-images",)  # providers whose submit answers the result: it may take up to the deadline
STATS_S = 5.0  # how often the worker refreshes the task metrics from the store
RETENTION_EVERY = 12  # ... and every this many refreshes (a minute) deletes expired output files
COLS = "id, status, model, category, \"group\", body, channel_id, upstream_id, attempts, deadline_at, webhook_url"

CLAIM_PG = f"""
UPDATE tasks SET lease_owner = :me, lease_until = {{now}} + :lease
WHERE id IN (SELECT id FROM tasks WHERE status IN ('queued', 'submitting', 'running') AND next_at <= {{now}}
             AND (lease_until IS NULL OR lease_until < {{now}}) ORDER BY next_at LIMIT :n FOR UPDATE SKIP LOCKED)
RETURNING {COLS}
"""
CLAIM_SQLITE = f"""
UPDATE tasks SET lease_owner = :me, lease_until = {{now}} + :lease
WHERE id IN (SELECT id FROM tasks WHERE status IN ('queued', 'submitting', 'running') AND next_at <= {{now}}
             AND (lease_until IS NULL OR lease_until < {{now}}) ORDER BY next_at LIMIT :n)
RETURNING {COLS}
"""
# SQLite: whether anything is due, looked at before the claim (reapi.store.probe): an idle worker's
# claim (a write, through aiosqlite's thread) every half second stalled the loop ~11 ms each time.
DUE_SQLITE = """SELECT 1 FROM tasks WHERE status IN ('queued', 'submitting', 'running') AND next_at <= {now}
AND (lease_until IS NULL OR lease_until < {now}) LIMIT 1"""
RENEW = "UPDATE tasks SET lease_until = {now} + :lease WHERE lease_owner = :me AND status IN ('queued', " \
        "'submitting', 'running')"
LET_GO = "UPDATE tasks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = :me AND status IN " \
         "('queued', 'running')"


class Lost(Exception):
    """The task is no longer this worker's (its lease ran out and another took it, or it ended)."""


class Worker:
    def __init__(self, gw) -> None:
        self.gw = gw
        s = gw.settings
        self.me = gw.instance_id
        self.lease_ms = s.task_lease_seconds * 1000
        self.poll_ms = s.task_poll_ms
        self.concurrency = s.task_concurrency
        self.inflight: dict[str, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._renew_task: asyncio.Task | None = None
        self._stats_task: asyncio.Task | None = None
        self.deliverer = None  # reapi.webhooks.Deliverer, started with the worker
        dialect = gw.engine.dialect.name
        self._now = DB_NOW[dialect]
        self._claim = (CLAIM_PG if dialect == "postgresql" else CLAIM_SQLITE).replace("{now}", self._now)
        self._due = Probe(gw.engine, DUE_SQLITE.replace("{now}", self._now))

    # --- running ---------------------------------------------------------------------------

    def start(self) -> None:
        from reapi.webhooks import Deliverer

        self.deliverer = Deliverer.from_settings(self.gw.engine, self.gw.settings)
        self.deliverer.start()
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._run())
        self._renew_task = loop.create_task(self._renew_forever())
        self._stats_task = loop.create_task(self._stats_forever())

    def wake(self) -> None:
        """A task was submitted: look for work now rather than at the next tick."""
        self._wake.set()

    async def stop(self) -> None:
        """Claim nothing more, let the steps in flight finish (a submit cut off now would leave its
        outcome unknown, and its task failed) for up to STOP_GRACE_S, then cancel what is left."""
        await stop_tasks(self._loop_task)
        if self.inflight:
            await asyncio.wait(list(self.inflight.values()), timeout=STOP_GRACE_S)  # leases still renewed
        running = [t for t in (self._renew_task, self._stats_task, *self.inflight.values()) if t is not None]
        await stop_tasks(*running)
        if self.deliverer is not None:
            await self.deliverer.stop()
        try:  # tasks between steps go back at once; one mid-submit keeps its lease (outcome unknown)
            await self._sql(LET_GO, {"me": self.me})
        except Exception:
            log.warning("could not let this worker's tasks go; they are taken over after their lease")
        self._due.close()

    async def _run(self) -> None:
        tick = min(1.0, max(0.01, self.poll_ms / 1000 / 2))
        while True:
            try:
                free = self.concurrency - len(self.inflight)
                if free > 0:
                    for row in await self.claim(free):
                        self.inflight[row["id"]] = asyncio.get_running_loop().create_task(self._step(row))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task claim failed; retrying")
            self._wake.clear()
            await wait_event(self._wake, tick)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self._sql(RENEW, {"me": self.me, "lease": self.lease_ms})
            except Exception:
                log.exception("could not renew the task leases; retrying")

    async def _stats_forever(self) -> None:
        n = 0
        while True:
            try:
                await self.publish_stats()
            except Exception:
                log.warning("could not read the task counts for the metrics")
            if n % RETENTION_EVERY == 0:
                try:
                    await self.delete_expired()
                    await self.prune_idempotency()
                except Exception:
                    log.exception("could not delete expired task outputs or idempotency keys; retrying")
            n += 1
            await asyncio.sleep(STATS_S)

    async def prune_idempotency(self) -> int:
        """Forget Idempotency-Keys older than 24 h (they no longer answer anything)."""
        return await self._sql("DELETE FROM idempotency_keys WHERE created_at < :cut",
                               {"cut": int(time.time() * 1000) - lifecycle.IDEMPOTENCY_MS})

    async def delete_expired(self) -> int:
        """Delete the files of tasks past their expires_at (REAPI_MEDIA_RETENTION_HOURS); their output
        becomes null. Returns the number of tasks whose files went."""
        from reapi import media

        async with self.gw.engine.connect() as conn:
            ids = (await conn.execute(text(
                "SELECT id FROM tasks WHERE status = 'completed' AND outputs IS NOT NULL AND expires_at < :now "
                "ORDER BY expires_at LIMIT 500"), {"now": int(time.time() * 1000)})).scalars().all()
        if not ids:
            return 0
        if self.gw.media_store is None:
            self.gw.media_store = media.open_store(self.gw.settings)
        await media.delete_expired(self.gw.media_store, ids)
        async with self.gw.engine.begin() as conn:
            for tid in ids:
                await conn.execute(text("UPDATE tasks SET outputs = NULL WHERE id = :id"), {"id": tid})
        return len(ids)

    async def publish_stats(self) -> None:
        async with self.gw.engine.connect() as conn:
            # open tasks only (the partial index ix_tasks_open holds just those): ended tasks are counted
            # by reapi_tasks_finished_total, never by scanning a table that grows by a row per task
            by_state = {s: n for s, n in (await conn.execute(text(
                "SELECT status, count(*) FROM tasks WHERE status IN ('queued', 'submitting', 'running') "
                "GROUP BY status"))).all()}
            queue = (await conn.execute(text(
                "SELECT count(*) FROM tasks WHERE status = 'queued' AND next_at <= " + self._now))).scalar()
            oldest = (await conn.execute(text(
                "SELECT min(created_at) FROM tasks WHERE status IN ('queued', 'submitting', 'running')"))).scalar()
        age = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
        metrics.set_task_stats(by_state, queue or 0, age)

    async def _sql(self, sql: str, params: dict) -> Any:
        async with self.gw.engine.begin() as conn:
            return (await conn.execute(text(sql.replace("{now}", self._now)), params)).rowcount

    async def claim(self, n: int) -> list[dict]:
        if self._due.idle():
            return []
        async with self.gw.engine.begin() as conn:
            rows = (await conn.execute(text(self._claim), {"me": self.me, "lease": self.lease_ms, "n": n})).mappings()
            return [dict(r) for r in rows]

    async def _step(self, row: dict) -> None:
        try:
            await self.step(row)
        except Lost:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s: worker step failed; it is retried after its lease", row["id"])
        finally:
            self.inflight.pop(row["id"], None)
            if len(self.inflight) == self.concurrency - 1:
                self._wake.set()

    # --- one step --------------------------------------------------------------------------

    async def step(self, row: dict) -> None:
        tid = row["id"]
        if time.time() * 1000 >= row["deadline_at"]:
            await self.fail(row, 50005, "The task did not finish within its deadline; nothing was charged.",
                            owner=None)
            return
        if row["status"] == "submitting":
            await self.fail(row, 50002, "The upstream submit's outcome is unknown (the worker stopped during it); "
                                        "the task was not sent again and nothing was charged.")
            return
        snap = self.gw.catalog.snapshot
        if row["status"] == "queued":
            await self.submit(row, snap)
        elif row["status"] == "running":
            ch = snap.channels.get(row["channel_id"])
            if ch is None or ch.type not in PROVIDERS:
                await self.fail(row, 50002, "The channel of this task was removed; nothing was charged.")
                return
            await self.poll(row, ch)
        else:
            log.warning("task %s: claimed in status %s", tid, row["status"])

    async def submit(self, row: dict, snap) -> None:
        model = snap.task_models.get(row["model"])
        tiers = snap.task_pools.get((row["group"], row["model"]))
        if model is None or not tiers:
            await self.retry_later(row, "queued", None)  # the operator may add a channel before the deadline
            return
        health = self.gw.health
        ch = pick(tiers, health.available)
        provider = PROVIDERS.get(ch.type)
        if provider is None:
            await self.fail(row, 50001, "This task's channel type is not supported by this build.")
            return
        body = orjson.loads(row["body"])
        req = provider.build_submit(ch, ch.upstream_model(row["model"]), row["category"], body)
        await self.move(row, "queued", "submitting", channel_id=ch.id)  # committed before anything is sent
        started = time.monotonic()
        try:
            wait = min(self.gw.settings.upstream_read_timeout, self.seconds_left(row)) \
                if provider.type in SYNCHRONOUS else REQUEST_S
            status, raw = await self.send(req, timeout=wait)
        except aiohttp.ClientConnectorError:  # never reached the upstream: safe to try again
            health.record_failure(ch.id)
            await self.back_to_queue(row, None)
            return
        except (asyncio.TimeoutError, aiohttp.ClientError, AnswerTooLarge) as exc:
            health.record_failure(ch.id)
            code = 50004 if isinstance(exc, asyncio.TimeoutError) else 50002
            await self.fail(row, code, "The upstream's answer to the submit was lost; the task was not sent "
                                       "again and nothing was charged.", expect=("submitting",))
            return
        finally:
            metrics.task_upstream_latency(time.monotonic() - started)
        if 300 <= status < 400:
            health.record_failure(ch.id)
            await self.fail(row, 50002, "The upstream answered with a redirect; nothing was charged.",
                            expect=("submitting",))
            return
        try:
            sub = provider.parse_submit(ch, status, raw)
        except TaskUpstreamError as e:
            if e.transient:
                health.record_failure(ch.id)
                await self.back_to_queue(row, e.retry_after_s)
            else:
                health.record_success(ch.id)
                await self.fail(row, e.code, e.message, expect=("submitting",))
            return
        health.record_success(ch.id)
        if sub.done is not None:
            await self.ended(row, ch, sub.done, expect=("submitting",), upstream_id=sub.upstream_id)
            return
        await self.move(row, "submitting", "running", upstream_id=sub.upstream_id,
                        next_in_ms=self.poll_ms)  # stored before the first poll

    async def poll(self, row: dict, ch: Channel) -> None:
        provider = PROVIDERS[ch.type]
        req = provider.build_poll(ch, row["upstream_id"])
        started = time.monotonic()
        try:
            status, raw = await self.send(req, timeout=REQUEST_S)
        except (asyncio.TimeoutError, aiohttp.ClientError, AnswerTooLarge):
            self.gw.health.record_failure(ch.id)
            await self.retry_later(row, "running", None)
            return
        finally:
            metrics.task_upstream_latency(time.monotonic() - started)
        try:
            if 300 <= status < 400:
                raise TaskUpstreamError(50002, "upstream answered with a redirect", transient=True)
            polled = provider.parse_poll(ch, status, raw)
        except TaskUpstreamError as e:
            if e.transient:
                self.gw.health.record_failure(ch.id)
                await self.retry_later(row, "running", e.retry_after_s)
            else:
                await self.fail(row, e.code, e.message, expect=("running",))
            return
        self.gw.health.record_success(ch.id)
        if polled.status == "processing":
            await self.retry_later(row, "running", None, progress=polled.progress)
            return
        await self.ended(row, ch, polled, expect=("running",))

    async def ended(self, row: dict, ch: Channel, polled: Polled, *, expect: tuple[str, ...],
                    upstream_id: str | None = None) -> None:
        if polled.status == "failed":
            await self.fail(row, polled.error_code or 50003, polled.error_message or "The upstream failed the task.",
                            expect=expect)
            return
        try:
            output = await save_outputs(self.gw, row["id"], polled.outputs, urlsplit(ch.base_url).hostname)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("task %s: its outputs could not be stored (%s)", row["id"], type(exc).__name__)
            if row["attempts"] + 1 >= MAX_SAVE_TRIES or expect == ("submitting",):
                await self.fail(row, 50002, "The upstream's output files could not be fetched; nothing was charged.",
                                expect=expect)
            else:
                await self.retry_later(row, "running", None)
            return
        expires = int(time.time() * 1000) + self.gw.settings.media_retention_hours * 3_600_000
        ok = await lifecycle.finish(self.gw.engine, row["id"], ok=True, expect=expect, owner=self.me,
                                    outputs=output, expires_at=expires)
        if ok:
            metrics.task_finished("completed")
            self.on_terminal()

    # --- transitions ---------------------------------------------------------------------------

    def seconds_left(self, row: dict) -> float:
        return max(1.0, row["deadline_at"] / 1000 - time.time())

    def backoff_ms(self, attempts: int, retry_after_s: float | None) -> int:
        wait = min(self.poll_ms * 1.5 ** min(attempts, 10), self.poll_ms * 10)
        if retry_after_s is not None and 0 <= retry_after_s <= 3600:
            wait = max(wait, retry_after_s * 1000)
        return int(wait)

    async def move(self, row: dict, old: str, new: str, *, channel_id: int | None = None,
                   upstream_id: str | None = None, next_in_ms: int | None = None) -> None:
        """old -> new while the task is still this worker's; else Lost. With next_in_ms the lease is let go."""
        sets = ["status = :new", "updated_at = :ts"]
        params: dict = {"id": row["id"], "old": old, "new": new, "me": self.me, "ts": int(time.time() * 1000)}
        if channel_id is not None:
            sets.append("channel_id = :ch")
            params["ch"] = channel_id
        if upstream_id is not None:
            sets.append("upstream_id = :uid")
            params["uid"] = upstream_id
        if next_in_ms is not None:
            sets += ["lease_owner = NULL", "lease_until = NULL", "next_at = {now} + :wait"]
            params["wait"] = next_in_ms
        if new == "submitting":
            sets.append("attempts = attempts + 1")
        n = await self._sql(f"UPDATE tasks SET {', '.join(sets)} WHERE id = :id AND status = :old "
                            "AND lease_owner = :me", params)
        if n != 1:
            raise Lost(row["id"])
        row["status"] = new

    async def back_to_queue(self, row: dict, retry_after_s: float | None) -> None:
        await self.move(row, "submitting", "queued", next_in_ms=self.backoff_ms(row["attempts"], retry_after_s))

    async def retry_later(self, row: dict, status: str, retry_after_s: float | None,
                          progress: int | None = None) -> None:
        """Let the task go until its next step (a backoff), still in `status`."""
        wait = self.backoff_ms(row["attempts"], retry_after_s)
        extra = ", progress = :progress" if progress is not None else ""
        n = await self._sql("UPDATE tasks SET lease_owner = NULL, lease_until = NULL, next_at = {now} + :wait, "
                            f"attempts = attempts + 1, updated_at = :ts{extra} WHERE id = :id AND status = :status "
                            "AND lease_owner = :me",
                            {"id": row["id"], "status": status, "me": self.me, "wait": wait, "progress": progress,
                             "ts": int(time.time() * 1000)})
        if n != 1:
            raise Lost(row["id"])

    async def fail(self, row: dict, code: int, message: str, *, expect: tuple[str, ...] = lifecycle.OPEN,
                   owner: str | None | object = ...) -> None:
        ok = await lifecycle.finish(self.gw.engine, row["id"], ok=False, expect=expect,
                                    owner=self.me if owner is ... else owner, error_code=code,
                                    error_message=message)
        if ok:
            metrics.task_finished("failed")
            self.on_terminal()

    def on_terminal(self) -> None:
        """After a terminal transition: deliver its webhook (if any) now rather than at the next pass."""
        if self.deliverer is not None:
            self.deliverer.notify()

    # --- I/O -----------------------------------------------------------------------------------

    async def send(self, req: ProviderRequest, *, timeout: float) -> tuple[int, bytes]:
        """One upstream request: no redirects followed, the answer bounded in size and time."""
        async with self.gw.http.request(req.method, req.url, headers=req.headers, data=req.body,
                                        allow_redirects=False,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise AnswerTooLarge()
                chunks.append(chunk)
            return resp.status, b"".join(chunks)


class AnswerTooLarge(Exception):
    """An upstream answer beyond MAX_ANSWER."""
