"""Migration 0010 (top-ups) adds its three tables to a store made by the previous release (0004)
without touching its rows, works at once (a code is minted and redeemed on the migrated store), and
downgrades one step back on SQLite and PostgreSQL."""
import asyncio

from alembic import command
from sqlalchemy import text

from reapi.billing.ledger import verify
from reapi.operations import codes as code_ops
from reapi.store import queries
from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path

TABLES = ("redemption_codes", "topups", "stripe_events")


async def test_upgrade_from_0004_and_back(store_url):
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    await asyncio.to_thread(command.upgrade, cfg, "0004")
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            acc = (await queries.create_account(conn, "old"))["id"]
            await conn.execute(text("UPDATE wallets SET balance_nano = 500 WHERE wallet = 'chat'"))
            await conn.execute(text(f"INSERT INTO ledger (account_id, kind, amount_nano, created_at, wallet) "
                                    f"VALUES ({acc}, 'credit', 500, 1, 'chat')"))
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "0010")  # later revisions have their own tests
        async with engine.begin() as conn:
            assert (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar() == "0010"
            for t in TABLES:
                assert (await conn.exec_driver_sql(f"SELECT count(*) FROM {t}")).scalar() == 0
            [code] = (await code_ops.create_codes(conn, "1.00", 1))["codes"]
            await code_ops.redeem_code(conn, acc, code)
        async with engine.connect() as conn:
            assert await queries.balances(conn, acc) == {"chat": 1_000_000_500, "tasks": 0}
            assert await verify(conn) == []
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, "-1")  # to the revision 0010 revises
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar() != "0010"
            for t in TABLES:
                exists = (await conn.exec_driver_sql(
                    f"SELECT count(*) FROM sqlite_master WHERE name = '{t}'" if is_sqlite(store_url) else
                    f"SELECT count(*) FROM information_schema.tables WHERE table_name = '{t}'")).scalar()
                assert exists == 0
            assert await queries.balances(conn, acc) == {"chat": 1_000_000_500, "tasks": 0}
    finally:
        await engine.dispose()
