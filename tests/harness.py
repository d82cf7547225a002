"""Real components for tests: the demo upstream and the gateway on real sockets.

Nothing of ours is mocked: the gateway runs under uvicorn in the test's event
loop, talks to the demo upstream over loopback, and stores to a real SQLite file
or a fresh PostgreSQL database.
"""
from __future__ import annotations

import asyncio
import os
import socket
import uuid

import aiohttp
import uvicorn

from reapi.app import LimitedHttpProtocol, create_app
from reapi.mock_upstream import MockConfig, bound_port, start_mock
from reapi.settings import Settings
from reapi.store.db import migrate

ADMIN_KEY = "test-admin-key"
UPSTREAM_KEY = "upstream-secret-key-123"
PG_ADMIN_DSN = os.environ.get("REAPI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    """A TCP port nothing listens on right now, for servers the tests start themselves."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    def __init__(self, runner) -> None:
        self.runner = runner
        self.port = bound_port(runner)
        self.url = f"http://127.0.0.1:{self.port}"

    async def requests(self) -> list[dict]:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/_mock/requests") as r:
            return await r.json()

    async def stats(self) -> dict:
        async with aiohttp.ClientSession() as s, s.get(self.url + "/_mock/stats") as r:
            return await r.json()


async def start_upstream(**kw) -> Upstream:
    return Upstream(await start_mock("127.0.0.1", 0, MockConfig(api_key=UPSTREAM_KEY, **kw)))


async def create_pg_database() -> str:
    import asyncpg

    name = "reapi_test_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name


async def drop_pg_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class Gateway:
    """A running gateway plus small helpers to configure it through the admin API."""

    def __init__(self, settings: Settings, http=LimitedHttpProtocol) -> None:
        self.settings = settings
        self.http_protocol = http  # the protocol `reapi serve` uses; "httptools" for uvicorn's own
        self.app = create_app(settings)
        self.gw = self.app.gateway
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task | None = None
        self.url = ""
        self.http: aiohttp.ClientSession | None = None
        self.clients: list = []

    async def start(self) -> "Gateway":
        await asyncio.to_thread(migrate, self.settings.database_url)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, lifespan="on", log_level="warning",
                                access_log=False, http=self.http_protocol,
                                # a stuck shutdown ends in bounded time (its tasks cancelled) instead of hanging the suite
                                timeout_graceful_shutdown=15)
        self.server = uvicorn.Server(config)
        self.task = asyncio.get_running_loop().create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        for c in self.clients:
            await c.close()
        if self.http:
            await self.http.close()
        if self.server:
            self.server.should_exit = True
            await self.task

    async def admin(self, method: str, path: str, json=None, expect: int | None = None) -> dict:
        async with self.http.request(method, self.url + path, json=json,
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as r:
            body = await r.json(content_type=None)
            if expect is not None:
                assert r.status == expect, (r.status, body)
            return body

    async def raw(self, method: str, path: str, *, json=None, data=None, headers=None):
        async with self.http.request(method, self.url + path, json=json, data=data, headers=headers or {}) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()

    async def setup(self, upstream: Upstream, *, model: str = "gpt-5.5", balance: str = "10.00",
                    price: dict | None = None, channel: dict | None = None, key: dict | None = None) -> dict:
        """A priced model served by one channel to the demo upstream, a funded account and a key."""
        await self.admin("PUT", f"/admin/models/{model}", price or {
            "input_usd_per_mtok": "5.00", "output_usd_per_mtok": "30.00", "cached_input_usd_per_mtok": "0.50",
            "context_window": 1_000_000, "max_output_tokens": 128_000,
            "long_context": {"threshold_tokens": 272_000, "input_multiplier": "2", "output_multiplier": "1.5"}},
            expect=200)
        ch = await self.admin("POST", "/admin/channels", {
            "name": "mock", "type": "openai", "base_url": upstream.url + "/v1", "api_key": UPSTREAM_KEY,
            "models": [model], **(channel or {})}, expect=201)
        acc = await self.admin("POST", "/admin/accounts", {"name": "acme"}, expect=201)
        if balance != "0":
            await self.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": balance}, expect=201)
        k = await self.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k", **(key or {})}, expect=201)
        return {"account_id": acc["id"], "key": k["key"], "key_id": k["id"], "channel_id": ch["id"]}

    def client(self, key: str, **kw):
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kw)
        self.clients.append(client)
        return client

    async def balance(self, account_id: int) -> str:
        return (await self.admin("GET", f"/admin/accounts/{account_id}"))["balance_usd"]

    async def usage(self, account_id: int) -> list[dict]:
        return (await self.admin("GET", f"/admin/accounts/{account_id}/usage"))["data"]

    async def verify(self) -> list[str]:
        from reapi.billing.ledger import verify

        async with self.gw.engine.connect() as conn:
            return await verify(conn)


def gateway_settings(database_url: str, **kw) -> Settings:
    return Settings(database_url=database_url, admin_key=ADMIN_KEY, config_poll_ms=200, **kw)
