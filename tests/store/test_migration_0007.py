"""Migration 0007 (responses) on a store of the previous revision (0004): old rows untouched, the new table
keyed by (account_id, id) so the same id can be recorded for two accounts and only resolves for its own;
the recorder group-commits; downgrade drops the table only."""
import asyncio

from alembic import command
from sqlalchemy import text

from reapi.billing.ledger import verify
from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path
from reapi.store.responses import Recorder, Stored, find, forget, open_hold


async def test_upgrade_from_0004_adds_the_responses_table(store_url):
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    await asyncio.to_thread(command.upgrade, cfg, "0004")
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO accounts (id, name, created_at) VALUES (1, 'a', 1), (2, 'b', 2)"))
            await conn.execute(text("INSERT INTO wallets (account_id, wallet, balance_nano) VALUES "
                                    "(1, 'chat', 0), (1, 'tasks', 0), (2, 'chat', 0), (2, 'tasks', 0)"))
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "0007")
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar() == "0007"
            assert (await conn.exec_driver_sql("SELECT count(*) FROM accounts")).scalar() == 2
            assert await verify(conn) == []
        rec = Recorder(engine)
        rows = [Stored(1, "resp_same", 7, 1, "gpt-5.5", "req_a", False, 12),
                Stored(2, "resp_same", 8, 2, "gpt-5.5", "req_b", True, 34),
                Stored(1, "resp_other", 7, 1, "gpt-5.5", "req_c", False)]
        await asyncio.gather(*(rec.record(r) for r in rows))
        await rec.record(Stored(1, "resp_same", 99, 1, "evil", "req_d", True))  # a repeat never overwrites
        a, b = await find(engine, 1, "resp_same"), await find(engine, 2, "resp_same")
        assert (a.channel_id, a.request_id, a.background, a.prompt_tokens) == (7, "req_a", False, 12)
        assert (b.channel_id, b.request_id, b.background, b.prompt_tokens) == (8, "req_b", True, 34)
        assert await find(engine, 2, "resp_other") is None
        await forget(engine, 1, "resp_same")
        assert await find(engine, 1, "resp_same") is None and await find(engine, 2, "resp_same") is not None
        assert await open_hold(engine, "req_b") is None  # no pending usage row: nothing to settle
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, "0004")
        async with engine.connect() as conn:
            tables = (await conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table'" if is_sqlite(store_url) else
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
            assert "responses" not in tables and "accounts" in tables
            assert (await conn.exec_driver_sql("SELECT count(*) FROM accounts")).scalar() == 2
    finally:
        await engine.dispose()
