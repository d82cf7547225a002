"""PUT/GET /admin/task-models and `reapi task-models set/list`: the same operation, credits as
decimal strings, bad specs refused naming the field; the catalog sees the model at once."""
import asyncio
import os
import subprocess
import sys

import orjson

from reapi.tasks.demo_models import GPT_IMAGE_2, MUREKA_V9
from tests.harness import Gateway, gateway_settings


async def test_admin_task_models(sqlite_url):
    gw = await Gateway(gateway_settings(sqlite_url)).start()
    try:
        out = await gw.admin("PUT", "/admin/task-models/gpt-image-2", GPT_IMAGE_2, expect=200)
        assert out["skus"][1] == {"when": {"resolution": "2k"}, "credits_per_unit": "50"}
        assert out["endpoint"] == "images" and out["max_seconds"] == 300
        assert gw.gw.catalog.snapshot.task_models["gpt-image-2"].skus[1].nano_per_unit == 50_000_000
        bad = await gw.admin("PUT", "/admin/task-models/x", {**GPT_IMAGE_2, "quantity": ["prompt"]}, expect=400)
        assert bad["error"]["param"] == "quantity"
        bad = await gw.admin("PUT", "/admin/task-models/x", {**GPT_IMAGE_2, "skus": [
            {"when": {}, "credits_per_unit": 0.5}]}, expect=400)
        assert bad["error"]["param"].startswith("skus")
        listed = await gw.admin("GET", "/admin/task-models", expect=200)
        assert [m["model"] for m in listed["data"]] == ["gpt-image-2"]
        status, _, _ = await gw.raw("GET", "/admin/task-models")
        assert status == 401
    finally:
        await gw.stop()


def test_cli_task_models(tmp_path):
    env = {**os.environ, "REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "reapi", *a], env=env, capture_output=True, text=True,
                                    timeout=60)
    assert run("migrate").returncode == 0
    spec = tmp_path / "song.json"
    spec.write_bytes(orjson.dumps(MUREKA_V9))
    r = run("task-models", "set", "mureka-v9-song", "--spec", f"@{spec}")
    assert r.returncode == 0, r.stderr
    r = run("task-models", "list")
    assert orjson.loads(r.stdout)[0]["skus"] == [{"when": {}, "credits_per_unit": "60"}]
    r = run("task-models", "set", "bad", "--spec", orjson.dumps({**MUREKA_V9, "unit": "token"}).decode())
    assert r.returncode == 2 and "unit" in r.stderr and "Traceback" not in r.stderr
    r = run("task-models", "set", "bad", "--spec", "[1")
    assert r.returncode == 2 and "--spec" in r.stderr


async def test_tasks_keys_take_no_spend_limit(sqlite_url):
    gw = await Gateway(gateway_settings(sqlite_url, task_worker="off")).start()
    try:
        acc = await gw.admin("POST", "/admin/accounts", {"name": "a"}, expect=201)
        err = await gw.admin("POST", f"/admin/accounts/{acc['id']}/keys",
                             {"name": "t", "workspace": "tasks", "spend_limit_usd": "5"}, expect=400)
        assert err["error"]["param"] == "spend_limit_usd"
    finally:
        await gw.stop()
