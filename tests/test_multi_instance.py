"""Several gateway deployments as real processes on one PostgreSQL and one Redis.

Three deployments share a fresh PostgreSQL database and a private redis-server (one
test stops and restarts it, so it is never the shared 6379 one): A and B run one
process each, C runs ``--workers 2`` (two processes behind one port). The demo
upstream runs as a subprocess too. Nothing of ours is mocked and every deployment
keeps the default ``REAPI_CONFIG_POLL_MS`` (1 s), since the 2 s revocation claim
is about the default.

A request to C lands on either worker. Where a claim is about *every* process, the
test finds out which worker answered a connection (the worker holding the server
side of that TCP connection, from /proc) and keeps asking until each worker has
answered, instead of hoping both were hit.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Awaitable, Callable

import openai
import orjson
import pytest
import redis

from tests.harness import ADMIN_KEY, UPSTREAM_KEY, create_pg_database, drop_pg_database, free_port

# One xdist worker runs the whole module, so only one set of processes is started.
pytestmark = pytest.mark.xdist_group("multi_instance")

MODEL = "gpt-5.5"
PRICE = {"input_usd_per_mtok": "5.00", "output_usd_per_mtok": "30.00", "context_window": 100_000,
         "max_output_tokens": 1_000}
LIMITER_DOWN = "Redis rate limiter unavailable"  # reapi/limits/redis_backend.py, logged once per outage


# ---- processes ------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server side of the loopback connection client_port -> server_port."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if int(p[1].rsplit(":", 1)[1], 16) == server_port and int(p[2].rsplit(":", 1)[1], 16) == client_port:
                return p[9] if p[9] != "0" else None
    return None


def _stop(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # its own session (start_new_session): this group is only what we started
        proc.wait(5)


class Deployment:
    """One `reapi serve` (a single process, or a supervisor with N worker processes)."""

    def __init__(self, name: str, workers: int, env: dict, logdir: Path) -> None:
        self.name = name
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logdir / f"gateway-{name}.log"
        args = [sys.executable, "-m", "reapi", "serve", "--port", str(self.port)]
        if workers != 1:  # 1 is the default
            args += ["--workers", str(workers)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids: list[int] = []

    def wait_started(self, deadline: float) -> None:
        """Every worker has completed its start-up (uvicorn logs it once per worker)."""
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"gateway {self.name} exited:\n{self.log_text()[-3000:]}"
            if self.log_text().count("Application startup complete.") >= self.workers:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"gateway {self.name} did not start:\n{self.log_text()[-3000:]}")
        if self.workers == 1:
            self.pids = [self.proc.pid]
        else:  # uvicorn spawns its workers with multiprocessing (plus a resource tracker, not a worker)
            self.pids = sorted(p for p in _children(self.proc.pid) if "spawn_main" in _cmdline(p))
        assert len(self.pids) == self.workers, (self.name, self.pids)
        while True:  # uvicorn logs the start-up before it binds the port
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=10) as r:
                    assert r.status == 200
                    return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, self.log_text()[-3000:]
                time.sleep(0.05)

    def worker_of(self, client_port: int | None) -> int | None:
        """Which of our processes accepted the connection from client_port."""
        if self.workers == 1:
            return self.pids[0]
        if client_port is None:
            return None
        inode = _server_socket_inode(self.port, client_port)
        if inode is None:
            return None
        target = f"socket:[{inode}]"
        for pid in self.pids:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
                except OSError:
                    pass
        return None

    def alive(self) -> bool:
        return self.proc.poll() is None and all(Path(f"/proc/{p}").exists() and _cmdline(p) for p in self.pids) \
            and (self.workers == 1 or sorted(p for p in _children(self.proc.pid)
                                             if "spawn_main" in _cmdline(p)) == self.pids)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        _stop(self.proc)
        for pid in self.pids:  # workers orphaned by a killed supervisor
            if _cmdline(pid) and "spawn_main" in _cmdline(pid):
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass


class RedisServer:
    """A private redis-server that the tests may stop and restart on the same port."""

    def __init__(self, logdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = logdir / "redis.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                r = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
                try:
                    if r.ping():
                        return
                finally:
                    r.close()
            except redis.RedisError:
                time.sleep(0.02)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        _stop(self.proc, 10)
        self.proc = None


@dataclass
class Cluster:
    a: Deployment
    b: Deployment
    c: Deployment
    redis: RedisServer
    env: dict
    upstream_url: str

    @property
    def all(self) -> list[Deployment]:
        return [self.a, self.b, self.c]

    def logs(self) -> str:
        return "\n".join(f"--- {d.name} ---\n{d.log_text()[-2000:]}" for d in self.all)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("redis-server") is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("redis-server binary not on PATH")
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc to tell which worker answered")
    logdir = tmp_path_factory.mktemp("multi_instance")
    db = asyncio.run(create_pg_database())
    rs = RedisServer(logdir)
    upstream = None
    deployments: list[Deployment] = []
    try:
        rs.start()
        # Only our settings: nothing inherited from the caller's REAPI_* environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REAPI_")}
        env.update(REAPI_DATABASE_URL=db, REAPI_REDIS_URL=rs.url, REAPI_ADMIN_KEY=ADMIN_KEY)
        mig = subprocess.run([sys.executable, "-m", "reapi", "migrate"], env=env, capture_output=True, text=True,
                             timeout=120)
        assert mig.returncode == 0, mig.stdout + mig.stderr
        up_port = free_port()
        with (logdir / "upstream.log").open("wb") as out:
            upstream = subprocess.Popen(
                [sys.executable, "-m", "reapi", "mock-upstream", "--port", str(up_port), "--api-key", UPSTREAM_KEY],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        for name, workers in (("A", 1), ("B", 1), ("C", 2)):
            deployments.append(Deployment(name, workers, env, logdir))
        deadline = time.monotonic() + 120  # four Python processes starting at once on a busy 2-core box
        for d in deployments:
            d.wait_started(deadline)
        while True:
            assert upstream.poll() is None, (logdir / "upstream.log").read_text(errors="replace")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{up_port}/_mock/stats", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mock upstream did not start"
                time.sleep(0.05)
        yield Cluster(*deployments, redis=rs, env=env, upstream_url=f"http://127.0.0.1:{up_port}")
    finally:
        for d in deployments:
            d.stop()
        _stop(upstream, 10)
        rs.stop()
        asyncio.run(drop_pg_database(db))


@pytest.fixture(autouse=True)
def _show_logs_on_failure(cluster):
    """Print what each process logged during the test; pytest shows it only if the test failed."""
    marks = {d.name: len(d.log_text()) for d in cluster.all}
    yield
    for d in cluster.all:
        new = d.log_text()[marks[d.name]:]
        if new.strip():
            print(f"--- gateway {d.name} (pids {d.pids}) logged during this test ---\n{new[-4000:]}")


# ---- HTTP -----------------------------------------------------------------------------

@dataclass
class Reply:
    pid: int | None  # the process that answered
    status: int
    headers: dict[str, str]
    body: bytes
    sent: float  # time.monotonic()
    recv: float

    def json(self):
        return orjson.loads(self.body)

    @property
    def code(self) -> str | None:
        try:
            return self.json()["error"]["code"]
        except Exception:
            return None


async def call(d: Deployment, method: str, path: str, *, key: str | None = None, json=None,
               admin: bool = False, timeout: float = 30) -> Reply:
    """One HTTP/1.1 request on a new connection, so that on C the kernel hands it to either
    worker; the connection stays open until we have looked up which process accepted it."""
    payload = b"" if json is None else orjson.dumps(json)
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{d.port}", f"Content-Length: {len(payload)}"]
    if json is not None:
        head.append("Content-Type: application/json")
    if admin:
        head.append(f"Authorization: Bearer {ADMIN_KEY}")
    elif key:
        head.append(f"Authorization: Bearer {key}")
    sent = time.monotonic()
    async with asyncio.timeout(timeout):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
        except OSError:
            if not d.alive():
                raise AssertionError(f"gateway {d.name} is gone (exit code {d.proc.poll()}); it was not stopped "
                                     f"by this test:\n{d.log_text()[-2000:]}") from None
            raise
        try:
            client_port = writer.get_extra_info("sockname")[1]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            status = int((await reader.readline()).split()[1])
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                k, _, v = line.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            if headers.get("transfer-encoding") == "chunked":
                body = b""
                while size := int((await reader.readline()).strip(), 16):
                    body += await reader.readexactly(size)
                    await reader.readline()
                await reader.readline()
            else:
                body = await reader.readexactly(int(headers.get("content-length", "0")))
            recv = time.monotonic()
            pid = d.worker_of(client_port)
        finally:
            writer.close()
    return Reply(pid, status, headers, body, sent, recv)


async def admin(d: Deployment, method: str, path: str, json=None, expect: int | None = None):
    r = await call(d, method, path, json=json, admin=True)
    if expect is not None:
        assert r.status == expect, (method, path, r.status, r.body)
    return r.json()


def chat(key: str, group: str, text: str = "hi [mock words=3]", max_tokens: int = 16):
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
            "group": group}
    return lambda d: call(d, "POST", "/v1/chat/completions", key=key, json=body)


async def each_worker(d: Deployment, make: Callable[[Deployment], Awaitable[Reply]], ok: Callable[[Reply], bool],
                      timeout: float = 10.0, what: str = "") -> dict[int, Reply]:
    """Repeat `make` until every process of `d` has given an answer satisfying `ok`."""
    got: dict[int, Reply] = {}
    last: list[Reply] = []
    deadline = time.monotonic() + timeout
    while set(got) != set(d.pids):
        assert time.monotonic() < deadline, (
            f"{d.name}: not every worker satisfied {what!r} within {timeout}s; satisfied: {sorted(got)} of "
            f"{d.pids}; last answers: {[(x.pid, x.status, x.body[:200]) for x in last[-4:]]}")
        r = await make(d)
        last.append(r)
        if r.pid in d.pids and r.pid not in got and ok(r):
            got[r.pid] = r
        elif r.pid not in got:
            await asyncio.sleep(0.02)
    return got


# ---- configuration through the admin API ----------------------------------------------

async def provision(cl: Cluster, *, limits: dict | None = None, credit: str = "10.00",
                    extra_groups: tuple[str, ...] = (), channels: list[dict] | None = None) -> dict:
    """Through A: the price, a fresh group (with `limits`), channels serving it, a funded account
    and a key restricted to the group; then wait until every process of every deployment serves it."""
    group = "g-" + uuid.uuid4().hex[:10]
    groups = [group, *extra_groups]
    await admin(cl.a, "PUT", f"/admin/models/{MODEL}", PRICE, expect=200)
    for g in groups:
        await admin(cl.a, "PUT", f"/admin/groups/{g}", (limits or {}) if g == group else {}, expect=200)
    chans = []
    for ch in channels or [{"name": "mock", "base_url": cl.upstream_url + "/v1"}]:
        chans.append(await admin(cl.a, "POST", "/admin/channels", {
            "type": "openai", "api_key": UPSTREAM_KEY, "models": [MODEL], "groups": groups, **ch}, expect=201))
    acc = await admin(cl.a, "POST", "/admin/accounts", {"name": group}, expect=201)
    await admin(cl.a, "POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": credit}, expect=201)
    key = await admin(cl.a, "POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k", "groups": groups},
                      expect=201)
    # The key is written last, and each instance loads its whole catalog at once, so a process that
    # knows the key also knows the group, its limits and its channels. /v1/models touches no limit
    # and no money.
    for d in cl.all:
        await each_worker(d, lambda d: call(d, "GET", "/v1/models", key=key["key"]),
                          lambda r: r.status == 200 and MODEL in [m["id"] for m in r.json()["data"]],
                          timeout=15, what="key visible")
    return {"group": group, "account_id": acc["id"], "key": key["key"], "key_id": key["id"],
            "channels": [c["id"] for c in chans]}


def nano(usd: str) -> int:
    n = Decimal(usd) * 10**9
    assert n == n.to_integral_value(), usd
    return int(n)


async def usage(cl: Cluster, account_id: int) -> list[dict]:
    return (await admin(cl.a, "GET", f"/admin/accounts/{account_id}/usage?limit=1000", expect=200))["data"]


# ---- tests ----------------------------------------------------------------------------

async def test_group_limit_holds_across_all_processes(cluster):
    """total_rpm=6 on a group: 18 concurrent calls over A, B and C's two workers admit exactly 6.

    GCRA with burst = limit: an idle bucket admits exactly 6 at once, and the next unit
    refills only 60/6 = 10 s later, so a burst well inside 10 s admits exactly 6. With
    per-process limits the four processes would admit all 18.
    """
    cl = cluster
    limit = 6
    s = await provision(cl, limits={"total_rpm": limit}, credit="1.00")
    send = chat(s["key"], s["group"])
    t0 = time.monotonic()
    replies = await asyncio.gather(*(send(cl.all[i % 3]) for i in range(3 * limit)))
    elapsed = time.monotonic() - t0
    assert elapsed < 9.0, f"burst took {elapsed:.1f}s: a refill (every 10 s) could have admitted more"
    statuses = [r.status for r in replies]
    assert sorted(set(statuses)) == [200, 429], (statuses, cl.logs())
    ok = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status == 429]
    assert len(ok) == limit, (statuses, [(r.pid, r.status) for r in replies])
    # Every admission went through one shared bucket, one at a time: remaining counts down 5..0.
    assert all(r.headers["x-ratelimit-limit-requests"] == str(limit) for r in replies)
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in ok) == list(range(limit))
    for r in refused:
        err = r.json()["error"]
        assert (err["code"], err["type"]) == ("rate_limit_exceeded", "requests"), err
        assert 1 <= int(r.headers["retry-after"]) <= 10, r.headers
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
    # Refused calls never held money nor reached the upstream: one usage record per admitted call.
    recs = await usage(cl, s["account_id"])
    assert len(recs) == limit and {x["status"] for x in recs} == {"ok"}
    assert {x["request_id"] for x in recs} == {r.headers["x-request-id"] for r in ok}


async def test_revoked_key_is_refused_by_every_process_within_2s(cluster):
    """A key created through A works on B and on both workers of C; revoked through A, every
    process answers 401 invalid_api_key within 2 s (default REAPI_CONFIG_POLL_MS)."""
    cl = cluster
    s = await provision(cl)
    send = chat(s["key"], s["group"])
    for d in (cl.b, cl.c):  # used successfully on every process of B and C
        await each_worker(d, send, lambda r: r.status == 200, what="chat succeeds")

    seen: dict[str, list[Reply]] = {d.name: [] for d in cl.all}
    revoked_at = time.monotonic()  # before the DELETE is sent: conservative
    out = await admin(cl.a, "DELETE", f"/admin/keys/{s['key_id']}", expect=200)
    assert out == {"id": s["key_id"], "revoked": True}

    async def poll(d: Deployment) -> None:
        stop_at = revoked_at + 6.0
        while time.monotonic() < stop_at:
            r = await send(d)
            seen[d.name].append(r)
            per_pid = {p: [x.status for x in seen[d.name] if x.pid == p] for p in d.pids}
            if all(len(v) >= 3 and v[-3:] == [401] * 3 for v in per_pid.values()):
                return
            await asyncio.sleep(0.02)

    await asyncio.gather(*(poll(d) for d in cl.all))

    report = {}
    for d in cl.all:
        rs = seen[d.name]
        assert {r.status for r in rs} <= {200, 401}, [(r.status, r.body[:200]) for r in rs]
        for r in rs:
            if r.status == 401:
                err = r.json()["error"]
                assert (err["code"], err["type"]) == ("invalid_api_key", "invalid_request_error"), err
        for pid in d.pids:
            mine = [r for r in rs if r.pid == pid]
            statuses = [r.status for r in mine]
            assert 401 in statuses, (d.name, pid, statuses)
            first = statuses.index(401)
            assert 200 not in statuses[first:], (d.name, pid, statuses)  # once refused, refused for good
            report[f"{d.name}/{pid}"] = round(mine[first].recv - revoked_at, 3)
    # the instance that took the revoke reloads its catalog before answering the DELETE
    assert seen["A"][0].status == 401
    timeline = {f"{d.name}/{r.pid}": [] for d in cl.all for r in seen[d.name]}
    for d in cl.all:
        for r in seen[d.name]:
            timeline[f"{d.name}/{r.pid}"].append((round(r.recv - revoked_at, 3), r.status))
    assert max(report.values()) < 2.0, f"s from revoke to 401: {report}; (s, status) per process: {timeline}"
    print("revocation reached every process after (s):", report)


async def test_concurrent_billing_across_instances_never_overdraws(cluster):
    """90 concurrent calls through the official SDK, spread over A, B and C, on an account that
    affords about 20 worst-case calls: some 200, the rest 402 insufficient_balance; the balance
    never goes negative, equals credit minus the charges, and `reapi ledger verify` passes."""
    from reapi.billing.tokens import count_prompt

    cl = cluster
    text = "[mock words=100] [mock prompt_tokens=10]"
    msgs = [{"role": "user", "content": text}]
    # Our hold: our own prompt count at $5/M plus the 100-token output cap at $30/M.
    worst = count_prompt({"model": MODEL, "messages": msgs, "max_tokens": 100}) * 5_000 + 100 * 30_000
    credit = 20 * worst
    s = await provision(cl, credit=str(Decimal(credit) / 10**9))  # a group with no limits
    clients = [openai.AsyncOpenAI(base_url=d.url + "/v1", api_key=s["key"], max_retries=0, timeout=60)
               for d in cl.all]

    async def one(i: int):
        client = clients[i % 3]
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=msgs, max_tokens=100, extra_body={"group": s["group"]})
        except openai.APIStatusError as e:
            return e.status_code, (e.code, e.type, e.response.headers.get("x-should-retry")), i % 3
        comp = raw.parse()
        assert comp.choices[0].message.content
        return 200, (raw.headers["x-reapi-cost-usd"], raw.headers["x-request-id"]), i % 3

    try:
        results = await asyncio.gather(*(one(i) for i in range(90)))
    finally:
        for c in clients:
            await c.close()
    statuses = [st for st, _, _ in results]
    ok = [x for st, x, _ in results if st == 200]
    per_instance = {cl.all[j].name: [st for st, _, k in results if k == j].count(200) for j in range(3)}
    assert set(statuses) == {200, 402}, (statuses, cl.logs())
    # A call is refused only once less than a minimal call (prompt + 16 tokens) is left, and each
    # admitted call holds at most `worst`: so at least 20 were admitted before the first refusal.
    assert len(ok) >= 20, (len(ok), per_instance)
    print(f"{len(ok)} of 90 admitted, per deployment: {per_instance}")
    for st, detail, _ in results:
        if st == 402:
            assert detail == ("insufficient_balance", "insufficient_quota", "false"), detail

    balance = nano((await admin(cl.a, "GET", f"/admin/accounts/{s['account_id']}", expect=200))["balance_usd"])
    recs = await usage(cl, s["account_id"])
    charged = sum(nano(r["cost_usd"]) for r in recs)
    assert balance >= 0
    assert balance == credit - charged, (balance, credit, charged)
    # one settled usage record per 200, and what the clients were told they paid is what was charged
    assert len(recs) == len(ok) and {r["status"] for r in recs} == {"ok"}
    assert {r["request_id"] for r in recs} == {rid for _, rid in ok}
    assert sum(nano(cost) for cost, _ in ok) == charged
    ledger = (await admin(cl.a, "GET", f"/admin/accounts/{s['account_id']}/ledger?limit=1000", expect=200))["data"]
    assert sum(nano(e["amount_usd"]) for e in ledger) == balance

    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "reapi", "ledger", "verify"],
                                  env=cl.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ledger ok" in out.stdout


async def test_redis_outage_falls_back_per_process_then_recovers(cluster):
    """redis-server stopped: calls still succeed (no 5xx, every process alive, /healthz 200),
    /readyz says 503 with redis "unreachable", limits hold per process (each process admits the
    full limit on its own); restarted on the same port: /readyz is ready again within seconds,
    calls succeed, and after the limiter's 5 s retry interval the limit is shared again.

    Limited calls during the outage go to A and B only: a request to C picks a worker at random,
    and a worker left in fallback would keep admitting on its own until a later call probes Redis.
    """
    cl = cluster
    limit = 3  # 20 s per unit: nothing refills during this test
    unlimited = "u-" + uuid.uuid4().hex[:10]
    s = await provision(cl, limits={"total_rpm": limit}, extra_groups=(unlimited,))
    limited_call, free_call = chat(s["key"], s["group"]), chat(s["key"], unlimited)
    logs_at = {d.name: len(d.log_text()) for d in cl.all}
    pids = {d.name: list(d.pids) for d in cl.all}

    # Redis up: the limit is shared (A takes one unit, B sees the second one go)
    r = await limited_call(cl.a)
    assert (r.status, r.headers["x-ratelimit-remaining-requests"]) == (200, str(limit - 1)), r.body
    r = await limited_call(cl.b)
    assert (r.status, r.headers["x-ratelimit-remaining-requests"]) == (200, str(limit - 2)), r.body

    cl.redis.stop()
    try:
        # not ready, on every process
        for d in cl.all:
            got = await each_worker(d, lambda d: call(d, "GET", "/readyz"), lambda r: r.status == 503,
                                    what="/readyz 503")
            for rep in got.values():
                assert rep.json() == {"status": "unavailable", "checks": {"store": "ok", "redis": "unreachable"}}

        # limits still apply, per process: A and B each admit exactly `limit` of limit + 3
        outage: dict[str, list[Reply]] = {}
        for d in (cl.a, cl.b):
            outage[d.name] = await asyncio.gather(*(limited_call(d) for _ in range(limit + 3)))
        for name, rs in outage.items():
            statuses = [x.status for x in rs]
            assert sorted(statuses) == [200] * limit + [429] * 3, (name, statuses, cl.logs())
            assert all(x.code == "rate_limit_exceeded" and "retry-after" in x.headers
                       for x in rs if x.status == 429)
            assert max(x.recv - x.sent for x in rs) < 5.0  # not hung on the dead Redis
        last_limited = max(x.recv for rs in outage.values() for x in rs)

        # unlimited calls succeed everywhere, on every worker
        for d in cl.all:
            await each_worker(d, free_call, lambda r: r.status == 200, what="chat during outage")
            await each_worker(d, lambda d: call(d, "GET", "/healthz"), lambda r: r.status == 200, what="/healthz")
        for d in cl.all:
            assert d.alive() and d.pids == pids[d.name], (d.name, d.pids, cl.logs())

        # the fallback was logged once per process and per outage
        for d in (cl.a, cl.b):
            assert d.log_text()[logs_at[d.name]:].count(LIMITER_DOWN) == 1, d.log_text()[logs_at[d.name]:]
    finally:
        restarted_at = time.monotonic()
        cl.redis.start()  # same port, empty data (fresh script cache too)

    # ready again within a few seconds, on every process, and calls succeed
    for d in cl.all:
        got = await each_worker(d, lambda d: call(d, "GET", "/readyz"), lambda r: r.status == 200,
                                timeout=5.0, what="/readyz 200")
        for rep in got.values():
            assert rep.json() == {"status": "ok", "checks": {"store": "ok", "redis": "ok"}}
    ready_after = time.monotonic() - restarted_at
    for d in cl.all:
        await each_worker(d, free_call, lambda r: r.status == 200, what="chat after restart")

    # Shared limits resume once each limiter probes Redis again (5 s after its last failure).
    # In fallback, A and B would refuse now: each spent its whole in-process allowance above.
    await asyncio.sleep(max(0.0, last_limited + 5.3 - time.monotonic()))
    r = await limited_call(cl.a)
    assert (r.status, r.headers.get("x-ratelimit-remaining-requests")) == (200, str(limit - 1)), r.body
    r = await limited_call(cl.b)
    assert (r.status, r.headers.get("x-ratelimit-remaining-requests")) == (200, str(limit - 2)), r.body
    for d in cl.all:
        assert d.alive() and d.pids == pids[d.name]
    print(f"/readyz ready on every process {ready_after:.2f}s after redis-server restarted")


async def test_dead_channel_cooldown_is_shared_by_every_process(cluster):
    """A channel on a closed port (priority 1) and a healthy one (priority 0) in one group:
    after REAPI_CHANNEL_FAILURES (3) failures on A, B and both workers of C learn through Redis
    that it is cooling down, and skip it without ever failing on it themselves."""
    cl = cluster
    dead_port = free_port()  # nothing listens there
    s = await provision(cl, channels=[
        {"name": "dead", "base_url": f"http://127.0.0.1:{dead_port}/v1", "priority": 1},
        {"name": "healthy", "base_url": cl.upstream_url + "/v1", "priority": 0}])
    dead, healthy = s["channels"]
    send = chat(s["key"], s["group"])
    for _ in range(3):
        r = await send(cl.a)
        assert (r.status, r.code) == (502, "upstream_unreachable"), r.body
    opened_at = time.monotonic()
    r = await send(cl.a)
    assert r.status == 200  # A now skips the dead channel

    def is_open(r: Reply) -> bool:
        return r.status == 200 and r.json()["health"]["state"] == "open"

    learned = {}
    for d in (cl.b, cl.c):
        got = await each_worker(d, lambda d: call(d, "GET", f"/admin/channels/{dead}", admin=True), is_open,
                                timeout=10.0, what="dead channel open")
        for pid, rep in got.items():
            learned[f"{d.name}/{pid}"] = round(rep.recv - opened_at, 3)
            # these processes never called the dead channel: the 3 failures are A's, adopted from Redis
            assert rep.json()["health"]["consecutive_failures"] == 3, rep.json()
    assert max(learned.values()) < 3.0, learned  # health sync runs every second

    answers: list[Reply] = []

    async def send_and_keep(d: Deployment) -> Reply:
        answers.append(await send(d))
        return answers[-1]

    for d in (cl.b, cl.c):
        for _ in range(2):  # at least two calls answered by every process of B and C
            await each_worker(d, send_and_keep, lambda r: True, what="chat")
    assert [r.status for r in answers] == [200] * len(answers), [(r.pid, r.status, r.body[:200]) for r in answers]
    recs = await usage(cl, s["account_id"])
    assert sorted(r["channel_id"] for r in recs if r["status"] == "failed") == [dead] * 3
    assert {r["channel_id"] for r in recs if r["status"] == "ok"} == {healthy}
    print("processes learned the cool-down after (s):", learned)
