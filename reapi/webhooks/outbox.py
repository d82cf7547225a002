"""The delivery outbox: `enqueue` (in the caller's transaction) and `deliveries` (the log).

A webhook is a row of webhook_deliveries written in the same transaction as the task's
terminal transition, so a task that reached its end always has its webhook, exactly one, and a
rolled-back transition has none. The body is fixed when enqueued and sent byte for byte on
every attempt:

    {"type": "task.completed" | "task.failed", "timestamp": "<ISO 8601 UTC>", "data": <payload>}

where payload is the task as GET /api/v1/tasks/{id} shows it. The message id (webhook-id) is
"msg_" + 26 hex characters, the same on every attempt: receivers deduplicate with it (delivery
is at least once: a deliverer that dies mid-attempt leaves the row to be tried again).
"""
from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reapi.store.schema import webhook_attempts as WA
from reapi.store.schema import webhook_deliveries as WD

MAX_PAYLOAD_BYTES = 256 * 1024


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(13)


def body_of(payload: dict[str, Any], now_ms: int) -> bytes:
    """The JSON body. It never fails the caller's transaction: a payload that cannot be encoded or
    is larger than MAX_PAYLOAD_BYTES is replaced by its id and status, with "truncated": true (the
    receiver reads the rest from GET /api/v1/tasks/{id})."""
    status = payload.get("status")
    kind = f"task.{status}" if status in ("completed", "failed") else "task.updated"
    stamp = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    head = {"type": kind, "timestamp": stamp.replace("+00:00", "Z")}
    try:
        body = orjson.dumps({**head, "data": payload})
    except (TypeError, orjson.JSONEncodeError):
        body = b""
    if not body or len(body) > MAX_PAYLOAD_BYTES:
        short = {k: v for k in ("id", "status") if isinstance(v := payload.get(k), str) and len(v) <= 64}
        body = orjson.dumps({**head, "data": {**short, "truncated": True}})
    return body


def _row(account_id: int, task_id: str, url: str, payload: dict, now_ms: int) -> dict[str, Any]:
    return {"id": new_message_id(), "account_id": account_id, "task_id": task_id, "url": url,
            "payload": body_of(payload, now_ms).decode(), "status": "pending", "attempts": 0, "next_at": now_ms,
            "lease_until": None, "created_at": now_ms, "finished_at": None}


def enqueue(conn: Connection, *, account_id: int, task_id: str, url: str, payload: dict, now_ms: int) -> str:
    """Write one delivery, due now, in the caller's (sync) transaction; its message id. The URL
    must have passed check_target_dns when the task was submitted (it is checked again at
    every attempt)."""
    row = _row(account_id, task_id, url, payload, now_ms)
    conn.execute(insert(WD).values(**row))
    return row["id"]


async def enqueue_async(conn: AsyncConnection, *, account_id: int, task_id: str, url: str, payload: dict,
                        now_ms: int) -> str:
    """enqueue on an AsyncConnection, in its transaction."""
    row = _row(account_id, task_id, url, payload, now_ms)
    await conn.execute(insert(WD).values(**row))
    return row["id"]


def _s(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


async def deliveries(store: AsyncEngine, task_id: str, account_id: int | None = None) -> list[dict[str, Any]]:
    """A task's webhook deliveries, oldest first, each with every attempt (times in unix seconds):
    {id, url, status, attempts: [{n, at, status_code, duration_ms, error}], created_at,
     next_attempt_at (pending only), finished_at}. With account_id, only that account's."""
    q = select(WD).where(WD.c.task_id == task_id)
    if account_id is not None:
        q = q.where(WD.c.account_id == account_id)
    async with store.connect() as conn:
        rows = (await conn.execute(q.order_by(WD.c.created_at, WD.c.id))).mappings().all()
        ids = [r["id"] for r in rows]
        tries: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if ids:
            for a in (await conn.execute(select(WA).where(WA.c.delivery_id.in_(ids))
                                         .order_by(WA.c.delivery_id, WA.c.n))).mappings():
                tries[a["delivery_id"]].append({"n": a["n"], "at": _s(a["at"]), "status_code": a["status_code"],
                                                "duration_ms": a["duration_ms"], "error": a["error"]})
    return [{"id": r["id"], "url": r["url"], "status": r["status"], "attempts": tries[r["id"]],
             "created_at": _s(r["created_at"]),
             "next_attempt_at": _s(r["next_at"]) if r["status"] == "pending" else None,
             "finished_at": _s(r["finished_at"])} for r in rows]
