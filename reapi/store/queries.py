"""Admin-side reads and writes. Every write that changes what the hot path sees
bumps the config version in the same transaction (see reapi.store.cache)."""
from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.store import schema
from reapi.store.cache import bump_version, hash_key

C, M, G, A, K, U, L = (schema.channels, schema.models, schema.groups, schema.accounts, schema.api_keys,
                       schema.usage, schema.ledger)


def now_ms() -> int:
    return int(time.time() * 1000)


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


# --- channels ---------------------------------------------------------------------------

def channel_row(r) -> dict:
    """A channel as the admin API, the CLI and the operator console show it: never with its api_key
    nor its base_url (both write-only: no upstream key, URL or host leaves the store)."""
    return {"id": r["id"], "name": r["name"], "type": r["type"],
            "models": orjson.loads(r["models"]), "groups": orjson.loads(r["groups"]),
            "model_map": orjson.loads(r["model_map"]), "priority": r["priority"], "weight": r["weight"],
            "enabled": bool(r["enabled"]), "created_at": r["created_at"], "updated_at": r["updated_at"]}


async def create_channel(conn: AsyncConnection, v: dict) -> int:
    ts = now_ms()
    cid = (await conn.execute(insert(C).values(
        name=v["name"], type=v["type"], base_url=v["base_url"].rstrip("/"), api_key=v["api_key"],
        models=_json(v["models"]), groups=_json(v["groups"]), model_map=_json(v["model_map"]),
        priority=v["priority"], weight=v["weight"], enabled=v["enabled"], created_at=ts, updated_at=ts,
    ).returning(C.c.id))).scalar_one()
    await bump_version(conn)
    return cid


async def list_channels(conn: AsyncConnection) -> list[dict]:
    return [channel_row(r) for r in (await conn.execute(select(C).order_by(C.c.id))).mappings()]


async def get_channel(conn: AsyncConnection, cid: int) -> dict | None:
    r = (await conn.execute(select(C).where(C.c.id == cid))).mappings().first()
    return channel_row(r) if r else None


async def update_channel(conn: AsyncConnection, cid: int, changes: dict) -> bool:
    values: dict[str, Any] = {}
    for k, v in changes.items():
        values[k] = _json(v) if k in ("models", "groups", "model_map") else v
    if "base_url" in values:
        values["base_url"] = values["base_url"].rstrip("/")
    values["updated_at"] = now_ms()
    n = (await conn.execute(update(C).where(C.c.id == cid).values(**values))).rowcount
    if n:
        await bump_version(conn)
    return bool(n)


async def delete_channel(conn: AsyncConnection, cid: int) -> bool:
    n = (await conn.execute(delete(C).where(C.c.id == cid))).rowcount
    if n:
        await bump_version(conn)
    return bool(n)


# --- models (rate card) -----------------------------------------------------------------

async def put_model(conn: AsyncConnection, name: str, v: dict) -> None:
    now = now_ms()
    values = dict(v, updated_at=now)
    exists = (await conn.execute(select(M.c.name).where(M.c.name == name))).first()
    if exists:
        await conn.execute(update(M).where(M.c.name == name).values(**values))
    else:
        await conn.execute(insert(M).values(name=name, created_at=now, **values))
    await bump_version(conn)


async def model_names(conn: AsyncConnection) -> dict[str, str]:
    """Every name on the rate card, the models' own and their aliases, -> the model it names."""
    out: dict[str, str] = {}
    for name, aliases in (await conn.execute(select(M.c.name, M.c.aliases))).all():
        out[name] = name
        for alias in orjson.loads(aliases) if aliases else ():
            out[alias] = name
    return out


async def get_model(conn: AsyncConnection, name: str) -> dict | None:
    row = (await conn.execute(select(M).where(M.c.name == name))).mappings().first()
    return dict(row) if row else None


async def list_models(conn: AsyncConnection) -> list[dict]:
    return [dict(r) for r in (await conn.execute(select(M).order_by(M.c.name))).mappings()]


# --- groups -----------------------------------------------------------------------------

async def put_group(conn: AsyncConnection, name: str, v: dict) -> None:
    values = dict(v, updated_at=now_ms())
    exists = (await conn.execute(select(G.c.name).where(G.c.name == name))).first()
    if exists:
        await conn.execute(update(G).where(G.c.name == name).values(**values))
    else:
        await conn.execute(insert(G).values(name=name, **values))
    await bump_version(conn)


async def list_groups(conn: AsyncConnection) -> list[dict]:
    rows = [dict(r) for r in (await conn.execute(select(G).order_by(G.c.name))).mappings()]
    for r in rows:
        r.pop("updated_at", None)
    return rows


# --- accounts and keys ------------------------------------------------------------------

async def create_account(conn: AsyncConnection, name: str) -> dict:
    """A new account with each of its wallets (schema.WALLETS) at 0."""
    r = dict((await conn.execute(insert(A).values(name=name, created_at=now_ms()).returning(A))).mappings().one())
    await conn.execute(insert(schema.wallets), [{"account_id": r["id"], "wallet": w, "balance_nano": 0}
                                                 for w in schema.WALLETS])
    return r


async def get_account(conn: AsyncConnection, account_id: int) -> dict | None:
    r = (await conn.execute(select(A).where(A.c.id == account_id))).mappings().first()
    return dict(r) if r else None


async def balances(conn: AsyncConnection, account_id: int) -> dict[str, int]:
    """The account's balance per wallet in nano-USD, e.g. {"chat": 5, "tasks": 0} ({} for no such account)."""
    W = schema.wallets
    rows = await conn.execute(select(W.c.wallet, W.c.balance_nano).where(W.c.account_id == account_id)
                              .order_by(W.c.wallet))
    return {w: n for w, n in rows}


KEY_PREFIXES = {"chat": "sk-", "tasks": "rk_live_"}  # a key's workspace shows in its first characters


def new_secret(workspace: str = "chat") -> str:
    return KEY_PREFIXES[workspace] + secrets.token_urlsafe(36)


async def create_key(conn: AsyncConnection, account_id: int, v: dict) -> tuple[int, str]:
    """A new key of v["workspace"] (default "chat"); returns (id, secret). Only the hash is stored."""
    workspace = v.get("workspace", "chat")
    secret = new_secret(workspace)
    values: dict[str, Any] = {"workspace": workspace} if workspace != "chat" else {}  # chat: the column default
    kid = (await conn.execute(insert(K).values(
        account_id=account_id, name=v["name"], key_hash=hash_key(secret),
        key_prefix=secret[:len(KEY_PREFIXES[workspace]) + 4],
        groups=None if v.get("groups") is None else _json(v["groups"]),
        models=None if v.get("models") is None else _json(v["models"]),
        spend_limit_nano=v.get("spend_limit_nano"), spent_nano=0, rpm=v.get("rpm"), tpm=v.get("tpm"),
        expires_at=v.get("expires_at"), key_last4=secret[-4:], created_at=now_ms(),
        webhook_url=v.get("webhook_url"),
        **values).returning(K.c.id))).scalar_one()
    await bump_version(conn)
    return kid, secret


async def list_keys(conn: AsyncConnection, account_id: int) -> list[dict]:
    rows = (await conn.execute(select(K).where(K.c.account_id == account_id).order_by(K.c.id))).mappings()
    out = []
    for r in rows:
        d = dict(r)
        d.pop("key_hash")
        d["groups"] = None if d["groups"] is None else orjson.loads(d["groups"])
        d["models"] = None if d["models"] is None else orjson.loads(d["models"])
        out.append(d)
    return out


async def revoke_key(conn: AsyncConnection, key_id: int) -> bool:
    n = (await conn.execute(update(K).where(K.c.id == key_id, K.c.revoked_at.is_(None))
                            .values(revoked_at=now_ms()))).rowcount
    if n:
        await bump_version(conn)
    return bool(n)


async def key_account(conn: AsyncConnection, key_id: int) -> int | None:
    """The account a key belongs to (None: no such key)."""
    return (await conn.execute(select(K.c.account_id).where(K.c.id == key_id))).scalar()


async def keys_last_used(conn: AsyncConnection, account_id: int) -> dict[int, int]:
    """key id -> the time of its newest call, from the account's usage rows (ix_usage_account_created)."""
    rows = await conn.execute(select(U.c.key_id, func.max(U.c.created_at)).where(U.c.account_id == account_id)
                              .group_by(U.c.key_id))
    return {k: t for k, t in rows}


async def key_exists(conn: AsyncConnection, key_id: int) -> bool:
    return (await conn.execute(select(K.c.id).where(K.c.id == key_id))).first() is not None


# --- usage and ledger -------------------------------------------------------------------

async def find_accounts(conn: AsyncConnection, q: str, limit: int = 50) -> list[dict]:
    """Accounts whose id is `q`, or whose name or user e-mail contains it (every account for ""), newest
    first, with their balances (nano-USD per wallet)."""
    A, W, Us = schema.accounts, schema.wallets, schema.users
    stmt = select(A.c.id, A.c.name, A.c.created_at).order_by(A.c.id.desc()).limit(limit)
    if q:
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        cond = A.c.name.ilike(like, escape="\\") | A.c.id.in_(
            select(Us.c.account_id).where(Us.c.email.ilike(like, escape="\\")))
        if q.isdigit() and len(q) < 10:
            cond = cond | (A.c.id == int(q))
        stmt = stmt.where(cond)
    rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
    if rows:
        ids = [r["id"] for r in rows]
        bal: dict[int, dict[str, int]] = {}
        for aid, wallet, nano in (await conn.execute(select(W.c.account_id, W.c.wallet, W.c.balance_nano)
                                                      .where(W.c.account_id.in_(ids)))).all():
            bal.setdefault(aid, {})[wallet] = nano
        for r in rows:
            r["balances"] = {w: bal.get(r["id"], {}).get(w, 0) for w in schema.WALLETS}
    return rows


async def usage_by_request(conn: AsyncConnection, request_id: str) -> dict | None:
    r = (await conn.execute(select(U).where(U.c.request_id == request_id))).mappings().first()
    return dict(r) if r else None


async def list_usage(conn: AsyncConnection, account_id: int, limit: int, before_id: int | None) -> list[dict]:
    q = select(U).where(U.c.account_id == account_id)
    if before_id is not None:
        q = q.where(U.c.id < before_id)
    rows = (await conn.execute(q.order_by(U.c.id.desc()).limit(limit))).mappings()
    return [dict(r) for r in rows]


async def recent_tasks(conn: AsyncConnection, account_id: int, limit: int = 50) -> list[dict]:
    """The account's newest tasks (ix_tasks_account_created): id, model, state, cost, created."""
    T = schema.tasks
    q = (select(T.c.id, T.c.model, T.c.status, T.c.cost_nano, T.c.created_at).where(T.c.account_id == account_id)
         .order_by(T.c.created_at.desc(), T.c.id.desc()).limit(limit))
    return [dict(r) for r in (await conn.execute(q)).mappings()]


async def list_ledger(conn: AsyncConnection, account_id: int, limit: int, before_id: int | None) -> list[dict]:
    q = select(L).where(L.c.account_id == account_id)
    if before_id is not None:
        q = q.where(L.c.id < before_id)
    rows = (await conn.execute(q.order_by(L.c.id.desc()).limit(limit))).mappings()
    return [dict(r) for r in rows]


# --- task models (the task gateway's rate card) -----------------------------------------

async def put_task_model(conn: AsyncConnection, name: str, v: dict) -> None:
    TM = schema.task_models
    values = dict(v, updated_at=now_ms())
    exists = (await conn.execute(select(TM.c.name).where(TM.c.name == name))).first()
    if exists:
        await conn.execute(update(TM).where(TM.c.name == name).values(**values))
    else:
        await conn.execute(insert(TM).values(name=name, **values))
    await bump_version(conn)


async def list_task_models(conn: AsyncConnection) -> list[dict]:
    TM = schema.task_models
    return [dict(r) for r in (await conn.execute(select(TM).order_by(TM.c.name))).mappings()]
