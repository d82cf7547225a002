"""What every admin router shares: the gateway of this process, store access, path types, times."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Awaitable, Callable

from fastapi import Depends, Path, Query, Request

from reapi.gateway import Gateway
from reapi.operations.inputs import I32, NAME_MAX, NAME_PATTERN

Id = Annotated[int, Path(ge=1, le=I32)]
PathName = Annotated[str, Path(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=1000)]
BeforeId = Annotated[int | None, Query(ge=1, le=I32)]


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


Gw = Annotated[Gateway, Depends(gateway)]


async def write(gw: Gateway, fn: Callable[..., Awaitable[Any]], *args: Any, reload: bool = True, **kw: Any) -> Any:
    """`fn(conn, *args, **kw)` in one transaction; then, with `reload`, this instance sees its own
    change at once (the others within REAPI_CONFIG_POLL_MS)."""
    async with gw.engine.begin() as conn:
        result = await fn(conn, *args, **kw)
    if reload:
        await gw.catalog.reload()
    return result


async def read(gw: Gateway, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> Any:
    async with gw.engine.connect() as conn:
        return await fn(conn, *args, **kw)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def page(rows: list[dict], limit: int, view: Callable[[dict], dict]) -> dict:
    """A list answer, newest first, with the cursor for the next page (None on the last)."""
    return {"object": "list", "data": [view(r) for r in rows],
            "next_before_id": rows[-1]["id"] if len(rows) == limit else None}
