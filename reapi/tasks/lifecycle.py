"""A task's money-moving transitions, each ONE transaction with its ledger entries.

- submit: the task row (queued), its Idempotency-Key and the hold of its cost on the account's
  "tasks" wallet (ledger TaskHold, ref = the task id): all or nothing. 30001 when the wallet
  cannot cover it; concurrent submits never overdraw (the ledger locks the wallet row).
- finish: the terminal transition, guarded by a compare-and-set on the status (UPDATE ... WHERE
  status IN (the expected ones)): only the one process whose update matched moves money, in the
  same transaction: a Capture of the cost on success, a ReleaseHold on failure, and the webhook's
  outbox row when the task has a webhook_url. A poll reads the row, so it can never see
  `completed` or `failed` before the money is settled.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reapi.billing import ledger
from reapi.catalog import ApiKey, TaskModel
from reapi.store import schema
from reapi.tasks.errors import TaskError
from reapi.tasks.ids import new_task_id

T = schema.tasks
I = schema.idempotency_keys
WALLET = "tasks"
OPEN = ("queued", "submitting", "running")
IDEMPOTENCY_MS = 24 * 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def body_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass(slots=True)
class Submitted:
    task: dict
    replayed: bool  # an Idempotency-Key replay: the original task, nothing charged


async def submit(engine: AsyncEngine, *, key: ApiKey, model: TaskModel, body: dict, cost_nano: int,
                 webhook_url: str | None = None, idempotency: tuple[str, str] | None = None,
                 group: str = "default") -> Submitted:
    """Store a new task and hold its cost, or (Idempotency-Key, same body hash) answer the original.
    `idempotency` is (key, sha256 of the raw body). Raises TaskError 30001, 20004."""
    for attempt in range(3):
        try:
            return await _submit_once(engine, key, model, body, cost_nano, webhook_url, idempotency, group)
        except IntegrityError:
            # two submits with one new Idempotency-Key at once: the loser reads the winner's task
            if idempotency is None or attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _submit_once(engine, key, model, body, cost_nano, webhook_url, idempotency, group) -> Submitted:
    ts = now_ms()
    task_id = new_task_id(ts)
    async with engine.begin() as conn:
        if idempotency is not None:
            seen = (await conn.execute(select(I.c.body_hash, I.c.task_id, I.c.created_at).where(
                I.c.account_id == key.account_id, I.c.key == idempotency[0]))).first()
            if seen is not None and seen.created_at > ts - IDEMPOTENCY_MS:
                if seen.body_hash != idempotency[1]:
                    raise TaskError(20004, "Idempotency-Key was already used with a different request body "
                                           "within the last 24 hours.")
                task = await get_task(conn, seen.task_id)
                if task is not None:
                    return Submitted(task, True)
            if seen is not None:
                await conn.execute(delete(I).where(I.c.account_id == key.account_id, I.c.key == idempotency[0]))
            await conn.execute(insert(I).values(account_id=key.account_id, key=idempotency[0],
                                                body_hash=idempotency[1], task_id=task_id, created_at=ts))
        row = {"id": task_id, "account_id": key.account_id, "key_id": key.id, "group": group, "model": model.name,
               "category": model.category, "status": "queued", "body": orjson.dumps(body).decode(),
               "cost_nano": cost_nano, "attempts": 0, "next_at": ts, "deadline_at": ts + model.max_seconds * 1000,
               "created_at": ts, "updated_at": ts, "webhook_url": webhook_url}
        await conn.execute(insert(T).values(**row))
        held = await ledger.run(conn, ledger.TaskHold(task_id, key.account_id, WALLET, cost_nano))
        if not held.ok:
            raise TaskError(30001, "Insufficient credits for this task; top up the tasks balance to continue.")
    return Submitted({**row, "channel_id": None, "upstream_id": None, "progress": None, "outputs": None,
                      "error_code": None, "error_message": None, "completed_at": None, "expires_at": None,
                      "lease_owner": None, "lease_until": None}, False)


async def get_task(conn: AsyncConnection, task_id: str, account_id: int | None = None) -> dict | None:
    q = select(T).where(T.c.id == task_id)
    if account_id is not None:
        q = q.where(T.c.account_id == account_id)
    r = (await conn.execute(q)).mappings().first()
    return None if r is None else dict(r)


async def finish(engine: AsyncEngine, task_id: str, *, ok: bool, expect: tuple[str, ...] = OPEN,
                 owner: str | None = None, outputs: dict | None = None, error_code: int | None = None,
                 error_message: str | None = None, expires_at: int | None = None,
                 on_commit=None) -> bool:
    """The terminal transition: completed (capture the cost) or failed (release it), exactly once.
    False when the task was no longer in `expect` (or, with `owner`, no longer leased to it):
    somebody else finished it, nothing moved. `on_commit(conn, task)` runs inside the transaction
    after the money (e.g. to enqueue the webhook)."""
    ts = now_ms()
    where = [T.c.id == task_id, T.c.status.in_(expect)]
    if owner is not None:
        where.append(T.c.lease_owner == owner)
    values = {"status": "completed" if ok else "failed", "updated_at": ts, "completed_at": ts,
              "lease_owner": None, "lease_until": None}
    if ok:
        values.update(outputs=orjson.dumps(outputs or {}).decode(), progress=100, expires_at=expires_at)
    else:
        values.update(error_code=error_code or 50001, error_message=(error_message or "")[:1000])
    async with engine.begin() as conn:
        moved = (await conn.execute(update(T).where(*where).values(**values))).rowcount
        if moved != 1:
            return False
        task = await get_task(conn, task_id)
        if ok:
            charged = await ledger.run(conn, ledger.Capture(task_id, task["cost_nano"]))
            closed = charged is not None
        else:
            closed = await ledger.run(conn, ledger.ReleaseHold(task_id))
        if not closed:  # the hold was closed already: never move money twice; keep the books as they are
            raise RuntimeError(f"task {task_id}: its hold was not open at its terminal transition")
        if task.get("webhook_url"):
            await enqueue_webhook(conn, task, ts)
        if on_commit is not None:
            await on_commit(conn, task)
    return True


async def enqueue_webhook(conn: AsyncConnection, task: dict, ts: int) -> None:
    """The task's webhook, in the terminal transaction: the outbox row commits with the money."""
    from reapi.tasks.queries import task_view
    from reapi.webhooks import enqueue_async

    await enqueue_async(conn, account_id=task["account_id"], task_id=task["id"], url=task["webhook_url"],
                        payload=task_view(task), now_ms=ts)
