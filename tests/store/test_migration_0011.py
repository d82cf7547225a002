"""Migration 0011 (the public catalog's fields on models) upgrades a 0010 store with its prices intact
(every model shown, category chat, no description or tags) and goes back down (SQLite and PostgreSQL)."""
from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import text

from reapi.store.cache import load_snapshot
from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path


async def test_upgrade_from_0010_and_back(store_url):
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    await asyncio.to_thread(command.upgrade, cfg, "0010")
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO models (name, input_micro, output_micro, context_window, max_output_tokens, updated_at, "
                "created_at) VALUES ('old', 1000000, 2000000, 1000, 100, 1, 1)"))
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "head")  # the snapshot reads later columns too
        async with engine.begin() as conn:
            snap = await load_snapshot(conn)
            info = snap.info["old"]
            assert (info.description, info.category, info.tags, info.hidden) == (None, "chat", (), False)
            assert snap.prices["old"].input_micro == 1_000_000
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, "0010")
        async with engine.connect() as conn:
            cols = (await conn.execute(text("SELECT * FROM models LIMIT 0"))).keys()
            assert not {"description", "category", "tags", "hidden"} & set(cols)
            assert (await conn.execute(text("SELECT count(*) FROM models"))).scalar() == 1
    finally:
        await engine.dispose()
