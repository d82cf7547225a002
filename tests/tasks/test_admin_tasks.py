"""GET /admin/tasks?account=&status= and POST /admin/tasks/{id}/fail (releases the hold in full, once);
the task metrics on /metrics."""
VIDEO = "/videos/generations"


async def test_admin_lists_and_fails_tasks(tg):
    _, _, stuck = await tg.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": "[ark stuck]"})
    _, _, done = await tg.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": "fine"})
    await tg.wait(done["id"])
    listed = await tg.gw.admin("GET", f"/admin/tasks?account={tg.account_id}", expect=200)
    assert [t["id"] for t in listed["data"]] == [done["id"], stuck["id"]]
    assert listed["data"][1]["state"] in ("running", "submitting", "queued")
    open_ = await tg.gw.admin("GET", "/admin/tasks?status=processing", expect=200)
    assert [t["id"] for t in open_["data"]] == [stuck["id"]]
    assert (await tg.gw.admin("GET", "/admin/tasks?account=999999", expect=200))["data"] == []
    assert await tg.tasks_credits() == "8.80"
    out = await tg.gw.admin("POST", f"/admin/tasks/{stuck['id']}/fail", expect=200)
    assert out == {"id": stuck["id"], "status": "failed", "released_credits": "600"}
    assert await tg.tasks_credits() == "9.40"
    again = await tg.gw.admin("POST", f"/admin/tasks/{stuck['id']}/fail", expect=409)
    assert again["error"]["code"] == "task_ended"
    await tg.gw.admin("POST", "/admin/tasks/task_00000000000000000000000000/fail", expect=404)
    await tg.gw.admin("POST", "/admin/tasks/nope/fail", expect=400)
    _, _, polled = await tg.call("GET", f"/tasks/{stuck['id']}")
    assert polled["status"] == "failed" and polled["error"]["code"] == 50001
    assert await tg.gw.verify() == []


async def test_task_metrics(tg_sqlite):
    tg = tg_sqlite
    _, _, t = await tg.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": "fine"})
    await tg.wait(t["id"])
    _, _, s = await tg.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": "[ark stuck]"})
    await tg.gw.gw.task_worker.publish_stats()
    status, _, body = await tg.gw.raw("GET", "/metrics")
    text = body.decode()
    assert status == 200
    # the stuck task is open: queued, being submitted or running, whichever the worker has reached
    assert sum(f'reapi_tasks{{state="{st}"}} 1.0' in text for st in ("queued", "submitting", "running")) == 1
    assert "reapi_task_queue_depth" in text and "reapi_task_oldest_running_seconds" in text
    assert "reapi_task_upstream_latency_seconds_count" in text
    assert 'reapi_tasks_finished_total{status="completed"}' in text
