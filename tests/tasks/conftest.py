import pytest

from reapi.tasks.demo_models import DEMO_TASK_MODELS
from tests.harness import UPSTREAM_KEY, Gateway, gateway_settings, start_upstream


class TaskGateway:
    """A gateway with the task models, one Ark channel to the demo upstream, a funded tasks key."""

    def __init__(self, gw: Gateway, upstream, account_id: int, key: str, key_id: int, channel_id: int) -> None:
        self.gw, self.upstream, self.account_id, self.key = gw, upstream, account_id, key
        self.key_id, self.channel_id = key_id, channel_id

    def headers(self, key: str | None = None, **extra) -> dict:
        return {"Authorization": f"Bearer {key or self.key}", **extra}

    async def call(self, method: str, path: str, json=None, key: str | None = None, headers=None, data=None):
        status, h, body = await self.gw.raw(method, "/api/v1" + path, json=json, data=data,
                                            headers=headers if headers is not None else self.headers(key))
        import orjson

        return status, h, orjson.loads(body) if body else None

    async def wait(self, task_id: str, timeout: float = 15.0) -> dict:
        import asyncio
        import time

        end = time.monotonic() + timeout
        while True:
            status, _, t = await self.call("GET", f"/tasks/{task_id}")
            assert status == 200, t
            if t["status"] != "processing":
                return t
            assert time.monotonic() < end, t
            await asyncio.sleep(0.02)

    async def tasks_credits(self) -> str:
        return (await self.gw.admin("GET", f"/admin/accounts/{self.account_id}"))["balances"]["tasks"]

    async def ark_stats(self) -> dict:
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(self.upstream.url + "/_mock/ark/stats") as r:
            return await r.json()


async def start_task_gateway(url: str, upstream, *, balance: str = "10.00", **settings) -> TaskGateway:
    gw = await Gateway(gateway_settings(url, task_poll_ms=20, task_lease_seconds=3, **settings)).start()
    for name, spec in DEMO_TASK_MODELS.items():
        await gw.admin("PUT", f"/admin/task-models/{name}", spec, expect=200)
    ch = await gw.admin("POST", "/admin/channels", {
        "name": "ark", "type": "ark", "base_url": upstream.url + "/api/v3", "api_key": UPSTREAM_KEY,
        "models": ["doubao-seedance-2.0", "fast-video"], "model_map": {"doubao-seedance-2.0": "doubao-seedance-2-0-260128"}},
        expect=201)
    acc = await gw.admin("POST", "/admin/accounts", {"name": "acme"}, expect=201)
    await gw.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": balance, "wallet": "tasks"},
                   expect=201)
    k = await gw.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "t", "workspace": "tasks"}, expect=201)
    return TaskGateway(gw, upstream, acc["id"], k["key"], k["id"], ch["id"])


@pytest.fixture
async def tg(store_url, tmp_path):
    up = await start_upstream()
    t = await start_task_gateway(store_url, up, media_dir=str(tmp_path / "media"))
    yield t
    await t.gw.stop()
    await up.runner.cleanup()


@pytest.fixture
async def tg_sqlite(sqlite_url, tmp_path):
    up = await start_upstream()
    t = await start_task_gateway(sqlite_url, up, media_dir=str(tmp_path / "media"))
    yield t
    await t.gw.stop()
    await up.runner.cleanup()
