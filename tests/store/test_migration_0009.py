"""Migration 0009 (webhooks) adds its three tables to a store of the revision before it (0004 on
this branch; whatever the chain puts there after a merge) with every row intact, and its
downgrade removes exactly them."""
import asyncio

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path

TABLES = {"webhook_secrets", "webhook_deliveries", "webhook_attempts"}


async def _tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_from_0004_and_back(store_url):
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    previous = ScriptDirectory.from_config(cfg).get_revision("0009").down_revision
    await asyncio.to_thread(command.upgrade, cfg, previous)
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'a', 1)"))
            await conn.execute(text("INSERT INTO wallets (account_id, wallet, balance_nano) VALUES (1, 'tasks', 5)"))
        before = await _tables(engine)
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "0009")
        assert await _tables(engine) == before | TABLES
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT balance_nano FROM wallets"))).scalar() == 5
            await conn.execute(text(
                "INSERT INTO webhook_deliveries (id, account_id, task_id, url, payload, status, attempts, next_at, "
                "created_at) VALUES ('msg_1', 1, 'task_1', 'http://h/x', '{}', 'pending', 0, 1, 1)"))
            await conn.execute(text("INSERT INTO webhook_attempts (delivery_id, n, at, status_code, duration_ms) "
                                    "VALUES ('msg_1', 1, 2, 500, 3)"))
            await conn.execute(text("INSERT INTO webhook_secrets (account_id, secret, created_at) "
                                    "VALUES (1, 'whsec_x', 1)"))
            indexes = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("webhook_deliveries")})
        assert indexes == {"ix_webhook_deliveries_task", "ix_webhook_deliveries_due"}
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, previous)
        assert await _tables(engine) == before
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == previous
            assert (await conn.execute(text("SELECT balance_nano FROM wallets"))).scalar() == 5
    finally:
        await engine.dispose()
