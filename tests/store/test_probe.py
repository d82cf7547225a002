"""reapi.store.probe: a background poll's look on SQLite before its query (issue #15: an idle task
worker's claim through aiosqlite every half second stalled the event loop ~11 ms each time)."""
import asyncio
import sqlite3

from reapi.store.db import create_engine, migrate
from reapi.store.probe import Probe

DUE = "SELECT 1 FROM meta WHERE key = ? LIMIT 1"


async def test_a_probe_says_idle_only_when_it_read_no_row(store_url):
    await asyncio.to_thread(migrate, store_url)  # alembic runs its own event loop
    engine = create_engine(store_url)
    probe = Probe(engine, DUE)
    try:
        if engine.dialect.name != "sqlite":
            assert probe.idle(("config_version",)) is False  # PostgreSQL: the poll's own query decides
            return
        assert probe.idle(("no-such-key",)) is True
        assert probe.idle(("config_version",)) is False
        db = sqlite3.connect(store_url.split(":///", 1)[1])  # a row written by someone else is seen
        db.execute("INSERT INTO meta (key, value) VALUES ('probe-test', 1)")
        db.commit()
        db.close()
        assert probe.idle(("probe-test",)) is False
        assert Probe(engine, "SELECT 1 FROM no_such_table").idle() is False  # an error: not idle
    finally:
        probe.close()
        await engine.dispose()


def test_an_in_memory_store_is_never_probed():
    from sqlalchemy.ext.asyncio import create_async_engine

    assert Probe(create_async_engine("sqlite+aiosqlite:///:memory:"), DUE).idle(("config_version",)) is False
