"""/admin/models: the rate card."""
from __future__ import annotations

from fastapi import APIRouter

from reapi import operations as ops
from reapi.admin.common import Gw, PathName, read, write
from reapi.operations.inputs import ModelIn
from reapi.store import queries

router = APIRouter(prefix="/admin/models", tags=["models"])


@router.put("/{model}")
async def put_model(gw: Gw, model: PathName, body: ModelIn) -> dict:
    return ops.model_view(await write(gw, ops.set_price, model, **body.model_dump()))


@router.get("")
async def list_models(gw: Gw) -> dict:
    return {"object": "list", "data": [ops.model_view(r) for r in await read(gw, queries.list_models)]}
