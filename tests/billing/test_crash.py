"""kill -9 a gateway mid-stream: its hold is released as soon as its lease runs out, by the next
instance to start or by one already running; a live instance's holds are never released by
another. Real `reapi serve` processes on SQLite and PostgreSQL."""
import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp

from tests.harness import ADMIN_KEY, UPSTREAM_KEY, free_port

LEASE_S = 3  # renewed every second, swept every second
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SLOW = {"model": "gpt-5.5", "stream": True,
        "messages": [{"role": "user", "content": "[mock words=300] [mock chunk_delay_ms=100]"}]}


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


class Instance:
    def __init__(self, env: dict) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = serve(self.port, env)

    async def up(self) -> "Instance":
        await wait_up(self.url, self.proc)
        return self

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


async def configure(url: str, upstream) -> tuple[int, str]:
    async with aiohttp.ClientSession(headers=ADMIN) as s:
        await s.put(url + "/admin/models/gpt-5.5", json={
            "input_usd_per_mtok": "5", "output_usd_per_mtok": "30", "context_window": 1000000,
            "max_output_tokens": 1000})
        await s.post(url + "/admin/channels", json={"name": "m", "type": "openai", "base_url": upstream.url + "/v1",
                                                    "api_key": UPSTREAM_KEY, "models": ["gpt-5.5"]})
        acc = await (await s.post(url + "/admin/accounts", json={"name": "a"})).json()
        await s.post(url + f"/admin/accounts/{acc['id']}/credits", json={"amount_usd": "1.00"})
        key = (await (await s.post(url + f"/admin/accounts/{acc['id']}/keys", json={"name": "k"})).json())["key"]
    return acc["id"], key


async def usage(url: str, account_id: int) -> list[dict]:
    async with aiohttp.ClientSession(headers=ADMIN) as s:
        return (await (await s.get(url + f"/admin/accounts/{account_id}/usage")).json())["data"]


async def open_stream(session: aiohttp.ClientSession, url: str, key: str):
    """A slow stream, started: returns the response (the hold is taken) and its balance header."""
    r = await session.post(url + "/v1/chat/completions", json=SLOW, headers={"Authorization": f"Bearer {key}"})
    assert r.status == 200
    await r.content.readline()
    assert r.headers["x-reapi-balance-usd"] != "1.00"  # the hold is taken
    return r


async def released_after(url: str, account_id: int, request_id: str, since: float, limit: float = 20) -> float:
    """Seconds from `since` until the request's hold is released as abandoned."""
    while True:
        rec = next(u for u in await usage(url, account_id) if u["request_id"] == request_id)
        if rec["status"] != "pending":
            assert rec["status"] == "expired" and rec["cost_usd"] == "0.00", rec
            return time.monotonic() - since
        assert time.monotonic() - since < limit, "hold not released"
        await asyncio.sleep(0.1)


def verify(env: dict) -> str:
    out = subprocess.run([sys.executable, "-m", "reapi", "ledger", "verify"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    return out.stdout


async def test_kill_9_mid_stream_releases_the_hold_within_seconds(store_url, upstream):
    # REAPI_MAX_REQUEST_SECONDS stays at its default (an hour): only the lease can release the hold.
    env = {**os.environ, "REAPI_DATABASE_URL": store_url, "REAPI_ADMIN_KEY": ADMIN_KEY,
           "REAPI_LEASE_SECONDS": str(LEASE_S), "REAPI_LOG_LEVEL": "warning"}
    a = await Instance(env).up()
    b = c = None
    try:
        account, key = await configure(a.url, upstream)
        async with aiohttp.ClientSession() as s:
            r = await open_stream(s, a.url, key)
            request_id = r.headers["x-request-id"]
            a.kill()
            killed = time.monotonic()
            r.close()
        verify(env)  # the hold survived the crash; balances agree with the ledger, hold included
        b = await Instance(env).up()  # a restart: a new instance, with a lease of its own
        took = await released_after(b.url, account, request_id, killed)
        print(f"\nhold of the killed instance released {took:.2f} s after kill -9 (lease {LEASE_S} s)")
        assert took < LEASE_S + 4
        assert "ledger ok" in verify(env)

        # Two live instances: C's sweeper never releases B's open hold, however long it runs.
        c = await Instance(env).up()
        async with aiohttp.ClientSession() as s:
            r = await open_stream(s, b.url, key)
            live = r.headers["x-request-id"]
            await asyncio.sleep(3 * LEASE_S)  # many renewals and sweeps of both instances
            [rec] = [u for u in await usage(c.url, account) if u["request_id"] == live]
            assert rec["status"] == "pending"
            # and when B dies, C (already running) releases it
            b.kill()
            killed = time.monotonic()
            r.close()
        took = await released_after(c.url, account, live, killed)
        print(f"hold released by a running instance {took:.2f} s after kill -9")
        assert took < LEASE_S + 3
        async with aiohttp.ClientSession(headers=ADMIN) as s:
            got = await (await s.get(c.url + f"/admin/accounts/{account}")).json()
        assert got["balance_usd"] == "1.00"
        assert "ledger ok" in verify(env)
    finally:
        for inst in (a, b, c):
            if inst is not None:
                inst.stop()


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
    con.execute("UPDATE wallets SET balance_nano = balance_nano + 1 WHERE wallet = 'chat'")
    con.commit()
    bad = subprocess.run([sys.executable, "-m", "reapi", "ledger", "verify"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "!= ledger sum" in bad.stdout
