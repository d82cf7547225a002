"""/admin/groups: rate limits per group."""
from __future__ import annotations

from fastapi import APIRouter

from reapi import operations as ops
from reapi.admin.common import Gw, PathName, read, write
from reapi.operations.inputs import GroupIn
from reapi.store import queries

router = APIRouter(prefix="/admin/groups", tags=["groups"])

UNLIMITED = {"rpm": None, "tpm": None, "total_rpm": None, "total_tpm": None}


@router.put("/{group}")
async def put_group(gw: Gw, group: PathName, body: GroupIn) -> dict:
    return await write(gw, ops.set_group, group, **body.model_dump())


@router.get("")
async def list_groups(gw: Gw) -> dict:
    rows = await read(gw, queries.list_groups)
    if not any(r["name"] == "default" for r in rows):  # `default` always exists
        rows.insert(0, {"name": "default", **UNLIMITED})
    return {"object": "list", "data": rows}
