"""Each account's webhook signing secret: made on first use, shown to its owner, rotated.

Stored as is in webhook_secrets (see reapi.store.schema: HMAC needs the key itself and the
console shows it). `rotate_secret` makes a new one; the old one keeps signing as well (a second
v1 signature in the same header) for ROTATION_GRACE_S, so receivers can switch over.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reapi.billing.ledger import now_ms
from reapi.webhooks.signing import new_secret

ROTATION_GRACE_S = 24 * 3600

_CREATE = text("INSERT INTO webhook_secrets (account_id, secret, created_at) VALUES (:a, :s, :t) "
               "ON CONFLICT (account_id) DO NOTHING")
_READ = text("SELECT secret, previous_secret, previous_until FROM webhook_secrets WHERE account_id = :a")
_ROTATE = text("UPDATE webhook_secrets SET previous_secret = secret, previous_until = :until, secret = :s, "
               "rotated_at = :t WHERE account_id = :a")


async def _ensure(conn: AsyncConnection, account_id: int) -> tuple[str, str | None, int | None]:
    row = (await conn.execute(_READ, {"a": account_id})).first()
    if row is None:
        await conn.execute(_CREATE, {"a": account_id, "s": new_secret(), "t": now_ms()})
        row = (await conn.execute(_READ, {"a": account_id})).first()
    return row[0], row[1], row[2]


async def secret(engine: AsyncEngine, account_id: int) -> str:
    """The account's current secret (made now if it has none)."""
    async with engine.begin() as conn:
        return (await _ensure(conn, account_id))[0]


async def rotate_secret(engine: AsyncEngine, account_id: int) -> str:
    """A new current secret; the previous one also signs for ROTATION_GRACE_S more."""
    async with engine.begin() as conn:
        await _ensure(conn, account_id)
        new, ts = new_secret(), now_ms()
        await conn.execute(_ROTATE, {"a": account_id, "s": new, "t": ts, "until": ts + ROTATION_GRACE_S * 1000})
        return new


async def signing_secrets(conn: AsyncConnection, account_id: int, at_ms: int) -> list[str]:
    """The secrets that sign a message now: the current one, and the previous one in its grace."""
    current, previous, until = await _ensure(conn, account_id)
    return [current] + ([previous] if previous and until is not None and until > at_ms else [])
