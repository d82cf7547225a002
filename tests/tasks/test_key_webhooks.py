"""A tasks key's default webhook (issue #14), on SQLite and PostgreSQL: a task submitted without a
`webhook_url` gets a signed delivery at its end at the key's URL (a real receiver verifying it with
the Standard Webhooks reference library), a body `webhook_url` overrides the default, an explicit
null means no webhook; the default is refused on chat keys and for private targets unless
REAPI_WEBHOOK_ALLOW_PRIVATE=1 (admin API and CLI)."""
import asyncio
import re
import time

import orjson
import pytest
from click.testing import CliRunner

from reapi.cli import main
from reapi.store import queries
from reapi.store.db import create_engine
from tests.harness import start_upstream
from tests.tasks.conftest import start_task_gateway
from tests.webhooks.receiver import receiver

VIDEO = "/videos/generations"
SEEDANCE = {"model": "doubao-seedance-2.0", "prompt": "a cat runs"}


async def _arrived(rec, n: int, limit_s: float = 15) -> None:
    end = time.monotonic() + limit_s
    while len(rec.got) < n:
        assert time.monotonic() < end, rec.got
        await asyncio.sleep(0.05)


async def _deliveries(tg, task_id: str, key: str) -> list[dict]:
    s, _, log = await tg.call("GET", f"/tasks/{task_id}/deliveries", key=key)
    assert s == 200, log
    return log["data"]


async def test_the_keys_default_the_bodys_override_and_null(store_url, tmp_path):
    up = await start_upstream()
    tg = await start_task_gateway(store_url, up, media_dir=str(tmp_path / "media"), webhook_allow_private=True)
    try:
        async with receiver() as dflt, receiver() as own:
            k = await tg.gw.admin("POST", f"/admin/accounts/{tg.account_id}/keys",
                                  {"name": "hooked", "workspace": "tasks", "webhook_url": dflt.url}, expect=201)
            assert k["webhook_url"] == dflt.url and k["key"].startswith("rk_live_")
            listed = {r["name"]: r for r in (await tg.gw.admin("GET", f"/admin/accounts/{tg.account_id}/keys"))["data"]}
            assert listed["hooked"]["webhook_url"] == dflt.url and listed["t"]["webhook_url"] is None
            s, _, sec = await tg.call("GET", "/webhooks/secret", key=k["key"])
            assert s == 200
            dflt.secrets = own.secrets = [sec["secret"]]

            # no webhook_url in the body: the key's default gets the signed delivery
            s, _, t = await tg.call("POST", VIDEO, SEEDANCE, key=k["key"])
            assert s == 200, t
            done = await tg.wait(t["id"])
            await _arrived(dflt, 1)
            got = dflt.got[0]
            assert got.verified == {sec["secret"]: True} and got.headers["webhook-id"].startswith("msg_")
            body = orjson.loads(got.body)
            assert body["type"] == "task.completed" and body["data"]["id"] == t["id"]
            assert body["data"]["cost_credits"] == done["cost_credits"] and "webhook_url" not in body["data"]

            # the body's webhook_url wins over the key's
            s, _, t2 = await tg.call("POST", VIDEO, {**SEEDANCE, "webhook_url": own.url}, key=k["key"])
            assert s == 200, t2
            await tg.wait(t2["id"])
            await _arrived(own, 1)
            assert own.got[0].verified == {sec["secret"]: True}
            assert orjson.loads(own.got[0].body)["data"]["id"] == t2["id"]
            [d2] = await _deliveries(tg, t2["id"], k["key"])
            assert d2["status"] == "delivered"

            # an explicit null: no webhook at all (the outbox row would be written with the terminal state)
            s, _, t3 = await tg.call("POST", VIDEO, {**SEEDANCE, "webhook_url": None}, key=k["key"])
            assert s == 200, t3
            assert (await tg.wait(t3["id"]))["status"] == "completed"
            assert await _deliveries(tg, t3["id"], k["key"]) == []
            # a key without a default still sends nothing when the body names none
            s, _, t4 = await tg.call("POST", VIDEO, SEEDANCE)
            assert s == 200, t4
            await tg.wait(t4["id"])
            assert await _deliveries(tg, t4["id"], tg.key) == []

            # a failed task reaches the default too
            s, _, f = await tg.call("POST", VIDEO, {**SEEDANCE, "prompt": "[ark fail]"}, key=k["key"])
            assert s == 200, f
            await tg.wait(f["id"])
            await _arrived(dflt, 2)
            failed = orjson.loads(dflt.got[1].body)
            assert failed["type"] == "task.failed" and failed["data"]["id"] == f["id"]
            await asyncio.sleep(0.2)
            assert [orjson.loads(g.body)["data"]["id"] for g in dflt.got] == [t["id"], f["id"]]
            assert [orjson.loads(g.body)["data"]["id"] for g in own.got] == [t2["id"]]
            # the default is ours: the upstream never saw it
            assert all(dflt.url not in orjson.dumps(r.get("body")).decode() for r in await up.requests())
    finally:
        await tg.gw.stop()
        await up.runner.cleanup()


@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:9/hook", "private"),
    ("http://localhost/hook", "private"),
    ("http://10.1.2.3/hook", "private"),
    ("http://169.254.169.254/latest", "private"),
    ("http://[::1]/hook", "private"),
    ("http://hooks/hook", "private"),
    ("ftp://hooks.example.com/x", "http"),
    ("data:text/plain,hi", "http"),
    ("https://user:pw@hooks.example.com/x", "credentials"),
    ("https://hooks.example.com/a b", "spaces"),
    ("https://hooks.example.com/" + "x" * 2048, "2048"),
])
async def test_key_defaults_are_held_to_the_submit_fields_rule(tg, url, words):
    before = len((await tg.gw.admin("GET", f"/admin/accounts/{tg.account_id}/keys"))["data"])
    err = await tg.gw.admin("POST", f"/admin/accounts/{tg.account_id}/keys",
                            {"workspace": "tasks", "webhook_url": url}, expect=400)
    assert err["error"]["param"] == "webhook_url" and words in err["error"]["message"], err
    # the body field answers the same rule (20001, naming the field)
    s, _, sub = await tg.call("POST", VIDEO, {**SEEDANCE, "webhook_url": url})
    assert (s, sub["error"]["code"]) == (400, 20001) and sub["error"]["message"].startswith("webhook_url")
    assert len((await tg.gw.admin("GET", f"/admin/accounts/{tg.account_id}/keys"))["data"]) == before
    assert await tg.tasks_credits() == "10.00"


async def test_chat_keys_refuse_a_webhook_and_public_targets_are_taken(tg):
    acc = tg.account_id
    err = await tg.gw.admin("POST", f"/admin/accounts/{acc}/keys",
                            {"webhook_url": "https://hooks.example.com/reapi"}, expect=400)
    assert err["error"]["param"] == "webhook_url" and "tasks keys only" in err["error"]["message"]
    err = await tg.gw.admin("POST", f"/admin/accounts/{acc}/keys", {"workspace": "tasks", "webhook_url": 5},
                            expect=400)
    assert err["error"]["param"] == "webhook_url"
    k = await tg.gw.admin("POST", f"/admin/accounts/{acc}/keys",
                          {"workspace": "tasks", "webhook_url": "https://hooks.example.com/reapi"}, expect=201)
    assert k["webhook_url"] == "https://hooks.example.com/reapi"
    # the new key works at once, and its default does not stop a submit that names its own null
    s, _, t = await tg.call("POST", VIDEO, {**SEEDANCE, "webhook_url": None}, key=k["key"])
    assert s == 200, t


def test_cli_keys_create_webhook_url(tmp_path):
    env = {"REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/k.db"}
    runner = CliRunner(env=env)
    assert runner.invoke(main, ["migrate"]).exit_code == 0
    assert runner.invoke(main, ["accounts", "create", "acme"]).exit_code == 0
    r = runner.invoke(main, ["keys", "create", "1", "--workspace", "tasks", "--webhook-url", "http://127.0.0.1:9/h"])
    assert r.exit_code == 2 and "--webhook-url" in r.output and "private" in r.output, r.output
    r = runner.invoke(main, ["keys", "create", "1", "--webhook-url", "https://hooks.example.com/h"])
    assert r.exit_code == 2 and "tasks keys only" in r.output, r.output
    r = runner.invoke(main, ["keys", "create", "1", "--workspace", "tasks", "--webhook-url",
                             "https://hooks.example.com/h"])
    assert r.exit_code == 0 and re.search(r"key \d+: rk_live_", r.output), r.output
    private = CliRunner(env={**env, "REAPI_WEBHOOK_ALLOW_PRIVATE": "1"})
    r = private.invoke(main, ["keys", "create", "1", "--workspace", "tasks", "--webhook-url", "http://127.0.0.1:9/h"])
    assert r.exit_code == 0, r.output

    async def stored() -> list:
        engine = create_engine(env["REAPI_DATABASE_URL"])
        try:
            async with engine.connect() as conn:
                return [(k["workspace"], k["webhook_url"]) for k in await queries.list_keys(conn, 1)]
        finally:
            await engine.dispose()

    assert asyncio.run(stored()) == [("tasks", "https://hooks.example.com/h"), ("tasks", "http://127.0.0.1:9/h")]
