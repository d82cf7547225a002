"""A task's webhook end to end: the worker's terminal transition enqueues it, the deliverer signs it
with the account's secret (verified by a receiver running the Standard Webhooks reference library),
retries after a 500, and the delivery log shows every attempt; private targets are refused at submit
unless REAPI_WEBHOOK_ALLOW_PRIVATE."""
import asyncio
import time

import orjson

from tests.harness import start_upstream
from tests.tasks.conftest import start_task_gateway
from tests.webhooks.receiver import receiver

VIDEO = "/videos/generations"


async def test_task_webhook_signed_retried_and_logged(sqlite_url, tmp_path):
    up = await start_upstream()
    tg = await start_task_gateway(sqlite_url, up, media_dir=str(tmp_path / "media"), webhook_allow_private=True)
    try:
        tg.gw.gw.task_worker.deliverer.delays_s = (0.2,) * 8  # this test's own retry schedule, not 5 s
        s, _, sec = await tg.call("GET", "/webhooks/secret")
        assert s == 200 and sec["secret"].startswith("whsec_")
        async with receiver() as rec:
            rec.secrets = [sec["secret"]]
            rec.answers = [500]
            s, _, t = await tg.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": "a cat runs",
                                                    "webhook_url": rec.url})
            assert s == 200, t
            done = await tg.wait(t["id"])
            end = time.monotonic() + 15
            while len(rec.got) < 2:
                assert time.monotonic() < end, rec.got
                await asyncio.sleep(0.05)
            first, second = rec.got[:2]
            assert first.verified == second.verified == {sec["secret"]: True}
            assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
            body = orjson.loads(second.body)
            assert body["type"] == "task.completed" and body["data"]["id"] == t["id"]
            assert body["data"]["status"] == "completed" and body["data"]["cost_credits"] == done["cost_credits"]
            assert "webhook_url" not in body["data"]
            await asyncio.sleep(0.3)
            s, _, log = await tg.call("GET", f"/tasks/{t['id']}/deliveries")
            assert s == 200 and len(log["data"]) == 1
            d = log["data"][0]
            assert d["status"] == "delivered" and [a["status_code"] for a in d["attempts"]] == [500, 200]
            # the upstream never saw our webhook_url
            assert all("webhook_url" not in orjson.dumps(r.get("body")).decode() for r in await up.requests())
            # a failed task gets its webhook too
            s, _, f = await tg.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": "[ark fail]",
                                                    "webhook_url": rec.url})
            await tg.wait(f["id"])
            end = time.monotonic() + 15
            while len(rec.got) < 3:
                assert time.monotonic() < end
                await asyncio.sleep(0.05)
            assert orjson.loads(rec.got[2].body)["type"] == "task.failed"
        s, _, rot = await tg.call("POST", "/webhooks/secret/rotate")
        assert s == 200 and rot["secret"] != sec["secret"]
        s, _, err = await tg.call("GET", "/tasks/task_00000000000000000000000000/deliveries")
        assert (s, err["error"]["code"]) == (404, 20005)
    finally:
        await tg.gw.stop()
        await up.runner.cleanup()


async def test_private_webhook_targets_are_refused(tg_sqlite):
    s, _, err = await tg_sqlite.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": "a cat runs",
                                                     "webhook_url": "http://127.0.0.1:9/hook"})
    assert (s, err["error"]["code"]) == (400, 20001) and err["error"]["message"].startswith("webhook_url")
    assert await tg_sqlite.tasks_credits() == "10.00"
