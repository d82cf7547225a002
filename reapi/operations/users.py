"""Console users: sign-up, sign-in with its throttle, passwords, e-mailed single-use tokens.

A user owns one account (created with it: both wallets, REAPI_SIGNUP_CREDIT_USD as a ledger
credit into chat). Passwords are hashed with argon2id (argon2-cffi's defaults: 64 MiB, 3 passes)
in a worker thread and never inside a store transaction (SQLite's write lock would wait for it).
So the callers hash first (`hash_password`) and then run the writing operation in a transaction.

Failed sign-ins are counted per e-mail and per client address in `auth_events` (the store, so
every instance sees them): the 11th failure within 10 minutes, and every attempt after it until
the window clears, gets 429 with the seconds to wait. An unknown e-mail and a wrong password
get the same status and message, and cost the same argon2 verification.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reapi.errors import GatewayError, bad_request
from reapi.operations.accounts import create_account
from reapi.store import schema

U, S, T, E = schema.users, schema.sessions, schema.user_tokens, schema.auth_events

PASSWORD_MIN, PASSWORD_MAX = 8, 1024
EMAIL_MAX = 254
EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})+$")
LOGIN_FAILURES, LOGIN_WINDOW_MS = 10, 10 * 60_000  # more failures than this in the window: 429
SIGNUP_WINDOW_MS = 3600_000
RESET_TTL_MS = 3600_000  # a password-reset link works once, for an hour
VERIFY_TTL_MS = 7 * 86400_000
RESETS_PER_HOUR = 5  # reset mails per e-mail address
HASHER = PasswordHasher()  # argon2id
BAD_CREDENTIALS = "The e-mail or password is not right."


def now_ms() -> int:
    return int(time.time() * 1000)


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normal_email(raw: str) -> str:
    """The e-mail as stored (trimmed, lower-cased). Raises 400 naming `email`."""
    email = (raw or "").strip().lower()
    if len(email) > EMAIL_MAX or not EMAIL.match(email):
        raise bad_request("Enter a valid e-mail address.", param="email")
    return email


def check_password(password: str) -> str:
    if len(password or "") < PASSWORD_MIN:
        raise bad_request(f"The password must have at least {PASSWORD_MIN} characters.", param="password")
    if len(password) > PASSWORD_MAX:
        raise bad_request(f"The password must have at most {PASSWORD_MAX} characters.", param="password")
    return password


async def hash_password(password: str) -> str:
    """argon2id of a password that passes the rules (400 otherwise), computed off the event loop."""
    return await asyncio.to_thread(HASHER.hash, check_password(password))


_DUMMY: list[str] = []


async def password_matches(stored: str | None, password: str) -> bool:
    """Verify off the event loop; an unknown user (stored None) costs the same verification."""
    if stored is None:
        if not _DUMMY:
            _DUMMY.append(await asyncio.to_thread(HASHER.hash, secrets.token_urlsafe(16)))
        stored = _DUMMY[0]
        password = password + "\x00never"
    try:
        return await asyncio.to_thread(HASHER.verify, stored, password[:PASSWORD_MAX])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def user_view(r) -> dict:
    return {"id": r["id"], "email": r["email"], "account_id": r["account_id"], "is_admin": bool(r["is_admin"]),
            "verified": r["verified_at"] is not None, "created_at": r["created_at"]}


async def find_user(conn: AsyncConnection, email: str) -> dict | None:
    r = (await conn.execute(select(U).where(U.c.email == email.strip().lower()))).mappings().first()
    return dict(r) if r else None


async def get_user(conn: AsyncConnection, user_id: int) -> dict | None:
    r = (await conn.execute(select(U).where(U.c.id == user_id))).mappings().first()
    return dict(r) if r else None


async def list_users(conn: AsyncConnection, limit: int = 100, before_id: int | None = None) -> list[dict]:
    q = select(U)
    if before_id is not None:
        q = q.where(U.c.id < before_id)
    return [user_view(r) for r in (await conn.execute(q.order_by(U.c.id.desc()).limit(limit))).mappings()]


async def create_user(conn: AsyncConnection, email: str, password_hash: str, *, is_admin: bool = False,
                      verified: bool = True, credit_usd: str | None = None) -> dict:
    """A user with a new account (both wallets; `credit_usd` > 0 as the chat wallet's first
    credit). Raises 400 for a bad e-mail and 409 `email_taken` when it is registered already."""
    email = normal_email(email)
    if await find_user(conn, email) is not None:
        raise GatewayError(409, "An account with this e-mail exists already; sign in instead.",
                           param="email", code="email_taken")
    credit = credit_usd if credit_usd is not None and Decimal(str(credit_usd) or "0") != 0 else None
    acc = await create_account(conn, email[:200], credit_usd=credit, note="sign-up credit")
    ts = now_ms()
    uid = (await conn.execute(insert(U).values(
        account_id=acc["id"], email=email, password_hash=password_hash, is_admin=is_admin,
        verified_at=ts if verified else None, created_at=ts, password_changed_at=ts).returning(U.c.id))).scalar_one()
    return {"id": uid, "email": email, "account_id": acc["id"], "is_admin": is_admin, "verified": verified,
            "created_at": ts}


async def set_password(conn: AsyncConnection, user_id: int, password_hash: str, *, keep_session: str | None = None
                       ) -> int:
    """Store a new password hash and end every session of the user but `keep_session` (a token
    hash); returns how many sessions ended. Raises 404 for no such user."""
    n = (await conn.execute(update(U).where(U.c.id == user_id)
                            .values(password_hash=password_hash, password_changed_at=now_ms()))).rowcount
    if not n:
        raise GatewayError(404, f"User {user_id} not found.", code="not_found")
    return await end_sessions(conn, user_id, keep=keep_session)


async def end_sessions(conn: AsyncConnection, user_id: int, keep: str | None = None) -> int:
    q = delete(S).where(S.c.user_id == user_id)
    if keep is not None:
        q = q.where(S.c.token_hash != keep)
    return (await conn.execute(q)).rowcount


# --- the throttles ------------------------------------------------------------------------

async def _recent(conn: AsyncConnection, kind: str, subject: str, since: int) -> tuple[int, int | None]:
    """(count, oldest created_at) of `kind` events for `subject` since `since`."""
    row = (await conn.execute(select(func.count(), func.min(E.c.created_at))
                              .where(E.c.kind == kind, E.c.subject == subject, E.c.created_at >= since))).one()
    return row[0], row[1]


async def record(conn: AsyncConnection, kind: str, subject: str) -> None:
    ts = now_ms()
    await conn.execute(insert(E).values(kind=kind, subject=subject[:EMAIL_MAX], created_at=ts))
    # events older than a day count for nothing: this subject's go now, everyone's now and then
    await conn.execute(delete(E).where(E.c.kind == kind, E.c.subject == subject[:EMAIL_MAX],
                                       E.c.created_at < ts - 86400_000))
    if secrets.randbelow(100) == 0:
        await conn.execute(delete(E).where(E.c.created_at < ts - 86400_000))


def too_many(wait_ms: int, what: str) -> GatewayError:
    wait = max(1, -(-wait_ms // 1000))
    return GatewayError(429, f"Too many {what}. Try again in {wait} seconds.", type="rate_limit_error",
                        code="too_many_attempts", headers={"retry-after": str(wait)})


async def _check(conn: AsyncConnection, kind: str, subject: str, limit: int, window_ms: int, what: str) -> None:
    ts = now_ms()
    count, oldest = await _recent(conn, kind, subject[:EMAIL_MAX], ts - window_ms)
    if count >= limit and oldest is not None:
        raise too_many(oldest + window_ms - ts, what)


async def sign_in(engine: AsyncEngine, email: str, password: str, address: str) -> dict:
    """The user whose e-mail and password these are. 401 `invalid_credentials` otherwise (the
    same for an unknown e-mail), 429 `too_many_attempts` after LOGIN_FAILURES failures in 10
    minutes for this e-mail or this client address; 403 `email_unverified` for a user whose
    e-mail link was not followed yet (told only to someone who knows the password)."""
    email = (email or "").strip().lower()[:EMAIL_MAX]
    async with engine.connect() as conn:
        await _check(conn, "login_addr", address, LOGIN_FAILURES, LOGIN_WINDOW_MS, "failed sign-ins")
        if email:
            await _check(conn, "login_email", email, LOGIN_FAILURES, LOGIN_WINDOW_MS, "failed sign-ins")
        user = await find_user(conn, email) if email else None
    ok = await password_matches(user["password_hash"] if user else None, password or "")
    if not ok or user is None:
        async with engine.begin() as conn:
            await record(conn, "login_addr", address)
            if email:
                await record(conn, "login_email", email)
        raise GatewayError(401, BAD_CREDENTIALS, code="invalid_credentials")
    if user["verified_at"] is None:
        raise GatewayError(403, "Confirm your e-mail address first: follow the link we sent you.",
                           code="email_unverified")
    async with engine.begin() as conn:  # a success clears this e-mail's failures (not the address's)
        await conn.execute(delete(E).where(E.c.kind == "login_email", E.c.subject == email))
    return user_view(user)


async def check_signup_rate(conn: AsyncConnection, address: str, per_hour: int) -> None:
    await _check(conn, "signup_addr", address, per_hour, SIGNUP_WINDOW_MS, "sign-ups from this address")


async def sign_up(engine: AsyncEngine, rule: "SignUp", email: str, password: str, address: str,
                  credit_usd: str | None) -> dict:
    """A sign-up from a client address, by the deployment's rule: 403 `signup_closed`, 429 past
    `rule.per_hour` sign-ups from the address in an hour (a refused one for a registered e-mail
    counts too, so the form cannot be used to test many addresses), 400 for a bad e-mail or
    password, 409 `email_taken`. In `verify` mode the user waits for its link: the result then
    has `verify_token` (to mail; only its hash is stored)."""
    signup_allowed(rule)
    async with engine.connect() as conn:
        await check_signup_rate(conn, address, rule.per_hour)
    normal_email(email)
    hashed = await hash_password(password)
    verify = rule.mode == "verify"
    try:
        async with engine.begin() as conn:
            user = await create_user(conn, email, hashed, verified=not verify, credit_usd=credit_usd)
            await record(conn, "signup_addr", address)
            if verify:
                user["verify_token"] = await new_token(conn, user["id"], "verify")
    except GatewayError as err:
        if err.code == "email_taken":
            async with engine.begin() as conn:
                await record(conn, "signup_addr", address)
        raise
    return user


# --- e-mailed single-use tokens -----------------------------------------------------------

async def new_token(conn: AsyncConnection, user_id: int, purpose: str) -> str:
    """A single-use token for `purpose` ("reset": 1 h, "verify": 7 days); only its hash is stored."""
    token = secrets.token_urlsafe(32)
    ts = now_ms()
    ttl = RESET_TTL_MS if purpose == "reset" else VERIFY_TTL_MS
    await conn.execute(insert(T).values(token_hash=sha256(token), user_id=user_id, purpose=purpose, created_at=ts,
                                        expires_at=ts + ttl))
    return token


async def use_token(conn: AsyncConnection, token: str, purpose: str) -> int:
    """Spend a token (once, ever: the UPDATE is the race's referee); returns its user id.
    Raises 400 `invalid_token` for an unknown, used or expired one."""
    if not token or len(token) > 128:
        raise _bad_token()
    h, ts = sha256(token), now_ms()
    row = (await conn.execute(select(T.c.user_id).where(T.c.token_hash == h, T.c.purpose == purpose,
                                                        T.c.used_at.is_(None), T.c.expires_at > ts))).first()
    if row is None:
        raise _bad_token()
    n = (await conn.execute(update(T).where(T.c.token_hash == h, T.c.used_at.is_(None)).values(used_at=ts))).rowcount
    if n != 1:
        raise _bad_token()
    return row[0]


def _bad_token() -> GatewayError:
    return GatewayError(400, "This link is not valid: it was used already, it has expired, or it is incomplete.",
                        code="invalid_token")


async def token_is_live(conn: AsyncConnection, token: str, purpose: str) -> bool:
    if not token or len(token) > 128:
        return False
    row = (await conn.execute(select(T.c.user_id).where(T.c.token_hash == sha256(token), T.c.purpose == purpose,
                                                        T.c.used_at.is_(None), T.c.expires_at > now_ms()))).first()
    return row is not None


async def reset_password(conn: AsyncConnection, token: str, password_hash: str) -> int:
    """Spend a reset token and set the password; every session of the user ends. Returns the user id."""
    uid = await use_token(conn, token, "reset")
    await set_password(conn, uid, password_hash)
    await conn.execute(update(U).where(U.c.id == uid, U.c.verified_at.is_(None)).values(verified_at=now_ms()))
    return uid


async def verify_email(conn: AsyncConnection, token: str) -> int:
    uid = await use_token(conn, token, "verify")
    await conn.execute(update(U).where(U.c.id == uid, U.c.verified_at.is_(None)).values(verified_at=now_ms()))
    return uid


async def reset_request(conn: AsyncConnection, email: str, address: str, per_hour: int) -> tuple[dict, str] | None:
    """A reset token for the user of `email`, or None when there is no such user or this e-mail had
    RESETS_PER_HOUR links in the last hour (the page says the same either way). Throttled per
    client address like sign-ups (429)."""
    await _check(conn, "reset_addr", address, per_hour, SIGNUP_WINDOW_MS, "reset requests from this address")
    await record(conn, "reset_addr", address)
    try:
        email = normal_email(email)
    except GatewayError:
        return None
    user = await find_user(conn, email)
    if user is None:
        return None
    count, _ = await _recent(conn, "reset_email", email, now_ms() - SIGNUP_WINDOW_MS)
    if count >= RESETS_PER_HOUR:
        return None
    await record(conn, "reset_email", email)
    return user_view(user), await new_token(conn, user["id"], "reset")


@dataclass(frozen=True)
class SignUp:
    """The deployment's sign-up rule (from reapi.settings)."""
    mode: str  # open | verify | closed
    mail: bool  # can we send the verification mail
    per_hour: int = 5  # sign-ups per client address and hour


def signup_allowed(rule: SignUp) -> None:
    if rule.mode == "closed":
        raise GatewayError(403, "Sign-up is closed on this deployment: ask its operator for an account.",
                           code="signup_closed")
    if rule.mode == "verify" and not rule.mail:
        raise GatewayError(403, "Sign-up needs e-mail verification, and this deployment cannot send mail yet: "
                                "ask its operator for an account.", code="signup_closed")
