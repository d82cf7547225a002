"""Redemption codes: minted in batches, shown once, stored as sha256 only, each credits once, ever.

A code is "RC-" and 16 characters of Crockford's base32 (80 bits from the OS's CSPRNG) in groups
of four: RC-7K3M-Q9XD-2HVA-8WEN. Typing is forgiving: case, spaces and dashes do not matter, and
O/I/L read as 0/1/1. Redeeming is one transaction: a conditional UPDATE (... WHERE redeemed_at IS
NULL) that only one redeemer can win, a `topups` row and the ledger credit (ref "code_<id>").
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.billing.ledger import Credit
from reapi.billing.ledger import run as ledger_run
from reapi.billing.money import MAX_NANO
from reapi.errors import GatewayError
from reapi.limits import Rule
from reapi.store import schema

RC = schema.redemption_codes
T = schema.topups
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
BODY_CHARS = 16  # 16 x 5 bits = 80 bits
_READS_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
MAX_INPUT = 64  # longer input is not a code: refused before hashing
# Redemption attempts per account: a burst of 10, then one every 6 s (guessing 80 bits is hopeless).
REDEEM_PER_MINUTE = 10


def now_ms() -> int:
    return int(time.time() * 1000)


def new_code() -> str:
    return shown("".join(secrets.choice(ALPHABET) for _ in range(BODY_CHARS)))


def canonical(text: str) -> str | None:
    """The code's 16 characters as typed by a human (any case, spaces, dashes, O for 0), or None."""
    if not isinstance(text, str) or len(text) > MAX_INPUT:
        return None
    s = "".join(text.split()).upper().replace("-", "")
    if s.startswith("RC"):
        s = s[2:]
    s = s.translate(_READS_AS)
    if len(s) != BODY_CHARS or any(c not in ALPHABET for c in s):
        return None
    return s


def shown(body: str) -> str:
    """The 16 characters as printed: RC-XXXX-XXXX-XXXX-XXXX."""
    return "RC-" + "-".join(body[i:i + 4] for i in range(0, BODY_CHARS, 4))


def code_hash(body: str) -> str:
    """sha256 hex of the printed form: all the store keeps of a code."""
    return hashlib.sha256(shown(body).encode()).hexdigest()


def redeem_rule(account_id: int) -> Rule:
    """The throttle of an account's redemption attempts (checked by the caller's limiter)."""
    return Rule(f"redeem:{account_id}", rpm=REDEEM_PER_MINUTE, tpm=None)


@dataclass(frozen=True)
class Minted:
    batch: str
    codes: list[str]  # shown once
    amount_nano: int
    wallet: str
    expires_at: int | None
    note: str | None


async def mint(conn: AsyncConnection, amount_nano: int, count: int, wallet: str, *, expires_at: int | None = None,
               note: str | None = None) -> Minted:
    """`count` new codes worth `amount_nano` each for `wallet` (values checked by the caller)."""
    batch = "b_" + secrets.token_hex(6)
    ts = now_ms()
    codes: list[str] = []
    rows = []
    while len(codes) < count:
        code = new_code()
        if code in codes:
            continue
        codes.append(code)
        rows.append({"code_hash": code_hash(canonical(code) or ""), "last4": code[-4:], "batch": batch,
                     "amount_nano": amount_nano, "wallet": wallet, "note": note, "created_at": ts,
                     "expires_at": expires_at})
    await conn.execute(insert(RC), rows)
    return Minted(batch, codes, amount_nano, wallet, expires_at, note)


async def list_codes(conn: AsyncConnection, limit: int, before_id: int | None = None,
                     redeemed: bool | None = None) -> list[dict]:
    """Codes newest first, without their hash (masked: the last 4 characters only); `redeemed`:
    only the used (True) or the unused (False) ones."""
    q = select(RC.c.id, RC.c.last4, RC.c.batch, RC.c.amount_nano, RC.c.wallet, RC.c.note, RC.c.created_at,
               RC.c.expires_at, RC.c.redeemed_at, RC.c.redeemed_by)
    if before_id is not None:
        q = q.where(RC.c.id < before_id)
    if redeemed is not None:
        q = q.where(RC.c.redeemed_at.is_not(None) if redeemed else RC.c.redeemed_at.is_(None))
    return [dict(r) for r in (await conn.execute(q.order_by(RC.c.id.desc()).limit(limit))).mappings()]


def _refused(status: int, message: str, code: str) -> GatewayError:
    return GatewayError(status, message, type="invalid_request_error", param="code", code=code)


INVALID = _refused(400, "This is not a valid redemption code.", "code_invalid")
USED = _refused(400, "This code has already been redeemed.", "code_redeemed")
EXPIRED = _refused(400, "This code has expired.", "code_expired")
FULL = _refused(400, "This code would take the balance above the largest the store holds.", "invalid_value")


@dataclass(frozen=True)
class Redeemed:
    code_id: int
    topup_id: int
    wallet: str
    amount_nano: int
    balance_nano: int


async def redeem(conn: AsyncConnection, account_id: int, text: str) -> Redeemed:
    """Credit the code's amount to `account_id`'s wallet, once ever, in the caller's transaction.
    Raises GatewayError: code_invalid (unknown or malformed), code_redeemed, code_expired; or 404
    for no account. On any refusal the caller's transaction must roll back (it moved nothing)."""
    body = canonical(text)
    if body is None:
        raise INVALID
    row = (await conn.execute(select(RC).where(RC.c.code_hash == code_hash(body)))).mappings().first()
    if row is None:
        raise INVALID
    ts = now_ms()
    if row["redeemed_at"] is not None:
        raise USED
    if row["expires_at"] is not None and row["expires_at"] <= ts:
        raise EXPIRED
    won = (await conn.execute(update(RC).where(RC.c.id == row["id"], RC.c.redeemed_at.is_(None))
                              .values(redeemed_at=ts, redeemed_by=account_id))).rowcount
    if won != 1:  # another redeemer's transaction committed first
        raise USED
    topup_id = (await conn.execute(insert(T).values(
        account_id=account_id, wallet=row["wallet"], amount_nano=row["amount_nano"], method="code", status="paid",
        code_id=row["id"], created_at=ts, completed_at=ts).returning(T.c.id))).scalar_one()
    balance = (await conn.execute(select(schema.wallets.c.balance_nano).where(
        schema.wallets.c.account_id == account_id, schema.wallets.c.wallet == row["wallet"]))).scalar()
    if balance is None:
        raise GatewayError(404, f"Account {account_id} not found.", code="not_found")
    if balance + row["amount_nano"] > MAX_NANO:
        raise FULL
    new = await ledger_run(conn, Credit(account_id, row["amount_nano"], f"code …{row['last4']}", wallet=row["wallet"],
                                        ref=f"code_{row['id']}"))
    if new is None:
        raise GatewayError(404, f"Account {account_id} not found.", code="not_found")
    return Redeemed(row["id"], topup_id, row["wallet"], row["amount_nano"], new)
