"""Upstream channels: create, change, delete."""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.errors import bad_request
from reapi.operations.inputs import ChannelIn, ChannelPatch, checked, not_found
from reapi.store import queries


def _known_type(type: str) -> None:
    from reapi.gateway import ADAPTERS  # the adapter registry (moving to reapi.relay.registry)

    from reapi.catalog import TASK_CHANNEL_TYPES  # the task gateway's channel types (reapi.tasks.providers)

    if type not in ADAPTERS and type not in TASK_CHANNEL_TYPES:
        raise bad_request(f"Unknown channel type '{type}'.", param="type")


async def create_channel(conn: AsyncConnection, *, name: str, type: str, base_url: str, api_key: str,
                         models: Sequence[str], groups: Sequence[str] = ("default",), priority: int = 0,
                         weight: int = 1, model_map: dict[str, str] | None = None, enabled: bool = True) -> int:
    """A new channel; returns its id. Raises GatewayError(400) naming a bad field."""
    spec = checked(ChannelIn, name=name, type=type, base_url=base_url, api_key=api_key, models=list(models),
                   groups=list(groups), priority=priority, weight=weight, model_map=model_map or {},
                   enabled=enabled)
    _known_type(spec.type)
    return await queries.create_channel(conn, spec.model_dump())


async def update_channel(conn: AsyncConnection, channel_id: int, **changes: Any) -> None:
    """Change the given fields of a channel (none may be null). Raises 400, or 404 for no such channel."""
    bad = next((k for k, v in changes.items() if v is None), None)
    if bad is not None:
        raise bad_request("Fields cannot be set to null.", param=bad)
    spec = checked(ChannelPatch, **changes)
    if spec.type is not None:
        _known_type(spec.type)
    if not await queries.update_channel(conn, channel_id, spec.model_dump(exclude_unset=True)):
        raise not_found("Channel", channel_id)


async def delete_channel(conn: AsyncConnection, channel_id: int) -> None:
    if not await queries.delete_channel(conn, channel_id):
        raise not_found("Channel", channel_id)

