"""Migration 0003 upgrades a store made by the previous release (revision 0002) with every row
intact; holds taken before it (no instance) are left to the age rule, never to the lease rule."""
import asyncio
import time

from alembic import command
from sqlalchemy import text

from reapi.billing.ledger import verify
from reapi.billing.writer import BillingWriter
from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, migrate, sqlite_path

ROWS = {
    "accounts": "INSERT INTO accounts (id, name, balance_nano, created_at) VALUES (1, 'old', 9000, 1)",
    "api_keys": "INSERT INTO api_keys (id, account_id, name, key_hash, key_prefix, spent_nano, created_at) "
                "VALUES (1, 1, 'k', 'h', 'sk-x', 0, 1)",
    "usage": 'INSERT INTO usage (request_id, account_id, key_id, model, "group", channel_id, stream, status, '
             "prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, hold_nano, cost_nano, "
             "uncollected_nano, error_code, created_at, settled_at) VALUES "
             "('done', 1, 1, 'm', 'default', 1, false, 'ok', 10, 20, 0, 0, 1500, 1000, 0, NULL, 1000, 1001), "
             "('open', 1, 1, 'm', 'default', 1, true, 'pending', 0, 0, 0, 0, 1000, 0, 0, NULL, {now}, NULL)",
    "ledger": "INSERT INTO ledger (account_id, kind, amount_nano, request_id, note, created_at) VALUES "
              "(1, 'credit', 11000, NULL, 'start', 1), (1, 'hold', -1500, 'done', NULL, 1000), "
              "(1, 'release', 1500, 'done', NULL, 1001), (1, 'charge', -1000, 'done', NULL, 1001), "
              "(1, 'hold', -1000, 'open', NULL, {now})",
}


async def test_upgrade_from_0002_keeps_every_row(store_url):
    now = int(time.time() * 1000)
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    await asyncio.to_thread(command.upgrade, alembic_config(store_url), "0002")
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            for sql in ROWS.values():
                await conn.execute(text(sql.replace("{now}", str(now))))
        before = await dump(engine)
        await engine.dispose()  # (its cached `SELECT *` plans describe the old table)
        await asyncio.to_thread(command.upgrade, alembic_config(store_url), "0003")
        after = await dump(engine)
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar() == "0003"
            assert (await conn.exec_driver_sql("SELECT count(*) FROM instances")).scalar() == 0
            ids = (await conn.exec_driver_sql("SELECT instance_id FROM usage")).scalars().all()
        assert after == before
        await engine.dispose()
        await asyncio.to_thread(migrate, store_url)  # the writer below is head's
        async with engine.connect() as conn:
            assert await verify(conn) == []
        assert ids == [None, None]
        # the old pending hold has no instance: the lease rule leaves it alone, the age rule does not
        writer = BillingWriter(engine, instance_id="new-instance")
        writer.start()
        try:
            assert await writer.sweep(age_cutoff_ms=now - 1) == 0
            assert await writer.sweep(age_cutoff_ms=now + 1) == 1
        finally:
            await writer.stop()
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT status FROM usage WHERE request_id = 'open'")).scalar() \
                == "expired"
            assert (await conn.exec_driver_sql("SELECT balance_nano FROM wallets WHERE wallet = 'chat'")).scalar() \
                == 10000
            assert await verify(conn) == []
    finally:
        await engine.dispose()


async def dump(engine) -> dict:
    out = {}
    async with engine.connect() as conn:
        for table in ROWS:
            cols = [c for c in (await conn.exec_driver_sql(f"SELECT * FROM {table} LIMIT 0")).keys()
                    if c != "instance_id"]
            order = "id" if table != "usage" else "request_id"
            quoted = ", ".join('"%s"' % c for c in cols)
            out[table] = [tuple(r) for r in (await conn.exec_driver_sql(
                f"SELECT {quoted} FROM {table} ORDER BY {order}")).all()]
    return out
