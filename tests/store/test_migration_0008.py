"""Migration 0008 (model aliases) upgrades a store of revision 0004 with every price intact: each model
gets no aliases and its updated_at as the date it was added; the snapshot serves it; aliases then
stored resolve in the snapshot; the downgrade drops both columns and keeps the prices."""
import asyncio

from alembic import command
from sqlalchemy import text

from reapi import operations as ops
from reapi.store.cache import load_snapshot
from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path

PRICES = ("INSERT INTO models (name, input_micro, output_micro, cached_input_micro, cache_write_micro, "
          "context_window, max_output_tokens, lc_threshold_tokens, lc_input_milli, lc_output_milli, updated_at) "
          "VALUES ('claude-sonnet-4-6', 3000000, 15000000, 300000, 3750000, 200000, 64000, NULL, NULL, NULL, "
          "1767225600000), ('gpt-5.5', 5000000, 30000000, 500000, NULL, 1000000, 128000, 272000, 2000, 1500, "
          "1767312000123)")
OLD = ("SELECT name, input_micro, output_micro, cached_input_micro, cache_write_micro, context_window, "
       "max_output_tokens, lc_threshold_tokens, lc_input_milli, lc_output_milli, updated_at FROM models ORDER BY name")


async def test_upgrade_from_0004_keeps_every_price_and_dates_it(store_url):
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    await asyncio.to_thread(command.upgrade, cfg, "0004")
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(PRICES))
            before = [tuple(r) for r in (await conn.exec_driver_sql(OLD)).all()]
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "0008")
        async with engine.begin() as conn:
            q = conn.exec_driver_sql
            assert (await q("SELECT version_num FROM alembic_version")).scalar() == "0008"
            assert [tuple(r) for r in (await q(OLD)).all()] == before
            assert [tuple(r) for r in (await q("SELECT name, aliases, created_at FROM models ORDER BY name"))
                    .all()] == [("claude-sonnet-4-6", None, 1767225600000), ("gpt-5.5", None, 1767312000123)]
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "head")  # today's snapshot reads later revisions' columns
        async with engine.begin() as conn:
            snap = await load_snapshot(conn)
            assert snap.created == {"claude-sonnet-4-6": 1767225600, "gpt-5.5": 1767312000}
            assert snap.aliases == {}
            # a re-price keeps the date the model was added; its aliases resolve in the next snapshot
            await ops.set_price(conn, "claude-sonnet-4-6", input_usd_per_mtok="3", output_usd_per_mtok="15",
                                context_window=200000, max_output_tokens=64000, aliases=["sonnet"])
            snap = await load_snapshot(conn)
            assert snap.created["claude-sonnet-4-6"] == 1767225600
            assert snap.aliases == {"sonnet": "claude-sonnet-4-6"}
            assert snap.prices["sonnet"] is snap.prices["claude-sonnet-4-6"]
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, "0004")
        async with engine.connect() as conn:
            cols = set((await conn.exec_driver_sql("SELECT * FROM models LIMIT 0")).keys())
            assert "aliases" not in cols and "created_at" not in cols
            rows = (await conn.exec_driver_sql("SELECT name, input_micro FROM models ORDER BY name")).all()
            assert [tuple(r) for r in rows] == [("claude-sonnet-4-6", 3000000), ("gpt-5.5", 5000000)]
    finally:
        await engine.dispose()
