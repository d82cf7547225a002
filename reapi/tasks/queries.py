"""Reads of tasks, and a task as the API shows it. Polls are served from the store only."""
from __future__ import annotations

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.billing.money import format_credits
from reapi.store import schema

T = schema.tasks
PUBLIC_STATUS = {"queued": "processing", "submitting": "processing", "running": "processing",
                 "completed": "completed", "failed": "failed"}
INTERNAL = {"processing": ("queued", "submitting", "running"), "completed": ("completed",),
            "failed": ("failed",)}
_VIEW = (T.c.id, T.c.model, T.c.status, T.c.created_at, T.c.cost_nano, T.c.progress, T.c.outputs,
         T.c.error_code, T.c.error_message, T.c.completed_at, T.c.expires_at)


def _s(ms: int | None) -> int | None:
    return None if ms is None else ms // 1000


def task_view(r, origin: str = "") -> dict:
    """{id, model, status, created_at, output, error} plus cost_credits, progress, completed_at, expires_at.
    Output file paths get `origin` in front (the public URL of this gateway)."""
    from reapi.tasks.outputs import with_origin

    status = PUBLIC_STATUS[r["status"]]
    error = None
    if status == "failed":
        error = {"code": r["error_code"], "message": r["error_message"] or ""}
    return {"id": r["id"], "model": r["model"], "status": status, "created_at": _s(r["created_at"]),
            "output": with_origin(orjson.loads(r["outputs"]), origin) if status == "completed" and r["outputs"]
            else None,
            "error": error, "cost_credits": format_credits(r["cost_nano"]), "progress": r["progress"],
            "completed_at": _s(r["completed_at"]), "expires_at": _s(r["expires_at"])}


_ONE_SQL = ("SELECT id, model, status, created_at, cost_nano, progress, outputs, error_code, error_message, "
            "completed_at, expires_at FROM tasks WHERE id = ? AND account_id = ?")
_ONE_KEYS = ("id", "model", "status", "created_at", "cost_nano", "progress", "outputs", "error_code",
             "error_message", "completed_at", "expires_at")


class SQLitePolls:
    """Polls on SQLite, read on the event loop from a plain read-only connection (microseconds: a
    WAL reader never waits for a writer); through aiosqlite's thread each poll cost a thread hop."""

    def __init__(self, path: str) -> None:
        from reapi.store.db import connect_readonly

        self.conn = connect_readonly(path, check_same_thread=False)

    def one(self, task_id: str, account_id: int, origin: str = "") -> dict | None:
        rows = self.conn.execute(_ONE_SQL, (task_id, account_id)).fetchall()  # to its end: no open snapshot
        return task_view(dict(zip(_ONE_KEYS, rows[0])), origin) if rows else None


async def one(conn: AsyncConnection, task_id: str, account_id: int, origin: str = "") -> dict | None:
    r = (await conn.execute(select(*_VIEW).where(T.c.id == task_id, T.c.account_id == account_id))).mappings().first()
    return None if r is None else task_view(r, origin)


async def page(conn: AsyncConnection, account_id: int | None, *, status: str | None = None, limit: int = 20,
               after: str | None = None, origin: str = "") -> list[dict]:
    """Tasks newest first (ids sort by creation time); `after`: the last id of the previous page.
    `status` is a public status (processing | completed | failed) or, for operators, an internal one."""
    q = select(*_VIEW, T.c.account_id, T.c.status.label("state"), T.c.upstream_id, T.c.channel_id)
    if account_id is not None:
        q = q.where(T.c.account_id == account_id)
    if status is not None:
        q = q.where(T.c.status.in_(INTERNAL.get(status, (status,))))
    if after is not None:
        q = q.where(T.c.id < after)
    rows = (await conn.execute(q.order_by(T.c.id.desc()).limit(limit))).mappings().all()
    return [dict(task_view(r, origin), account_id=r["account_id"], state=r["state"], channel_id=r["channel_id"])
            for r in rows]


async def counts_by_state(conn: AsyncConnection) -> dict[str, int]:
    return {s: n for s, n in (await conn.execute(select(T.c.status, func.count()).group_by(T.c.status))).all()}
