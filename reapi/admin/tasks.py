"""/admin/tasks: every account's tasks, and failing a task by hand (its hold is released)."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from reapi.admin.common import Gw
from reapi.errors import GatewayError
from reapi.operations.inputs import I32

router = APIRouter(prefix="/admin/tasks", tags=["tasks"])
TaskId = Annotated[str, Path(pattern=r"^task_[0-9A-HJKMNP-TV-Z]{26}$")]
Status = Literal["processing", "completed", "failed", "queued", "submitting", "running"]


@router.get("")
async def list_tasks(gw: Gw, account: Annotated[int | None, Query(ge=1, le=I32)] = None,
                     status: Status | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     after: Annotated[str | None, Query(pattern=r"^task_[0-9A-HJKMNP-TV-Z]{26}$")] = None) -> dict:
    """Tasks newest first; `status` is public (processing|completed|failed) or internal (queued|submitting|running);
    `after`: the last id of the previous page."""
    from reapi.tasks import queries

    async with gw.engine.connect() as conn:
        rows = await queries.page(conn, account, status=status, limit=limit, after=after,
                                  origin=gw.settings.public_url or "")
    return {"object": "list", "data": rows, "last_id": rows[-1]["id"] if len(rows) == limit else None}


@router.post("/{task_id}/fail")
async def fail_task(gw: Gw, task_id: TaskId) -> dict:
    """End an open task as failed (code 50001, "failed by the operator") and release its hold in full."""
    from reapi.tasks import lifecycle, queries

    done = await lifecycle.finish(gw.engine, task_id, ok=False, error_code=50001,
                                  error_message="The task was failed by the operator; nothing was charged.")
    async with gw.engine.connect() as conn:
        row = await lifecycle.get_task(conn, task_id)
    if row is None:
        raise GatewayError(404, f"Task {task_id} not found.", code="not_found")
    if done and gw.task_worker is not None:
        gw.task_worker.on_terminal()  # its webhook, if it has one, goes out now
    if not done:
        raise GatewayError(409, f"Task {task_id} has already ended ({queries.PUBLIC_STATUS[row['status']]}).",
                           code="task_ended")
    return {"id": task_id, "status": "failed", "released_credits": queries.task_view(row)["cost_credits"]}
