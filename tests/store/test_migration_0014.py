"""Migration 0014 adds task_models.tags and task_models.hidden to a store of the revision before it, with
its task models intact (tags none, listed); the downgrade drops both and nothing else (SQLite and
PostgreSQL)."""
import asyncio

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path


async def _columns(conn) -> set[str]:
    return await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("task_models")})


async def test_upgrade_from_the_previous_revision_and_back(store_url):
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    previous = ScriptDirectory.from_config(cfg).get_revision("0014").down_revision
    await asyncio.to_thread(command.upgrade, cfg, previous)
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO task_models (name, category, endpoint, unit, quantity, skus, params, max_seconds, "
                "description, updated_at) VALUES ('m', 'image', 'images', 'image', '[]', "
                "'[{\"when\": {}, \"nano_per_unit\": 1000}]', '{\"type\": \"object\", \"properties\": {}}', 60, "
                "'d', 1)"))
            before = await _columns(conn)
        assert not {"tags", "hidden"} & before
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "0014")
        async with engine.connect() as conn:
            assert await _columns(conn) == before | {"tags", "hidden"}
            row = (await conn.execute(text("SELECT name, tags, hidden, description FROM task_models"))).one()
            assert (row[0], row[1], bool(row[2]), row[3]) == ("m", None, False, "d")
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, previous)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == previous
            assert await _columns(conn) == before
            assert (await conn.execute(text("SELECT count(*) FROM task_models"))).scalar() == 1
    finally:
        await engine.dispose()
