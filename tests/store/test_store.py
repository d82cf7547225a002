"""The store on SQLite and PostgreSQL: migrations match the schema, and admin changes
reach another instance sharing the store within the poll interval."""
import asyncio

import openai
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from reapi.store.db import create_engine, migrate
from reapi.store.schema import metadata
from tests.harness import Gateway, gateway_settings


async def test_migrations_match_schema(store_url):
    await asyncio.to_thread(migrate, store_url)
    await asyncio.to_thread(migrate, store_url)  # idempotent
    engine = create_engine(store_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
            groups = (await conn.exec_driver_sql("SELECT name FROM groups")).scalars().all()
    finally:
        await engine.dispose()
    assert diff == []
    assert groups == ["default"]


async def test_admin_changes_reach_another_instance(store_url, upstream):
    a = await Gateway(gateway_settings(store_url)).start()
    b = await Gateway(gateway_settings(store_url)).start()  # a second instance on the same store
    try:
        s = await a.setup(upstream)
        client_b = b.client(s["key"])
        loop = asyncio.get_running_loop()

        async def eventually(check, limit=2.0):
            deadline = loop.time() + limit
            while True:
                try:
                    return await check()
                except (AssertionError, openai.APIStatusError):
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.05)

        # new key, channel and price created through A are served by B
        await eventually(lambda: client_b.chat.completions.create(model="gpt-5.5",
                                                                  messages=[{"role": "user", "content": "hi"}]))
        # a key revoked through A is refused by B within 2 s
        await a.admin("DELETE", f"/admin/keys/{s['key_id']}", expect=200)

        async def refused():
            try:
                await client_b.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
            except openai.AuthenticationError:
                return
            raise AssertionError("revoked key still accepted")
        await eventually(refused)
        assert await a.verify() == []
    finally:
        await b.stop()
        await a.stop()
