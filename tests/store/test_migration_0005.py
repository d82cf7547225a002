"""Migration 0005 (users) upgrades a 0004 store with every key intact (never expiring), adds the
console's tables, and goes back down to 0004 (SQLite and PostgreSQL)."""
from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import text

from reapi.billing.ledger import verify
from reapi.operations import users
from reapi.store.cache import load_snapshot
from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path


async def test_upgrade_from_0004_and_back(store_url):
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    await asyncio.to_thread(command.upgrade, cfg, "0004")
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            old = (await conn.execute(text("INSERT INTO accounts (name, created_at) VALUES ('old', 1) "
                                           "RETURNING id"))).scalar()
            await conn.execute(text("INSERT INTO wallets (account_id, wallet, balance_nano) VALUES (:a, 'chat', 0), "
                                    "(:a, 'tasks', 0)"), {"a": old})
            await conn.execute(text(
                "INSERT INTO api_keys (account_id, name, key_hash, key_prefix, spent_nano, created_at, workspace) "
                "VALUES (:a, 'k', 'h1', 'sk-abcd', 0, 1, 'chat')"), {"a": old})
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "0005")
        await asyncio.to_thread(command.upgrade, cfg, "head")  # today's snapshot reads later revisions' columns
        async with engine.begin() as conn:
            snap = await load_snapshot(conn)
            assert snap.keys["h1"].expires_at is None and not snap.keys["h1"].expired(2**62)
            row = (await conn.execute(text("SELECT expires_at, key_last4 FROM api_keys"))).one()
            assert tuple(row) == (None, None)
            hashed = await users.hash_password("correct horse")
            u = await users.create_user(conn, "mig@example.com", hashed)
            assert u["account_id"] != old
            for table in ("sessions", "user_tokens", "auth_events"):
                assert (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar() == 0
            assert await verify(conn) == []
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, "0004")
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == "0004"
            cols = (await conn.execute(text("SELECT * FROM api_keys LIMIT 0"))).keys()
            assert "expires_at" not in cols and "key_last4" not in cols
            assert (await conn.execute(text("SELECT count(*) FROM api_keys"))).scalar() == 1
    finally:
        await engine.dispose()
