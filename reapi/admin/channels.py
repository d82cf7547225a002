"""/admin/channels: upstream channels."""
from __future__ import annotations

from fastapi import APIRouter

from reapi import operations as ops
from reapi.catalog import TASK_CHANNEL_TYPES
from reapi.admin.common import Gw, Id, read, write
from reapi.operations.inputs import ChannelIn, ChannelPatch, not_found
from reapi.store import queries

router = APIRouter(prefix="/admin/channels", tags=["channels"])


@router.post("", status_code=201)
async def create_channel(gw: Gw, body: ChannelIn) -> dict:
    cid = await write(gw, ops.create_channel, **body.model_dump())
    return await read(gw, queries.get_channel, cid)


@router.get("")
async def list_channels(gw: Gw) -> dict:
    return {"object": "list", "data": await read(gw, queries.list_channels)}


@router.get("/{cid}")
async def get_channel(gw: Gw, cid: Id) -> dict:
    ch = await read(gw, queries.get_channel, cid)
    if ch is None:
        raise not_found("Channel", cid)
    return {**ch, "health": gw.health.state(cid)}


@router.patch("/{cid}")
async def patch_channel(gw: Gw, cid: Id, body: ChannelPatch) -> dict:
    await write(gw, ops.update_channel, cid, **body.model_dump(exclude_unset=True))
    return await read(gw, queries.get_channel, cid)


@router.delete("/{cid}")
async def delete_channel(gw: Gw, cid: Id) -> dict:
    await write(gw, ops.delete_channel, cid)
    return {"id": cid, "deleted": True}


@router.post("/{cid}/test")
async def test_channel(gw: Gw, cid: Id) -> dict:
    """One tiny real call through the channel."""
    from reapi.relay.probe import probe_channel

    ch = gw.catalog.snapshot.channels.get(cid)
    if ch is None:
        raise not_found("Channel", cid)
    if ch.type in TASK_CHANNEL_TYPES:
        return {"ok": False, "model": None, "code": "not_probed",
                "message": "Task channels are not probed: a probe would start a paid upstream task."}
    return await probe_channel(gw, ch)
