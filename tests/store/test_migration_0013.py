"""Migration 0013 (overview) adds ledger_checks and ix_usage_created to a store of the revision before
it, with every usage row intact; the overview's queries then use the index; the downgrade drops both
and nothing else (SQLite and PostgreSQL)."""
import asyncio

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from reapi.store import stats
from reapi.store.db import _create_sqlite, alembic_config, create_engine, is_sqlite, sqlite_path


async def _shape(conn) -> tuple[set[str], set[str]]:
    def read(c):
        i = inspect(c)
        return set(i.get_table_names()), {ix["name"] for ix in i.get_indexes("usage")}
    return await conn.run_sync(read)


async def test_upgrade_from_the_previous_revision_and_back(store_url):
    if is_sqlite(store_url):
        _create_sqlite(sqlite_path(store_url))
    cfg = alembic_config(store_url)
    previous = ScriptDirectory.from_config(cfg).get_revision("0013").down_revision
    await asyncio.to_thread(command.upgrade, cfg, previous)
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO usage (request_id, account_id, key_id, model, \"group\", channel_id, stream, status, "
                "prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, hold_nano, cost_nano, "
                "uncollected_nano, created_at, settled_at) VALUES ('r1', 1, 1, 'm', 'default', 7, false, 'ok', "
                "1, 1, 0, 0, 10, 5, 0, 1000, 1250)"))
            tables, indexes = await _shape(conn)
        assert "ledger_checks" not in tables and "ix_usage_created" not in indexes
        await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "0013")
        async with engine.begin() as conn:
            after, after_ix = await _shape(conn)
            assert after == tables | {"ledger_checks"} and after_ix == indexes | {"ix_usage_created"}
            assert await stats.last_ledger_check(conn) is None
            for n in (1, 2):  # each check replaces the last
                await stats.save_ledger_check(conn, ran_at=n, ok=n == 1, timed_out=False, problem_count=n - 1,
                                              problems="[]", duration_ms=3, user_id=None)
            last = await stats.last_ledger_check(conn)
            assert (last["ran_at"], bool(last["ok"]), last["problem_count"]) == (2, False, 1)
            assert await stats.overview_series(conn, 0, 3_600_000, "channel") == [(0, 7, 1, 5, 0, 250, 1)]
            if is_sqlite(store_url):  # the overview's range is read through the new index
                plan = " ".join(str(r) for r in (await conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT model, count(*) FROM usage WHERE created_at >= 5 GROUP BY model")).all())
                assert "ix_usage_created" in plan, plan
        await engine.dispose()
        await asyncio.to_thread(command.downgrade, cfg, previous)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == previous
            assert await _shape(conn) == (tables, indexes)
            assert (await conn.execute(text("SELECT count(*) FROM usage"))).scalar() == 1
    finally:
        await engine.dispose()
