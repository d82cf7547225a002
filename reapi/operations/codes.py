"""Redemption codes as operators and customers use them: mint a batch, list it masked, redeem one.

The rules of a code (its form, its hash, once ever) are in reapi.payments.codes; this module checks
the operator's values (amount, count, wallet, expiry, note) and turns them into store units.
"""
from __future__ import annotations

import math
from datetime import date, datetime, timezone
from typing import Any

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reapi.billing.money import format_usd
from reapi.errors import GatewayError, bad_request
from reapi.limits import Limiter
from reapi.operations import money
from reapi.operations.inputs import Money, Strict, Wallet, checked
from reapi.payments import codes

MAX_COUNT = 1000  # codes per batch
MAX_CODE_USD = 100_000  # face value of one code


class CodesIn(Strict):
    amount_usd: Money
    count: int = Field(ge=1, le=MAX_COUNT)
    wallet: Wallet = "chat"
    expires_at: str | None = Field(default=None, max_length=40)
    note: str | None = Field(default=None, max_length=500)


def parse_expiry(value: str | None, now_ms: int) -> int | None:
    """"2027-01-01" (the start of that day, UTC) or an ISO 8601 time -> ms; must be in the future."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            t = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        else:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if t.tzinfo is None:
                t = t.replace(tzinfo=timezone.utc)
    except ValueError:
        raise bad_request("expires_at must be a date (2027-01-01) or an ISO 8601 time.", param="expires_at") from None
    ms = int(t.timestamp() * 1000)
    if ms <= now_ms:
        raise bad_request("expires_at must be in the future.", param="expires_at")
    return ms


async def create_codes(conn: AsyncConnection, amount_usd: str | int, count: int, *, wallet: str = "chat",
                       expires_at: str | None = None, note: str | None = None) -> dict:
    """A batch of `count` codes of `amount_usd` each; the answer has the codes (shown once)."""
    spec: Any = checked(CodesIn, amount_usd=amount_usd, count=count, wallet=wallet, expires_at=expires_at, note=note)
    amount = money.usd(spec.amount_usd, "amount_usd")
    if amount > MAX_CODE_USD * 10**9:
        raise bad_request(f"amount_usd must be at most {MAX_CODE_USD}.", param="amount_usd")
    expiry = parse_expiry(spec.expires_at, codes.now_ms())
    m = await codes.mint(conn, amount, spec.count, spec.wallet, expires_at=expiry, note=spec.note)
    return {"batch": m.batch, "codes": m.codes, "amount_nano": amount, "amount_usd": format_usd(amount),
            "count": len(m.codes), "wallet": m.wallet, "expires_at": m.expires_at, "note": m.note}


async def list_codes(conn: AsyncConnection, limit: int = 100, before_id: int | None = None,
                     redeemed: bool | None = None) -> list[dict]:
    """Codes newest first, masked; `redeemed` True/False: only the used/unused ones."""
    return await codes.list_codes(conn, limit, before_id, redeemed)


async def redeem_code(conn: AsyncConnection, account_id: int, code: str) -> codes.Redeemed:
    """Redeem `code` for `account_id` in the caller's transaction (see payments.codes.redeem)."""
    return await codes.redeem(conn, account_id, code)


async def redeem_throttled(engine: AsyncEngine, limiter: Limiter, account_id: int, code: str) -> codes.Redeemed:
    """A customer's redemption: first the account's attempt budget (payments.codes.redeem_rule, in
    `limiter`: shared through Redis when the gateway has it), then the redemption in its own
    transaction. Raises GatewayError 429 redeem_throttled, or as payments.codes.redeem."""
    decision = await limiter.admit([codes.redeem_rule(account_id)], 0)
    if not decision.allowed:
        wait = max(1, math.ceil(decision.retry_after_s))
        raise GatewayError(429, f"Too many redemption attempts. Try again in {wait} s.", type="requests",
                           param="code", code="redeem_throttled", headers={"retry-after": str(wait)})
    async with engine.begin() as conn:
        return await codes.redeem(conn, account_id, code)
