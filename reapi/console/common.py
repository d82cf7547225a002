"""What the console's pages share: the gateway, store transactions, signing a browser in."""
from __future__ import annotations

import re
from typing import Any, Awaitable, Callable

from reapi.web import Request
from reapi.web import sessions
from reapi.web.http import cookie


def gateway(req: Request):
    return req.gateway


async def write(req: Request, fn: Callable[..., Awaitable[Any]], *args: Any, reload: bool = False, **kw: Any) -> Any:
    """`fn(conn, ...)` in one store transaction; `reload` makes this instance see a key change at once."""
    gw = gateway(req)
    async with gw.engine.begin() as conn:
        result = await fn(conn, *args, **kw)
    if reload:
        await gw.catalog.reload()
    return result


async def read(req: Request, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> Any:
    async with gateway(req).engine.connect() as conn:
        return await fn(conn, *args, **kw)


async def sign_in_browser(req: Request, user_id: int) -> None:
    """A new session for `user_id`, its cookie set on the response (any old session ends)."""
    gw = gateway(req)
    if req.session is not None:
        await sessions.end(gw.engine, req.session.token_hash)
    async with gw.engine.begin() as conn:
        token = await sessions.start(conn, user_id, gw.settings)
    req.set_cookies.append(cookie(sessions.COOKIE, token, max_age=gw.settings.session_max_s,
                                  secure=req.secure_cookies()))


_NEXT = re.compile(r"/(?:admin/)?console(?:[/?#][\x21-\x7e]*)?")  # /console… or /admin/console…, visible ASCII


def safe_next(raw: str | None) -> str:
    """Where to go after sign-in: a path of this site's console or operator console only (never
    another site: no "//", no backslash, no "..", no scheme, no control character or space)."""
    if raw and len(raw) < 500 and _NEXT.fullmatch(raw) and not any(p in raw for p in ("//", "\\", "..")):
        return raw
    return "/console"


def mail_ready(req: Request) -> bool:
    """E-mailed links need an SMTP server and this deployment's public URL: a link is never built
    from the request's Host header (a forged Host would send a victim's reset link elsewhere)."""
    s = req.settings
    return bool(s.smtp_url and s.public_url)


def link(req: Request, path: str) -> str:
    return (req.settings.public_url or "").rstrip("/") + path
