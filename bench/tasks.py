"""Task gateway benchmark (short): submit and poll rate of one `reapi serve` process on SQLite or
PostgreSQL.

    .venv/bin/python bench/tasks.py [--seconds 5] [--concurrency 32] [--pin] [--store sqlite|postgres]

Starts `reapi serve` (one worker process, REAPI_TASK_WORKER=off so only the API is measured) on a
fresh SQLite file in a temporary directory (or a fresh PostgreSQL database, BENCH_PG, default
postgresql://postgres@127.0.0.1:5432/postgres, dropped afterwards), seeds a task model and a funded rk_live_ key, then
drives it from this process with aiohttp: POST /api/v1/videos/generations (each a stored task and
an exact hold) for --seconds, then GET /api/v1/tasks/{id} over the tasks submitted for --seconds.
With --pin the server runs on core 0 and this client on core 1. Targets: >= 300 submits/s and
>= 1,000 polls/s per process on SQLite. Not part of the test suite.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def seed(url: str, admin: str) -> str:
    from reapi.tasks.demo_models import SEEDANCE_2

    h = {"Authorization": f"Bearer {admin}"}
    async with aiohttp.ClientSession(headers=h) as s:
        async def call(method, path, body):
            async with s.request(method, url + path, json=body) as r:
                assert r.status in (200, 201), (path, r.status, await r.text())
                return await r.json()
        await call("PUT", "/admin/task-models/doubao-seedance-2.0", SEEDANCE_2)
        await call("POST", "/admin/channels", {"name": "ark", "type": "ark", "base_url": "http://127.0.0.1:9/api/v3",
                                               "api_key": "k", "models": ["doubao-seedance-2.0"]})
        acc = await call("POST", "/admin/accounts", {"name": "bench"})
        await call("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "1000000", "wallet": "tasks"})
        return (await call("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "b", "workspace": "tasks"}))["key"]


async def drive(url: str, key: str, seconds: float, concurrency: int) -> None:
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = b'{"model": "doubao-seedance-2.0", "prompt": "a cat runs", "duration": 5}'
    ids: list[str] = []
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, headers=h) as s:
        async def submitter(end: float, lat: list[float]) -> None:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                async with s.post(url + "/api/v1/videos/generations", data=body) as r:
                    data = await r.json()
                    assert r.status == 200, data
                lat.append(time.perf_counter() - t0)
                ids.append(data["id"])

        async def poller(end: float, lat: list[float]) -> None:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                async with s.get(f"{url}/api/v1/tasks/{random.choice(ids)}") as r:
                    await r.read()
                    assert r.status == 200
                lat.append(time.perf_counter() - t0)

        for name, fn in (("submit", submitter), ("poll", poller)):
            warm: list[float] = []
            await asyncio.gather(*[fn(time.perf_counter() + 1.0, warm) for _ in range(concurrency)])
            lat: list[float] = []
            start = time.perf_counter()
            await asyncio.gather(*[fn(start + seconds, lat) for _ in range(concurrency)])
            took = time.perf_counter() - start
            lat.sort()
            print(f"{name:6s} {len(lat) / took:8.0f}/s   p50 {lat[len(lat) // 2] * 1000:6.2f} ms   "
                  f"p99 {lat[int(len(lat) * 0.99)] * 1000:6.2f} ms   ({len(lat)} in {took:.1f} s, "
                  f"concurrency {concurrency})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--pin", action="store_true")
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="reapi-bench-tasks-")
    port, admin = free_port(), "bench-admin"
    pg_admin = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    pg_name = f"reapi_bench_tasks_{os.getpid()}"
    if a.store == "postgres":
        subprocess.run(["psql", pg_admin, "-qc", f'CREATE DATABASE "{pg_name}"'], check=True, capture_output=True)
        db = pg_admin.rsplit("/", 1)[0] + "/" + pg_name
    else:
        db = f"sqlite:///{tmp}/bench.db"
    env = {**os.environ, "REAPI_DATABASE_URL": db, "REAPI_ADMIN_KEY": admin,
           "REAPI_TASK_WORKER": "off", "REAPI_LOG_LEVEL": "warning", "REAPI_MEDIA_DIR": f"{tmp}/media"}
    cmd = [sys.executable, "-m", "reapi", "serve", "--port", str(port)]
    if a.pin:
        cmd = ["taskset", "-c", "0", *cmd]
        os.sched_setaffinity(0, {1})
    server = subprocess.Popen(cmd, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.5)
        key = asyncio.run(seed(url, admin))
        time.sleep(1.5)  # the catalog reload (REAPI_CONFIG_POLL_MS) sees the new key everywhere
        asyncio.run(drive(url, key, a.seconds, a.concurrency))
    finally:
        server.terminate()
        server.wait(30)
        if a.store == "postgres":
            subprocess.run(["psql", pg_admin, "-qc", f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'],
                           capture_output=True)


if __name__ == "__main__":
    main()
