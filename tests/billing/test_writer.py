"""Money batches against trouble: a locked SQLite file, a dropped PostgreSQL connection."""
import asyncio
import sqlite3
import threading
import time

from reapi.store.db import sqlite_path


async def test_a_locked_database_is_waited_for_off_the_event_loop(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    path = sqlite_path(gateway.settings.database_url)
    locked, release = threading.Event(), threading.Event()

    def hold_write_lock():  # another process (or the CLI) writing for a while
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(10)
        conn.execute("COMMIT")
        conn.close()

    locker = asyncio.get_running_loop().run_in_executor(None, hold_write_lock)
    await asyncio.get_running_loop().run_in_executor(None, locked.wait, 10)
    started = time.monotonic()
    call = asyncio.ensure_future(client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi [mock words=3]"}]))
    # While the hold waits for the lock, the loop keeps answering other requests promptly.
    slowest = 0.0
    for _ in range(10):
        t = time.monotonic()
        st, _, _ = await gateway.raw("GET", "/healthz")
        slowest = max(slowest, time.monotonic() - t)
        assert st == 200
        await asyncio.sleep(0.03)
    assert not call.done()  # still waiting for the write lock
    assert slowest < 0.2, slowest
    release.set()
    await locker
    resp = await asyncio.wait_for(call, 10)
    assert resp.usage.completion_tokens == 3
    assert time.monotonic() - started >= 0.3
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok"
    assert await gateway.verify() == []


async def test_postgres_writer_replaces_a_dropped_connection(upstream):
    # PostgreSQL restarts or a proxy drops idle connections: the next money batch fails on the dead
    # connection, is retried on a new one, and the client never sees it.
    import asyncpg

    from tests.harness import Gateway, create_pg_database, drop_pg_database, gateway_settings

    url = await create_pg_database()
    gw = await Gateway(gateway_settings(url)).start()
    try:
        s = await gw.setup(upstream)
        client = gw.client(s["key"])
        body = dict(model="gpt-5.5", messages=[{"role": "user", "content": "hi [mock words=2]"}])
        await client.chat.completions.create(**body)
        conn = await asyncpg.connect(url)
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        finally:
            await conn.close()
        assert killed >= 1
        resp = await client.chat.completions.create(**body)
        assert resp.usage.completion_tokens == 2
        recs = await gw.usage(s["account_id"])
        assert [r["status"] for r in recs] == ["ok", "ok"]
        assert await gw.verify() == []
    finally:
        await gw.stop()
        await drop_pg_database(url)


async def test_a_settlement_writes_its_stored_response_row_in_its_own_batch(store_url):
    """A Responses call's id row goes in with its charge (one commit per call); the same row again,
    or on a hold that is already closed, is no error and leaves one row."""
    from sqlalchemy import text

    from reapi.billing.ledger import HoldRequest, Settlement, verify
    from reapi.billing.writer import BillingWriter
    from reapi.operations.accounts import create_account, create_key
    from reapi.store.db import create_engine, migrate
    from reapi.store.responses import Stored, values

    await asyncio.to_thread(migrate, store_url)
    engine = create_engine(store_url)
    writer = BillingWriter(engine, instance_id="test-instance")
    writer.start()
    try:
        async with engine.begin() as conn:
            acc = await create_account(conn, "acme", credit_usd="1.00")
            key = await create_key(conn, acc["id"])
        hold = await writer.submit(HoldRequest("req_1", acc["id"], key["id"], None, "gpt-5.5", "default", None,
                                               False, 1000, lambda _: None))
        row = values(Stored(acc["id"], "resp_abc", 7, key["id"], "gpt-5.5", "req_1", False, prompt_tokens=12,
                            created_at=1234))
        settle = Settlement("req_1", acc["id"], key["id"], False, hold.amount, 400, 12, 3, stored_response=row)
        assert await writer.submit(settle) == 400
        assert await writer.submit(settle) is None  # closed already: nothing charged twice, no error
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT account_id, id, channel_id, key_id, model, request_id, background, prompt_tokens, "
                "created_at FROM responses"))).all()
            assert [tuple(r) for r in rows] == [(acc["id"], "resp_abc", 7, key["id"], "gpt-5.5", "req_1",
                                                 False, 12, 1234)]
            assert await verify(conn) == []
    finally:
        await writer.stop()
        await engine.dispose()


async def test_postgres_hold_batches_commit_without_waiting_for_the_flush_and_the_rest_wait():
    """REAPI_PG_HOLD_COMMIT=async: a batch of holds only runs on a synchronous_commit=off connection;
    a settlement's batch on a durable one. With sync, every batch waits."""
    from reapi.billing.ledger import HoldRequest, Settlement, verify
    from reapi.billing.writer import PostgresBatches
    from reapi.operations.accounts import create_account, create_key
    from reapi.store.db import create_engine, migrate
    from tests.harness import create_pg_database, drop_pg_database

    url = await create_pg_database()
    engine = create_engine(url)
    try:
        await asyncio.to_thread(migrate, url)
        async with engine.begin() as conn:
            acc = await create_account(conn, "acme", credit_usd="1.00")
            key = await create_key(conn, acc["id"])
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        for async_holds, hold_mode in ((True, "off"), (False, "on")):
            batches = PostgresBatches(dsn, "test-instance", async_holds=async_holds)
            rid = f"req_{hold_mode}"
            [held] = await batches.run([HoldRequest(rid, acc["id"], key["id"], None, "gpt-5.5", "default", None,
                                                    False, 1000, lambda _: None)])
            assert held.ok
            used = (batches._idle_async or batches._idle)[0]
            assert await used.fetchval("SHOW synchronous_commit") == hold_mode
            [charged] = await batches.run([Settlement(rid, acc["id"], key["id"], False, held.amount, 300, 5, 5)])
            assert charged == 300
            assert await batches._idle[0].fetchval("SHOW synchronous_commit") == "on"
            assert len(batches._idle_async) == (1 if async_holds else 0)
            await batches.close()
        async with engine.connect() as conn:
            assert await verify(conn) == []
    finally:
        await engine.dispose()
        await drop_pg_database(url)
