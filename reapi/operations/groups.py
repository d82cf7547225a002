"""Groups: the rate limits of a channel pool."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.operations.inputs import GroupIn, NameIn, checked
from reapi.store import queries


async def set_group(conn: AsyncConnection, name: str, *, rpm: int | None = None, tpm: int | None = None,
                    total_rpm: int | None = None, total_tpm: int | None = None) -> dict:
    """Create or replace a group's limits (None = unlimited); returns the group as stored."""
    checked(NameIn, {"name": "group"}, name=name)
    limits = checked(GroupIn, rpm=rpm, tpm=tpm, total_rpm=total_rpm, total_tpm=total_tpm).model_dump()
    await queries.put_group(conn, name, limits)
    return {"name": name, **limits}
