"""What the operator console's pages share: store transactions (with the catalog reloaded after a
configuration change, as the admin API does) and form fields."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from reapi.errors import GatewayError
from reapi.web import Request


async def write(req: Request, fn: Callable[..., Awaitable[Any]], *args: Any, reload: bool = True, **kw: Any) -> Any:
    gw = req.gateway
    async with gw.engine.begin() as conn:
        result = await fn(conn, *args, **kw)
    if reload:
        await gw.catalog.reload()
    return result


async def read(req: Request, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> Any:
    async with req.gateway.engine.connect() as conn:
        return await fn(conn, *args, **kw)


def listed(raw: str | None) -> list[str]:
    """A comma-separated field as a list (blank items dropped)."""
    return [p.strip() for p in (raw or "").split(",") if p.strip()]


def opt(raw: str | None) -> str | None:
    raw = (raw or "").strip()
    return raw or None


def integer(raw: str | None, default: int | None = None) -> int | None:
    """An integer field; a non-number stays a string so the operation's validation names the field."""
    raw = (raw or "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        return raw  # type: ignore[return-value]


def named(err: GatewayError) -> str:
    """An operation's error for a form: its message, led by the field it names when it does not say it."""
    param = getattr(err, "param", None)
    return f"{param}: {err.message}" if param and param not in err.message else err.message
