"""Migration 0006 (tasks) upgrades a 0004 store with its money intact, adds the task gateway's
tables, and downgrades back to 0004 only while no task is open."""
import asyncio

import pytest
from alembic import command
from sqlalchemy import text

from reapi.billing.ledger import Credit, run, verify
from reapi.store import queries
from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path


async def test_upgrade_and_downgrade(store_url):
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    await asyncio.to_thread(command.upgrade, cfg, "0004")
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            acc = await queries.create_account(conn, "old")
            await run(conn, Credit(acc["id"], 5000, wallet="tasks"))
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "0006")
        async with engine.begin() as conn:
            q = conn.exec_driver_sql
            assert (await q("SELECT version_num FROM alembic_version")).scalar() == "0006"
            assert await queries.balances(conn, acc["id"]) == {"chat": 0, "tasks": 5000}
            for table in ("tasks", "task_models", "idempotency_keys"):
                assert (await q(f"SELECT count(*) FROM {table}")).scalar() == 0
            await q("INSERT INTO tasks (id, account_id, key_id, \"group\", model, category, status, body, cost_nano, attempts, "
                    "next_at, deadline_at, created_at, updated_at) VALUES "
                    "('task_A', 1, 1, 'default', 'm', 'image', 'running', '{}', 0, 0, 1, 2, 1, 1)")
            assert await verify(conn) == []
        await engine.dispose()
        with pytest.raises(RuntimeError, match="still open"):
            await asyncio.to_thread(command.downgrade, cfg, "0004")
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE tasks SET status = 'completed'"))
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, "0004")
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar() == "0004"
            assert await queries.balances(conn, acc["id"]) == {"chat": 0, "tasks": 5000}
    finally:
        await engine.dispose()
