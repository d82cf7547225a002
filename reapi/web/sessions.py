"""Server-side sessions: one `sessions` row per signed-in browser.

The cookie carries a random token; the store keeps only its sha256, so neither a copy of the
store nor its logs open a session. A session ends at idle expiry (REAPI_SESSION_IDLE_S since
it was last seen), at absolute expiry (REAPI_SESSION_MAX_S after sign-in), at sign-out, or when
its user's password changes (every other session then ends). Rows live in the store, so a
sign-out on one instance ends the session on all of them.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reapi.settings import Settings
from reapi.store import schema

COOKIE = "reapi_session"
TOUCH_EVERY_MS = 60_000  # last_seen_at is written at most once a minute per session
S, U = schema.sessions, schema.users


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Session:
    token_hash: str
    csrf_token: str
    user: dict  # id, email, account_id, is_admin, verified_at


async def start(conn: AsyncConnection, user_id: int, settings: Settings) -> str:
    """A new session for `user_id` (inside the caller's transaction); returns the cookie's token."""
    token = secrets.token_urlsafe(32)
    ts = now_ms()
    await conn.execute(insert(S).values(token_hash=token_hash(token), user_id=user_id,
                                        csrf_token=secrets.token_urlsafe(32), created_at=ts, last_seen_at=ts,
                                        expires_at=ts + settings.session_max_s * 1000))
    return token


async def load(engine: AsyncEngine, token: str, settings: Settings) -> Session | None:
    """The live session of a cookie token, or None (unknown, idle too long, past its end)."""
    if not token or len(token) > 128:
        return None
    h = token_hash(token)
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(S.c.csrf_token, S.c.last_seen_at, S.c.expires_at, U.c.id, U.c.email, U.c.account_id,
                   U.c.is_admin, U.c.verified_at)
            .select_from(S.join(U, U.c.id == S.c.user_id)).where(S.c.token_hash == h))).mappings().first()
    if row is None:
        return None
    ts = now_ms()
    if ts >= row["expires_at"] or ts >= row["last_seen_at"] + settings.session_idle_s * 1000:
        await end(engine, h)
        return None
    if ts - row["last_seen_at"] >= TOUCH_EVERY_MS:
        async with engine.begin() as conn:
            await conn.execute(update(S).where(S.c.token_hash == h).values(last_seen_at=ts))
    user = {"id": row["id"], "email": row["email"], "account_id": row["account_id"],
            "is_admin": bool(row["is_admin"]), "verified_at": row["verified_at"]}
    return Session(h, row["csrf_token"], user)


async def end(engine: AsyncEngine, hashed: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(S).where(S.c.token_hash == hashed))

