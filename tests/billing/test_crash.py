"""kill -9 the gateway mid-stream: on restart the hold is released and the books verify."""
import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp

from tests.harness import ADMIN_KEY, UPSTREAM_KEY, free_port


async def wait_up(url: str, proc: subprocess.Popen) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            assert proc.poll() is None, "gateway exited"
            try:
                async with s.get(url + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("gateway did not start")


def serve(port: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reapi", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_kill_9_mid_stream_releases_hold_on_restart(tmp_path, upstream):
    db = f"sqlite:///{tmp_path}/crash.db"
    env = {**os.environ, "REAPI_DATABASE_URL": db, "REAPI_ADMIN_KEY": ADMIN_KEY, "REAPI_MAX_REQUEST_SECONDS": "2",
           "REAPI_LOG_LEVEL": "warning"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(port, env)
    try:
        await wait_up(url, proc)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with aiohttp.ClientSession(headers=admin) as s:
            await s.put(url + "/admin/models/gpt-5.5", json={
                "input_usd_per_mtok": "5", "output_usd_per_mtok": "30", "context_window": 1000000,
                "max_output_tokens": 1000})
            await s.post(url + "/admin/channels", json={"name": "m", "type": "openai", "base_url": upstream.url + "/v1",
                                                        "api_key": UPSTREAM_KEY, "models": ["gpt-5.5"]})
            acc = await (await s.post(url + "/admin/accounts", json={"name": "a"})).json()
            await s.post(url + f"/admin/accounts/{acc['id']}/credits", json={"amount_usd": "1.00"})
            key = (await (await s.post(url + f"/admin/accounts/{acc['id']}/keys", json={"name": "k"})).json())["key"]
        body = {"model": "gpt-5.5", "stream": True,
                "messages": [{"role": "user", "content": "[mock words=100] [mock chunk_delay_ms=100]"}]}
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/v1/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status == 200
                await r.content.readline()
                held = r.headers["x-reapi-balance-usd"]
                assert held != "1.00"  # the hold is taken
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)
        # the hold survived the crash
        out = subprocess.run([sys.executable, "-m", "reapi", "ledger", "verify"], env=env, capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stdout  # balances agree with the ledger, hold included
        time.sleep(2.1)  # older than REAPI_MAX_REQUEST_SECONDS
        proc = serve(port, env)
        await wait_up(url, proc)  # start-up sweeps abandoned holds
        async with aiohttp.ClientSession(headers=admin) as s:
            got = await (await s.get(url + f"/admin/accounts/{acc['id']}")).json()
            usage = await (await s.get(url + f"/admin/accounts/{acc['id']}/usage")).json()
        assert got["balance_usd"] == "1.00"
        assert usage["data"][0]["status"] == "expired" and usage["data"][0]["cost_usd"] == "0.00"
        out = subprocess.run([sys.executable, "-m", "reapi", "ledger", "verify"], env=env, capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stdout
        assert "ledger ok" in out.stdout
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_ledger_verify_fails_on_tampering(tmp_path):
    import sqlite3

    from reapi.store.db import migrate

    db = f"sqlite:///{tmp_path}/t.db"
    migrate(db)
    env = {**os.environ, "REAPI_DATABASE_URL": db}
    subprocess.run([sys.executable, "-m", "reapi", "accounts", "create", "x", "--credit", "5"], env=env, check=True,
                   capture_output=True)
    ok = subprocess.run([sys.executable, "-m", "reapi", "ledger", "verify"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0
    con = sqlite3.connect(f"{tmp_path}/t.db")
    con.execute("UPDATE accounts SET balance_nano = balance_nano + 1")
    con.commit()
    bad = subprocess.run([sys.executable, "-m", "reapi", "ledger", "verify"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "!= ledger sum" in bad.stdout
