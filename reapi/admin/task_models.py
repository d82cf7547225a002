"""/admin/task-models: the task gateway's rate card (price lists and accepted parameters)."""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import Field

from reapi.admin.common import Gw, PathName, read, write
from reapi.operations.inputs import Strict
from reapi.operations.task_models import set_task_model, task_model_view
from reapi.store import queries

router = APIRouter(prefix="/admin/task-models", tags=["task models"])


class TaskModelBody(Strict):
    """Checked in full by the operation (reapi.operations.task_models); here only its shape."""
    category: Literal["image", "video", "audio"]
    endpoint: Literal["images", "videos", "audio"] | None = None
    unit: str
    quantity: list[str] = Field(default_factory=list)
    skus: list[dict[str, Any]]
    params: dict[str, Any]
    max_seconds: int | None = None
    description: str | None = None
    tags: list[str] | None = None
    hidden: bool | None = None


@router.put("/{model}")
async def put_task_model(gw: Gw, model: PathName, body: TaskModelBody) -> dict:
    return task_model_view(await write(gw, set_task_model, model, **body.model_dump(exclude_none=True)))


@router.get("")
async def list_task_models(gw: Gw) -> dict:
    return {"object": "list", "data": [task_model_view(r) for r in await read(gw, queries.list_task_models)]}
