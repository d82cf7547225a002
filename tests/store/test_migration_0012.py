"""Migration 0012 (key webhooks) adds api_keys.webhook_url to a store of the revision before it
(0010 on this branch; whatever the chain puts there after a merge) with every key intact and
without a default webhook, a key made afterwards keeps its default, and the downgrade drops the
column and nothing else (SQLite and PostgreSQL)."""
import asyncio

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from reapi import operations as ops
from reapi.billing.ledger import verify
from reapi.store.cache import hash_key, load_snapshot
from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path


async def _columns(conn) -> list[str]:
    return list((await conn.execute(text("SELECT * FROM api_keys LIMIT 0"))).keys())


async def test_upgrade_from_the_previous_revision_and_back(store_url):
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    previous = ScriptDirectory.from_config(cfg).get_revision("0012").down_revision
    await asyncio.to_thread(command.upgrade, cfg, previous)
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            old = (await conn.execute(text("INSERT INTO accounts (name, created_at) VALUES ('old', 1) "
                                           "RETURNING id"))).scalar()
            await conn.execute(text("INSERT INTO wallets (account_id, wallet, balance_nano) VALUES (:a, 'chat', 0), "
                                    "(:a, 'tasks', 0)"), {"a": old})
            await conn.execute(text(
                "INSERT INTO api_keys (account_id, name, key_hash, key_prefix, spent_nano, created_at, workspace) "
                "VALUES (:a, 'k', 'h1', 'rk_live_abcd', 0, 1, 'tasks')"), {"a": old})
            before = await _columns(conn)
        assert "webhook_url" not in before
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "head")  # the snapshot reads the current schema
        async with engine.begin() as conn:
            assert await _columns(conn) == before + ["webhook_url"]
            snap = await load_snapshot(conn)
            assert snap.task_keys["h1"].webhook_url is None  # an old key gets no webhook of its own
            k = await ops.create_key(conn, old, name="hooked", workspace="tasks",
                                     webhook_url="https://hooks.example.com/reapi")
            assert k["webhook_url"] == "https://hooks.example.com/reapi"
            snap = await load_snapshot(conn)
            assert snap.task_keys[hash_key(k["key"])].webhook_url == "https://hooks.example.com/reapi"
            assert await verify(conn) == []
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, previous)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == previous
            assert await _columns(conn) == before
            assert (await conn.execute(text("SELECT count(*) FROM api_keys"))).scalar() == 2
    finally:
        await engine.dispose()
