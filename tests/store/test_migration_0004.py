"""Migration 0004 (wallets) upgrades a store made by the previous release (revision 0003) with every
balance, key, usage and ledger row intact: the old balance is the chat wallet, every account gets a
tasks wallet at 0, keys and entries are chat's, `ledger verify` is clean and money moves on it."""
import asyncio
import time

import pytest
from alembic import command
from sqlalchemy import text

from reapi.billing.ledger import Credit, Settlement, verify
from reapi.billing.writer import BillingWriter
from reapi.store import queries
from reapi.store.cache import load_snapshot
from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path

ROWS = {
    "accounts": "INSERT INTO accounts (id, name, balance_nano, created_at) VALUES (1, 'old', 8000, 1), "
                "(2, 'empty', 0, 2)",
    "api_keys": "INSERT INTO api_keys (id, account_id, name, key_hash, key_prefix, groups, models, spend_limit_nano, "
                "spent_nano, rpm, tpm, revoked_at, created_at) VALUES "
                "(1, 1, 'k', 'h1', 'sk-x', NULL, NULL, 50000, 2500, NULL, NULL, NULL, 1), "
                "(2, 1, 'gone', 'h2', 'sk-y', '[\"default\"]', '[\"m\"]', NULL, 0, 5, 100, 3, 2)",
    "usage": 'INSERT INTO usage (request_id, account_id, key_id, model, "group", channel_id, stream, status, '
             "prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, hold_nano, cost_nano, "
             "uncollected_nano, error_code, created_at, settled_at, instance_id) VALUES "
             "('done', 1, 1, 'm', 'default', 1, false, 'ok', 10, 20, 0, 0, 1500, 1000, 0, NULL, 1000, 1001, 'i1'), "
             "('fail', 1, 1, 'm', 'default', 1, false, 'failed', 0, 0, 0, 0, 700, 0, 0, 'upstream_error', 1002, "
             "1003, NULL), "
             "('open', 1, 1, 'm', 'default', 1, true, 'pending', 0, 0, 0, 0, 1500, 0, 0, NULL, {now}, NULL, 'i1')",
    "ledger": "INSERT INTO ledger (account_id, kind, amount_nano, request_id, note, created_at) VALUES "
              "(1, 'credit', 10500, NULL, 'start', 1), (1, 'hold', -1500, 'done', NULL, 1000), "
              "(1, 'release', 1500, 'done', NULL, 1001), (1, 'charge', -1000, 'done', NULL, 1001), "
              "(1, 'hold', -700, 'fail', NULL, 1002), (1, 'release', 700, 'fail', NULL, 1003), "
              "(1, 'hold', -1500, 'open', NULL, {now})",
}
# compared on their own below; 0005 adds the last two
NEW_COLUMNS = {"balance_nano", "workspace", "wallet", "expires_at", "key_last4", "webhook_url"}


async def test_upgrade_from_0003_keeps_every_balance_key_and_entry(store_url):
    now = int(time.time() * 1000)
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    await asyncio.to_thread(command.upgrade, cfg, "0003")
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            for sql in ROWS.values():
                await conn.execute(text(sql.replace("{now}", str(now))))
            if not is_sqlite(store_url):  # as if the old release had made the rows: ids from the sequences
                for table in ("accounts", "api_keys"):
                    await conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                            f"(SELECT max(id) FROM {table}))"))
        before = await dump(engine)
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "head")
        assert await dump(engine) == before
        async with engine.connect() as conn:
            q = conn.exec_driver_sql
            from alembic.script import ScriptDirectory  # the newest revision: later ones run on top of 0004

            assert (await q("SELECT version_num FROM alembic_version")).scalar() == \
                ScriptDirectory.from_config(cfg).get_current_head()
            assert [tuple(r) for r in (await q("SELECT account_id, wallet, balance_nano FROM wallets "
                                                "ORDER BY account_id, wallet")).all()] == [
                (1, "chat", 8000), (1, "tasks", 0), (2, "chat", 0), (2, "tasks", 0)]
            assert (await q("SELECT DISTINCT workspace FROM api_keys")).scalars().all() == ["chat"]
            assert (await q("SELECT DISTINCT wallet FROM ledger")).scalars().all() == ["chat"]
            assert "balance_nano" not in (await q("SELECT * FROM accounts LIMIT 0")).keys()
            assert await queries.balances(conn, 1) == {"chat": 8000, "tasks": 0}
            assert await verify(conn) == []
            snap = await load_snapshot(conn)
        assert [k.id for k in snap.keys.values()] == [1] and snap.keys["h1"].workspace == "chat"
        assert snap.task_keys == {}
        # money moves on the migrated rows: the old pending hold settles, a new account has both wallets
        writer = BillingWriter(engine, instance_id="new")
        writer.start()
        try:
            assert await writer.submit(Settlement("open", 1, 1, True, 1500, 900, 5, 5)) == 900
            assert await writer.submit(Credit(2, 42, wallet="tasks")) == 42
        finally:
            await writer.stop()
        async with engine.begin() as conn:
            fresh = (await queries.create_account(conn, "new"))["id"]
            assert await queries.balances(conn, fresh) == {"chat": 0, "tasks": 0}
        async with engine.connect() as conn:
            assert await queries.balances(conn, 1) == {"chat": 8600, "tasks": 0}
            assert (await conn.exec_driver_sql("SELECT spent_nano FROM api_keys WHERE id = 1")).scalar() == 1900
            assert await verify(conn) == []
        await engine.dispose()
        # downgrade: refused while a tasks wallet holds money, else the chat wallet is the balance again
        with pytest.raises(RuntimeError, match="not everything is chat's"):
            await asyncio.to_thread(command.downgrade, cfg, "0003")
        async with engine.begin() as conn:
            await conn.exec_driver_sql("UPDATE wallets SET balance_nano = 0 WHERE wallet = 'tasks'")
            await conn.exec_driver_sql("DELETE FROM ledger WHERE wallet = 'tasks'")
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, "0003")
        async with engine.connect() as conn:
            assert [tuple(r) for r in (await conn.exec_driver_sql(
                "SELECT id, balance_nano FROM accounts ORDER BY id")).all()] == [(1, 8600), (2, 0), (3, 0)]
    finally:
        await engine.dispose()


async def dump(engine) -> dict:
    """Every old row, without the columns 0004 adds or drops."""
    out = {}
    async with engine.connect() as conn:
        for table in ROWS:
            cols = [c for c in (await conn.exec_driver_sql(f"SELECT * FROM {table} LIMIT 0")).keys()
                    if c not in NEW_COLUMNS]
            order = "id" if table != "usage" else "request_id"
            quoted = ", ".join('"%s"' % c for c in cols)
            out[table] = [tuple(r) for r in (await conn.exec_driver_sql(
                f"SELECT {quoted} FROM {table} ORDER BY {order}")).all()]
    return out
