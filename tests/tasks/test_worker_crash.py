"""kill -9 of a real `reapi worker` process mid-task: a second worker takes the task over after the
lease, the upstream sees exactly one submit, balances and `reapi ledger verify` are exact. A worker
killed during the submit itself leaves an unknown outcome: the task is failed and released, never
sent again. SQLite and PostgreSQL."""
import asyncio
import os
import signal
import subprocess
import sys
import time

from sqlalchemy import text

from tests.harness import start_upstream
from tests.tasks.conftest import start_task_gateway

VIDEO = "/videos/generations"


def start_worker(url: str, log, media: str) -> subprocess.Popen:
    env = {**os.environ, "REAPI_DATABASE_URL": url, "REAPI_MEDIA_DIR": media, "REAPI_TASK_LEASE_SECONDS": "2", "REAPI_TASK_POLL_MS": "50",
           "REAPI_LOG_LEVEL": "warning"}
    return subprocess.Popen([sys.executable, "-m", "reapi", "worker"], env=env, stdout=log, stderr=log)


async def task_row(tg, task_id):
    async with tg.gw.gw.engine.connect() as conn:
        return (await conn.execute(text("SELECT status, upstream_id, lease_owner FROM tasks WHERE id = :i"),
                                   {"i": task_id})).mappings().first()


async def until(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while True:
        got = await cond()
        if got:
            return got
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.05)


def ledger_verify(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reapi", "ledger", "verify"], capture_output=True, text=True,
                          env={**os.environ, "REAPI_DATABASE_URL": url}, timeout=60)


async def test_kill_9_mid_task_second_worker_takes_over(store_url, tmp_path):
    up = await start_upstream()
    tg = await start_task_gateway(store_url, up, task_worker="off", media_dir=str(tmp_path / "media"))
    log = open(tmp_path / "workers.log", "wb")
    a = b = None
    try:
        _, _, t = await tg.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": "[ark steps=12]"})
        a = start_worker(store_url, log, str(tmp_path / "media"))

        async def polled_by_a():
            r = await task_row(tg, t["id"])
            return r["status"] == "running" and r["upstream_id"] and (await tg.ark_stats())["polls"] >= 2
        await until(polled_by_a)
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
        assert (await tg.call("GET", f"/tasks/{t['id']}"))[2]["status"] == "processing"
        b = start_worker(store_url, log, str(tmp_path / "media"))
        done = await tg.wait(t["id"], timeout=40)
        assert done["status"] == "completed", done
        stats = await tg.ark_stats()
        assert stats["submits"] == stats["received"] == 1  # never sent twice
        assert await tg.tasks_credits() == "9.40"  # 5 s x 120 credits, charged once
        assert await tg.gw.verify() == []
        r = ledger_verify(store_url)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(10)
        log.close()
        await tg.gw.stop()
        await up.runner.cleanup()


async def test_kill_9_during_the_submit_fails_and_releases(store_url, tmp_path):
    up = await start_upstream()
    tg = await start_task_gateway(store_url, up, task_worker="off", media_dir=str(tmp_path / "media"))
    log = open(tmp_path / "workers.log", "wb")
    a = b = None
    try:
        _, _, t = await tg.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": "[ark slow=5000]"})
        assert await tg.tasks_credits() == "9.40"
        a = start_worker(store_url, log, str(tmp_path / "media"))

        async def submitting():
            return (await task_row(tg, t["id"]))["status"] == "submitting"
        await until(submitting)
        await asyncio.sleep(0.3)  # the request is on its way
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
        b = start_worker(store_url, log, str(tmp_path / "media"))
        done = await tg.wait(t["id"], timeout=40)
        assert done["status"] == "failed" and done["error"]["code"] == 50002, done
        assert "not sent again" in done["error"]["message"]
        await asyncio.sleep(6)  # long enough for the slow submit to have been answered, had it been resent
        assert (await tg.ark_stats())["received"] == 1  # it reached the upstream once and was never resent
        assert await tg.tasks_credits() == "10.00"
        r = ledger_verify(store_url)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(10)
        log.close()
        await tg.gw.stop()
        await up.runner.cleanup()


async def test_two_live_workers_submit_each_task_exactly_once(store_url, tmp_path):
    up = await start_upstream()
    tg = await start_task_gateway(store_url, up, task_worker="off", media_dir=str(tmp_path / "media"))
    log = open(tmp_path / "workers.log", "wb")
    workers = []
    try:
        ids = []
        for i in range(30):
            _, _, t = await tg.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": f"n{i} [ark steps=2]",
                                                    "duration": 4, "resolution": "480p"})
            ids.append(t["id"])
        workers = [start_worker(store_url, log, str(tmp_path / "media")) for _ in range(2)]
        for tid in ids:
            assert (await tg.wait(tid, timeout=60))["status"] == "completed"
        stats = await tg.ark_stats()
        assert stats["received"] == stats["submits"] == 30
        assert await tg.tasks_credits() == "2.80"  # 10.00 - 30 x 4 s x 60 credits (480p, audio on by default)
        r = ledger_verify(store_url)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        for p in workers:
            p.terminate()
            p.wait(10)
        log.close()
        await tg.gw.stop()
        await up.runner.cleanup()


async def test_a_clean_stop_lets_a_submit_in_flight_finish(sqlite_url, tmp_path):
    up = await start_upstream()
    tg = await start_task_gateway(sqlite_url, up, task_worker="off", media_dir=str(tmp_path / "media"))
    log = open(tmp_path / "workers.log", "wb")
    a = b = None
    try:
        _, _, t = await tg.call("POST", VIDEO, {"model": "doubao-seedance-2.0", "prompt": "[ark slow=1500 steps=3]"})
        a = start_worker(sqlite_url, log, str(tmp_path / "media"))

        async def submitting():
            return (await task_row(tg, t["id"]))["status"] == "submitting"
        await until(submitting)
        a.send_signal(signal.SIGTERM)  # a deploy: the submit on its way is answered before the worker exits
        assert await asyncio.to_thread(a.wait, 20) == 0  # the demo upstream answers meanwhile (this loop)
        row = await task_row(tg, t["id"])
        assert row["status"] == "running" and row["upstream_id"] and row["lease_owner"] is None
        b = start_worker(sqlite_url, log, str(tmp_path / "media"))
        assert (await tg.wait(t["id"], timeout=30))["status"] == "completed"
        assert (await tg.ark_stats())["received"] == 1
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(10)
        log.close()
        await tg.gw.stop()
        await up.runner.cleanup()
