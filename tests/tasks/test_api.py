"""The /api/v1 task API end to end: a real gateway with its worker, the demo upstream's Ark task API
over sockets, a real store. Submit, poll, capture/release with exact balances, every error row."""
import asyncio

import pytest

from reapi.tasks.demo_models import SEEDANCE_2

VIDEO = "/videos/generations"


def seedance(prompt="a cat runs", **kw):
    return {"model": "doubao-seedance-2.0", "prompt": prompt, **kw}


async def test_submit_poll_complete_captures_exactly(tg):
    status, h, t = await tg.call("POST", VIDEO, seedance(duration=4, resolution="480p", generate_audio=False))
    assert status == 200, t
    assert set(t) == {"id", "model", "status", "created_at"} and t["status"] == "processing"
    assert t["id"].startswith("task_") and len(t["id"]) == 31 and h["x-request-id"].startswith("req_")
    assert await tg.tasks_credits() == "9.808"  # 4 s x 48 credits = 0.192 USD held
    done = await tg.wait(t["id"])
    assert done["status"] == "completed" and done["error"] is None, done
    assert done["cost_credits"] == "192" and done["progress"] == 100
    assert len(done["output"]["video_urls"]) == 1 and done["completed_at"] >= done["created_at"]
    assert done["expires_at"] - done["completed_at"] == 168 * 3600
    url = done["output"]["video_urls"][0]
    assert url == f"{tg.gw.url}/media/tasks/{t['id']}/0.mp4"  # ours, never the upstream's
    async with tg.gw.http.get(url) as r:
        assert r.status == 200 and r.headers["content-type"] == "video/mp4"
        assert (await r.read())[4:8] == b"ftyp"
    assert await tg.tasks_credits() == "9.808"  # captured: the hold became the charge
    reqs = [r for r in await tg.upstream.requests()]
    assert (await tg.ark_stats())["submits"] == 1
    assert await tg.gw.verify() == []
    # the submit the upstream saw: the mapped model, the prompt as Ark content, ratio from size
    async with tg.gw.http.get(tg.upstream.url + "/_mock/ark/stats") as r:
        assert (await r.json())["tasks"] == 1
    del reqs


async def test_upstream_failure_and_rejection_release_in_full(tg):
    _, _, a = await tg.call("POST", VIDEO, seedance("boom [ark steps=2 fail]"))
    _, _, b = await tg.call("POST", VIDEO, seedance("no [ark reject]"))
    assert a["status"] == b["status"] == "processing"  # both held and stored; the worker ends them
    fa, fb = await tg.wait(a["id"]), await tg.wait(b["id"])
    assert fa["status"] == fb["status"] == "failed"
    assert fa["error"]["code"] == 50003 and "sensitive" in fa["error"]["message"]
    assert fb["error"]["code"] == 50003 and "sensitive" in fb["error"]["message"]
    assert fa["output"] is None
    assert await tg.tasks_credits() == "10.00"
    assert (await tg.ark_stats())["submits"] == 1  # the rejected one was never accepted
    assert await tg.gw.verify() == []


async def test_busy_upstream_polls_back_off_and_the_task_still_completes(tg):
    _, _, t = await tg.call("POST", VIDEO, seedance("[ark busy=3 steps=2]"))
    done = await tg.wait(t["id"])
    assert done["status"] == "completed"
    assert (await tg.ark_stats())["polls"] >= 6


async def test_deadline_fails_with_50005_and_releases(tg):
    fast = {**SEEDANCE_2, "max_seconds": 1}
    await tg.gw.admin("PUT", "/admin/task-models/fast-video", fast, expect=200)
    _, _, t = await tg.call("POST", VIDEO, {"model": "fast-video", "prompt": "[ark stuck]"})
    assert await tg.tasks_credits() == "9.40"
    done = await tg.wait(t["id"], timeout=10)
    assert done["status"] == "failed" and done["error"]["code"] == 50005
    assert await tg.tasks_credits() == "10.00"
    assert await tg.gw.verify() == []


async def test_auth_errors(tg):
    chat = await tg.gw.admin("POST", f"/admin/accounts/{tg.account_id}/keys", {"name": "c"}, expect=201)
    cases = [({}, 401, 10001), ({"Authorization": "Basic abc"}, 401, 10002),
             ({"Authorization": "Bearer rk_live_nope"}, 401, 10003),
             ({"Authorization": f"Bearer {chat['key']}"}, 401, 10003)]
    for headers, status, code in cases:
        s, h, body = await tg.call("GET", "/balance", headers=headers)
        assert (s, body["error"]["code"]) == (status, code), (headers, body)
        assert body["error"]["request_id"] == h["x-request-id"]
    gone = await tg.gw.admin("POST", f"/admin/accounts/{tg.account_id}/keys", {"name": "g", "workspace": "tasks"},
                             expect=201)
    await tg.gw.admin("DELETE", f"/admin/keys/{gone['id']}", expect=200)
    await tg.gw.gw.catalog.reload()
    s, _, body = await tg.call("GET", "/balance", key=gone["key"])
    assert (s, body["error"]["code"]) == (401, 10004)
    # and /v1 answers an rk_live_ key with its own 401
    s, _, raw = await tg.gw.raw("POST", "/v1/chat/completions", json={"model": "x", "messages": []},
                                headers={"Authorization": f"Bearer {tg.key}"})
    assert s == 401 and b"invalid_api_key" in raw


@pytest.mark.parametrize("path,body,status,code,field", [
    (VIDEO, {"prompt": "a cat runs"}, 400, 20002, "model"),
    (VIDEO, {"model": "doubao-seedance-2.0"}, 400, 20002, "prompt"),
    (VIDEO, seedance(colour="red"), 400, 20001, "colour"),
    (VIDEO, seedance(duration=99), 400, 20001, "duration"),
    (VIDEO, seedance(image_urls=["data:image/png;base64,iVBORw0KGgo="]), 400, 20001, "image_urls[0]"),
    (VIDEO, seedance(webhook_url="ftp://x.example/"), 400, 20001, "webhook_url"),
    (VIDEO, {"model": "nope", "prompt": "x"}, 404, 20003, "model"),
    ("/images/generations", seedance(), 400, 20001, "model"),
    (VIDEO, [1, 2], 400, 20001, "body"),
])
async def test_request_errors_name_the_field(tg_sqlite, path, body, status, code, field):
    s, h, err = await tg_sqlite.call("POST", path, body)
    assert (s, err["error"]["code"]) == (status, code), err
    assert err["error"]["message"].startswith(field), err
    assert h.get("x-request-id") == err["error"]["request_id"]
    assert await tg_sqlite.tasks_credits() == "10.00"


async def test_bad_json_wrong_method_unknown_route_and_other_accounts_task(tg_sqlite):
    tg = tg_sqlite
    s, _, err = await tg.call("POST", VIDEO, data=b"{nope", headers=tg.headers(**{"Content-Type": "application/json"}))
    assert (s, err["error"]["code"]) == (400, 20001)
    s, _, err = await tg.call("GET", VIDEO)
    assert (s, err["error"]["code"]) == (405, 20006)
    s, _, err = await tg.call("GET", "/nothing")
    assert (s, err["error"]["code"]) == (404, 20006)
    _, _, t = await tg.call("POST", VIDEO, seedance())
    other = await tg.gw.admin("POST", "/admin/accounts", {"name": "other"}, expect=201)
    ok = await tg.gw.admin("POST", f"/admin/accounts/{other['id']}/keys", {"name": "o", "workspace": "tasks"},
                           expect=201)
    s, _, err = await tg.call("GET", f"/tasks/{t['id']}", key=ok["key"])
    assert (s, err["error"]["code"]) == (404, 20005)
    s, _, err = await tg.call("GET", "/tasks/task_nope")
    assert (s, err["error"]["code"]) == (404, 20005)


async def test_insufficient_credits_is_30001_and_stores_nothing(tg_sqlite):
    tg = tg_sqlite
    s, _, err = await tg.call("POST", VIDEO, seedance(duration=15, resolution="4k"))  # 15 x 820 = 12.30 USD
    assert (s, err["error"]["code"]) == (402, 30001)
    s, _, page = await tg.call("GET", "/tasks")
    assert page["data"] == []
    assert await tg.tasks_credits() == "10.00"


async def test_rate_limit_is_40001_with_retry_after(tg_sqlite):
    tg = tg_sqlite
    k = await tg.gw.admin("POST", f"/admin/accounts/{tg.account_id}/keys",
                          {"name": "slow", "workspace": "tasks", "rpm": 1}, expect=201)
    await tg.gw.gw.catalog.reload()
    s, _, _ = await tg.call("GET", "/balance", key=k["key"])
    assert s == 200
    s, h, err = await tg.call("GET", "/balance", key=k["key"])
    assert (s, err["error"]["code"]) == (429, 40001) and int(h["retry-after"]) >= 1


async def test_idempotency_key_over_http(tg_sqlite):
    tg = tg_sqlite
    h = tg.headers(**{"Idempotency-Key": "order-17"})
    s1, _, a = await tg.call("POST", VIDEO, seedance(), headers=h)
    s2, _, b = await tg.call("POST", VIDEO, seedance(), headers=h)
    assert s1 == s2 == 200 and a["id"] == b["id"]
    assert await tg.tasks_credits() == "9.40"  # charged once
    s, _, err = await tg.call("POST", VIDEO, seedance("another"), headers=h)
    assert (s, err["error"]["code"]) == (409, 20004)
    s, _, err = await tg.call("POST", VIDEO, seedance(), headers=tg.headers(**{"Idempotency-Key": "x" * 300}))
    assert (s, err["error"]["code"]) == (400, 20001)
    # after 24 h the key is forgotten (pruned by the worker) and the same key makes a new task
    from sqlalchemy import text

    async with tg.gw.gw.engine.begin() as conn:
        await conn.execute(text("UPDATE idempotency_keys SET created_at = created_at - 86400001"))
    assert await tg.gw.gw.task_worker.prune_idempotency() == 1
    s, _, c = await tg.call("POST", VIDEO, seedance(), headers=h)
    assert s == 200 and c["id"] != a["id"]


async def test_quote_models_balance_and_list(tg_sqlite):
    tg = tg_sqlite
    s, _, q = await tg.call("POST", "/quote", seedance(duration=10, resolution="1080p"))
    assert s == 200 and q["cost_credits"] == "2900" and q["cost_usd"] == "2.90" and q["quantity"] == 10
    s, _, m = await tg.call("GET", "/models")
    assert [x["id"] for x in m["data"]] == ["doubao-seedance-2.0"]  # only models a channel serves
    assert m["data"][0]["endpoint"] == "/api/v1/videos/generations" and m["data"][0]["unit"] == "second"
    s, _, bal = await tg.call("GET", "/balance")
    assert bal["credits"] == "10000" and bal["usd"] == "10.00"
    ids = []
    for i in range(5):
        _, _, t = await tg.call("POST", VIDEO, seedance(f"n{i} [ark stuck]"))
        ids.append(t["id"])
    s, _, page = await tg.call("GET", "/tasks?limit=2")
    assert [t["id"] for t in page["data"]] == ids[::-1][:2] and page["has_more"]
    s, _, page2 = await tg.call("GET", f"/tasks?limit=10&after={page['last_id']}")
    assert [t["id"] for t in page2["data"]] == ids[::-1][2:]
    s, _, done = await tg.call("GET", "/tasks?status=completed")
    assert done["data"] == []
    s, _, err = await tg.call("GET", "/tasks?status=weird")
    assert (s, err["error"]["code"]) == (400, 20001)
    s, _, err = await tg.call("GET", "/tasks?limit=0")
    assert (s, err["error"]["code"]) == (400, 20001)
    assert set(page["data"][0]) == {"id", "model", "status", "created_at", "output", "error", "cost_credits",
                                    "progress", "completed_at", "expires_at"}


async def test_last_frame_and_retention_deletes_files(tg_sqlite):
    from sqlalchemy import text

    tg = tg_sqlite
    _, _, t = await tg.call("POST", VIDEO, seedance(return_last_frame=True))
    done = await tg.wait(t["id"])
    assert done["output"]["last_frame_url"].endswith(f"/media/tasks/{t['id']}/1.png"), done
    async with tg.gw.http.get(done["output"]["last_frame_url"]) as r:
        assert r.status == 200 and (await r.read()).startswith(b"\x89PNG")
    async with tg.gw.gw.engine.begin() as conn:
        await conn.execute(text("UPDATE tasks SET expires_at = 1 WHERE id = :i"), {"i": t["id"]})
    assert await tg.gw.gw.task_worker.delete_expired() == 1
    async with tg.gw.http.get(done["output"]["last_frame_url"]) as r:
        assert r.status == 404
    _, _, after = await tg.call("GET", f"/tasks/{t['id']}")
    assert after["status"] == "completed" and after["output"] is None


async def test_a_failing_channel_cools_down_and_another_serves(tg_sqlite):
    tg = tg_sqlite
    from tests.harness import UPSTREAM_KEY

    bad = await tg.gw.admin("POST", "/admin/channels", {
        "name": "ark-bad", "type": "ark", "base_url": tg.upstream.url + "/api/v3", "api_key": UPSTREAM_KEY + "-wrong",
        "models": ["doubao-seedance-2.0"], "priority": 5}, expect=201)
    await tg.gw.gw.catalog.reload()
    ids = []
    for i in range(4):
        _, _, t = await tg.call("POST", VIDEO, seedance(f"n{i} fine"))
        ids.append(t["id"])
    for tid in ids:
        assert (await tg.wait(tid, timeout=30))["status"] == "completed"
    assert tg.gw.gw.health.state(bad["id"])["state"] == "open"  # cooling down after its 401s
    stats = await tg.ark_stats()
    assert stats["submits"] == 4  # each task accepted once, by the good channel
    assert await tg.tasks_credits() == "7.60"
    assert await tg.gw.verify() == []


async def test_outputs_on_another_private_host_are_not_fetched(tg_sqlite):
    """Only the channel's own host may be private: an upstream naming an internal host for its output
    cannot make the gateway fetch and republish it. The task fails, released."""
    tg = tg_sqlite
    _, _, t = await tg.call("POST", VIDEO, seedance("[ark output_host=localhost]"))
    done = await tg.wait(t["id"], timeout=30)
    assert done["status"] == "failed" and done["error"]["code"] == 50002, done
    assert "localhost" not in done["error"]["message"] and "127.0.0.1" not in done["error"]["message"]
    assert await tg.tasks_credits() == "10.00"
