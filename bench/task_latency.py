"""Task gateway benchmark: the latency the gateway adds to a task's completion.

    .venv/bin/python bench/task_latency.py [--tasks 30] [--poll-ms 50] [--store sqlite|postgres]

Starts the demo upstream (`reapi mock-upstream`) and one `reapi serve` process with its task worker
on (REAPI_TASK_POLL_MS=--poll-ms), seeds gpt-image-2 on an `openai-images` channel (a synchronous
upstream: the answer carries the image) and a funded rk_live_ key, then, one task at a time:
  - upstream alone: the same generation POSTed straight to the demo upstream (its own time);
  - through reapi: submit, then GET /api/v1/tasks/{id} every 5 ms until `completed`.
The difference of the medians is what the gateway adds: the durable submit with its hold, the worker's
claim, the upstream call, the output copied into reapi's storage, the capture and the terminal write.
Not part of the test suite.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM_KEY = "bench-upstream-key"
BODY = {"model": "gpt-image-2", "prompt": "a lighthouse at dawn"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


async def seed(url: str, admin: str, upstream: str) -> str:
    from reapi.tasks.demo_models import GPT_IMAGE_2

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as s:
        async def call(method: str, path: str, body: dict) -> dict:
            async with s.request(method, url + path, json=body) as r:
                assert r.status in (200, 201), (path, r.status, await r.text())
                return await r.json()
        await call("PUT", "/admin/task-models/gpt-image-2", GPT_IMAGE_2)
        await call("POST", "/admin/channels", {"name": "images", "type": "openai-images",
                                               "base_url": upstream + "/v1", "api_key": UPSTREAM_KEY,
                                               "models": ["gpt-image-2"]})
        acc = await call("POST", "/admin/accounts", {"name": "bench"})
        await call("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "100000", "wallet": "tasks"})
        return (await call("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "b", "workspace": "tasks"}))["key"]


async def measure(url: str, upstream: str, key: str, n: int) -> tuple[list[float], list[float]]:
    direct: list[float] = []
    through: list[float] = []
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            t0 = time.perf_counter()
            async with s.post(upstream + "/v1/images/generations", json=BODY,
                              headers={"Authorization": f"Bearer {UPSTREAM_KEY}"}) as r:
                await r.read()
                assert r.status == 200, r.status
            direct.append(time.perf_counter() - t0)
        h = {"Authorization": f"Bearer {key}"}
        for _ in range(n):
            t0 = time.perf_counter()
            async with s.post(url + "/api/v1/images/generations", json=BODY, headers=h) as r:
                task = await r.json()
                assert r.status == 200, task
            while True:
                async with s.get(f"{url}/api/v1/tasks/{task['id']}", headers=h) as r:
                    view = await r.json()
                if view["status"] != "processing":
                    assert view["status"] == "completed", view
                    break
                await asyncio.sleep(0.005)
            through.append(time.perf_counter() - t0)
    return direct, through


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--poll-ms", type=int, default=50)
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="reapi-bench-latency-")
    pg_admin = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    pg_name = f"reapi_bench_latency_{os.getpid()}"
    if a.store == "postgres":
        subprocess.run(["psql", pg_admin, "-qc", f'CREATE DATABASE "{pg_name}"'], check=True, capture_output=True)
        db = pg_admin.rsplit("/", 1)[0] + "/" + pg_name
    else:
        db = f"sqlite:///{tmp}/bench.db"
    port, up_port, admin = free_port(), free_port(), "bench-admin"
    upstream, url = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{port}"
    env = {**os.environ, "REAPI_DATABASE_URL": db, "REAPI_ADMIN_KEY": admin, "REAPI_TASK_WORKER": "on",
           "REAPI_TASK_POLL_MS": str(a.poll_ms), "REAPI_LOG_LEVEL": "warning", "REAPI_MEDIA_DIR": f"{tmp}/media",
           "REAPI_WEBHOOK_ALLOW_PRIVATE": "0"}
    mock = subprocess.Popen([sys.executable, "-m", "reapi", "mock-upstream", "--port", str(up_port),
                             "--api-key", UPSTREAM_KEY], cwd=ROOT)
    server = subprocess.Popen([sys.executable, "-m", "reapi", "serve", "--port", str(port)], env=env, cwd=ROOT)
    try:
        wait_port(up_port)
        wait_port(port)
        time.sleep(0.5)
        key = asyncio.run(seed(url, admin, upstream))
        time.sleep(1.5)  # the catalog reload sees the new key and channel
        direct, through = asyncio.run(measure(url, upstream, key, a.tasks))
        direct.sort()
        through.sort()
        d50, t50 = direct[len(direct) // 2] * 1000, through[len(through) // 2] * 1000
        print(f"upstream alone  p50 {d50:7.1f} ms   max {direct[-1] * 1000:7.1f} ms   ({a.tasks} generations)")
        print(f"through reapi   p50 {t50:7.1f} ms   max {through[-1] * 1000:7.1f} ms   "
              f"(submit to completed seen, polling every 5 ms; REAPI_TASK_POLL_MS={a.poll_ms}, {a.store})")
        print(f"added by reapi  p50 {t50 - d50:7.1f} ms")
    finally:
        for p in (server, mock):
            p.terminate()
            p.wait(30)
        if a.store == "postgres":
            subprocess.run(["psql", pg_admin, "-qc", f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'],
                           capture_output=True)


if __name__ == "__main__":
    main()
