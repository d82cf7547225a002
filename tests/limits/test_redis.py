"""RedisLimiter against a real Redis: sharing, atomicity under concurrency, expiry,
outages (fallback, bounded latency, one log line) and recovery."""
from __future__ import annotations

import asyncio
import logging
import time

import redis

from reapi.limits import MemoryLimiter, RedisLimiter, Rule



def _sync(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1)


async def test_two_gateways_share_one_limit(redis_url, prefix):
    a = RedisLimiter(redis_url, prefix=prefix, timeout_s=2.0)
    b = RedisLimiter(redis_url, prefix=prefix, timeout_s=2.0)
    rule = [Rule("group:default", rpm=10, tpm=None)]
    try:
        results = []
        for i in range(10):
            results.append((await (a if i % 2 else b).admit(rule, 0)).allowed)
        assert all(results)
        da, db = await a.admit(rule, 0), await b.admit(rule, 0)
        assert not da.allowed and not db.allowed
        assert da.kind == "requests" and 5.5 < da.retry_after_s <= 6.0  # 60/10 s, less elapsed time
        assert db.headers["x-ratelimit-remaining-requests"] == "0"
        # tokens too, and an adjust by one gateway is seen by the other
        trule = [Rule("acct:x", rpm=None, tpm=1_000)]
        assert (await a.admit(trule, 900)).allowed
        assert not (await b.admit(trule, 200)).allowed
        await a.adjust(trule, -500)
        assert (await b.admit(trule, 200)).allowed
        assert not a.degraded and not b.degraded
    finally:
        await a.close()
        await b.close()


async def test_200_concurrent_admits_against_rpm_50(redis_url, prefix):
    # A generous deadline: this test is about atomicity, and a CPU-starved CI box
    # must not turn it into a (correctly handled, but here unwanted) fallback.
    a = RedisLimiter(redis_url, prefix=prefix, timeout_s=2.0)
    b = RedisLimiter(redis_url, prefix=prefix, timeout_s=2.0)
    acct = Rule("acct:c", rpm=50, tpm=None)  # refills one request per 1.2 s
    group = Rule("group:c", rpm=200, tpm=None)  # one per 0.3 s
    try:
        t0 = time.monotonic()
        ds = await asyncio.gather(
            *[(a if i % 2 else b).admit([acct, group], 10) for i in range(200)])
        elapsed = time.monotonic() - t0
        assert not a.degraded and not b.degraded
        allowed = sum(d.allowed for d in ds)
        # exactly 50, plus whatever refilled if the burst took longer than 1.2 s
        assert 50 <= allowed <= 50 + int(elapsed / 1.2), (allowed, elapsed)
        assert all(d.kind == "requests" for d in ds if not d.allowed)
        # all-or-nothing under concurrency: the 150 refused calls did not charge the
        # group (else it would be empty), only the admitted ones did
        d = await a.admit([group], 0)
        remaining = int(d.headers["x-ratelimit-remaining-requests"])
        elapsed = time.monotonic() - t0
        assert 200 - allowed - 1 <= remaining <= 200 - allowed - 1 + elapsed / 0.3 + 1
    finally:
        await a.close()
        await b.close()


async def test_concurrent_token_corrections_are_coalesced_and_exact(redis_url, prefix):
    lim = RedisLimiter(redis_url, prefix=prefix, timeout_s=2.0)
    rule = [Rule("acct:co", rpm=None, tpm=100_000)]
    calls = 0
    real = lim._r.evalsha

    async def counting(*args):  # counts round trips to Redis; the script still runs for real
        nonlocal calls
        calls += 1
        return await real(*args)

    lim._r.evalsha = counting
    now = int(time.time() * 1e6)
    lim._clock_us = lambda: now  # time stands still: nothing refills while the test runs
    try:
        assert (await lim.admit(rule, 100_000)).allowed  # the bucket is now empty
        calls = 0
        # 100 corrections at once give back 100 x 300 tokens, in far fewer calls
        await asyncio.gather(*(lim.adjust(rule, -300) for _ in range(100)))
        assert calls <= 3, calls
        assert not (await lim.admit(rule, 30_001)).allowed  # exactly 30,000 came back
        assert (await lim.admit(rule, 30_000)).allowed
        # each caller returns only once its correction is applied
        await lim.adjust(rule, -1_000)
        assert (await lim.admit(rule, 1_000)).allowed
        assert not lim.degraded
    finally:
        await lim.close()


async def test_keys_expire_when_refilled(redis_url, prefix):
    lim = RedisLimiter(redis_url, prefix=prefix, timeout_s=2.0)
    r = _sync(redis_url)
    try:
        await lim.admit([Rule("key:e", rpm=60, tpm=6_000)], 100)
        assert 900 <= r.pttl(prefix + "key:e:r") <= 1000  # 1 request = 1 s at 60 rpm
        assert 900 <= r.pttl(prefix + "key:e:t") <= 1000  # 100 tokens = 1 s at 6000 tpm
        await lim.adjust([Rule("key:e", rpm=60, tpm=6_000)], -100)  # gave it all back
        assert r.exists(prefix + "key:e:t") == 0
        assert r.exists(prefix + "key:e:r") == 1
    finally:
        r.close()
        await lim.close()


async def test_noscript_is_reloaded(redis_server):
    redis_server.start()
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    lim = RedisLimiter(url, timeout_s=2.0)
    c = redis_server.client()
    try:
        rule = [Rule("k", rpm=2, tpm=None)]
        assert (await lim.admit(rule, 0)).allowed
        c.script_flush()
        assert (await lim.admit(rule, 0)).allowed
        assert not (await lim.admit(rule, 0)).allowed
        assert not lim.degraded
        # concurrent calls go as one pipeline: after a flush, each runs exactly once
        c.script_flush()
        many = [Rule("k2", rpm=10, tpm=None)]
        ds = await asyncio.gather(*(lim.admit(many, 0) for _ in range(25)))
        assert sum(d.allowed for d in ds) == 10 and not lim.degraded
    finally:
        c.close()
        await lim.close()


def _warnings(caplog):
    return [r for r in caplog.records if r.name == "reapi.limits" and r.levelno == logging.WARNING]


async def test_redis_down_falls_back_per_process(caplog):
    caplog.set_level(logging.INFO, logger="reapi.limits")
    lim = RedisLimiter("redis://127.0.0.1:1/0", retry_interval_s=0.05)  # nothing listens on port 1
    rule = [Rule("key:d", rpm=3, tpm=1_000)]
    try:
        results = []
        for i in range(8):
            t0 = time.monotonic()
            d = await lim.admit(rule, 100)
            assert time.monotonic() - t0 < 0.5
            results.append(d.allowed)
            if i == 4:
                await asyncio.sleep(0.06)  # past retry_interval: probes again (and fails)
        assert results == [True, True, True] + [False] * 5  # still limited, per process
        t0 = time.monotonic()
        await lim.adjust(rule, -50)
        assert time.monotonic() - t0 < 0.5
        assert lim.degraded
        assert len(_warnings(caplog)) == 1  # once per outage, not per call or per probe
        assert isinstance(lim.fallback, MemoryLimiter)
    finally:
        await lim.close()


async def test_hanging_redis_times_out_quickly(caplog):
    """A server that accepts but never answers: bounded by the 0.25 s socket timeouts."""
    caplog.set_level(logging.INFO, logger="reapi.limits")
    conns = []

    async def swallow(reader, writer):
        conns.append(writer)
        await reader.read(1 << 16)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lim = RedisLimiter(f"redis://127.0.0.1:{port}/0", retry_interval_s=60)
    try:
        rule = [Rule("key:h", rpm=2, tpm=None)]
        times, allowed = [], []
        for _ in range(4):
            t0 = time.monotonic()
            allowed.append((await lim.admit(rule, 0)).allowed)
            times.append(time.monotonic() - t0)
        assert allowed == [True, True, False, False]
        assert max(times) < 0.5
        assert max(times[1:]) < 0.05  # after the first timeout, no more waiting on Redis
        assert lim.degraded and len(_warnings(caplog)) == 1
    finally:
        await lim.close()
        for w in conns:
            w.close()
        server.close()
        await server.wait_closed()


async def test_hanging_redis_under_concurrency(caplog):
    """100 concurrent calls, 4 connection slots, a server that never answers: every
    call returns (from the fallback) within 0.5 s and the limit still holds."""
    caplog.set_level(logging.INFO, logger="reapi.limits")
    conns = []

    async def swallow(reader, writer):
        conns.append(writer)
        await reader.read(1 << 16)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lim = RedisLimiter(f"redis://127.0.0.1:{port}/0", retry_interval_s=60, max_connections=4)
    rule = [Rule("key:hc", rpm=10, tpm=None)]

    async def timed():
        t0 = time.monotonic()
        d = await lim.admit(rule, 0)
        return d.allowed, time.monotonic() - t0

    try:
        results = await asyncio.gather(*[timed() for _ in range(100)])
        assert max(t for _, t in results) < 0.5
        assert sum(ok for ok, _ in results) == 10
        assert len(conns) <= 4  # the burst did not open 100 connections
        assert lim.degraded and len(_warnings(caplog)) == 1
    finally:
        await lim.close()
        for w in conns:
            w.close()
        server.close()
        await server.wait_closed()


async def test_recovery_after_outage(redis_server, caplog):
    """Dead at start -> fallback; server starts -> Redis used; stops -> fallback; restarts -> Redis."""
    caplog.set_level(logging.INFO, logger="reapi.limits")
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    lim = RedisLimiter(url, prefix="rl:", retry_interval_s=0.1, timeout_s=1.0)
    rule = [Rule("key:r", rpm=100, tpm=None)]

    async def admit_fast():
        t0 = time.monotonic()
        d = await lim.admit(rule, 0)
        assert time.monotonic() - t0 < 1.0
        return d

    try:
        assert (await admit_fast()).allowed  # nothing on the port yet
        assert lim.degraded and len(_warnings(caplog)) == 1

        redis_server.start()
        await asyncio.sleep(0.11)
        d = await admit_fast()  # the probe: goes to Redis
        assert d.allowed and not lim.degraded
        c = redis_server.client()
        assert c.exists("rl:key:r:r") == 1
        assert any("restored" in r.getMessage() for r in caplog.records)
        d = await admit_fast()
        assert d.headers["x-ratelimit-remaining-requests"] == "98"  # shared state, 2 used
        c.close()

        redis_server.stop()
        for _ in range(3):
            assert (await admit_fast()).allowed
        assert lim.degraded and len(_warnings(caplog)) == 2  # a new outage, logged once

        redis_server.start()  # fresh server: empty data and script cache (NOSCRIPT path)
        await asyncio.sleep(0.11)
        d = await admit_fast()
        assert d.allowed and not lim.degraded
        assert d.headers["x-ratelimit-remaining-requests"] == "99"
        assert len(_warnings(caplog)) == 2
    finally:
        await lim.close()


async def test_redis_uses_server_time(redis_url, prefix, monkeypatch):
    """Buckets are stamped with Redis TIME, so gateways with skewed clocks agree."""
    # Skew this process's clocks wildly; the limiter must not care.
    monkeypatch.setattr(time, "time", lambda: 4e9)
    a = RedisLimiter(redis_url, prefix=prefix, timeout_s=2.0)
    b = RedisLimiter(redis_url, prefix=prefix, timeout_s=2.0)
    r = _sync(redis_url)
    try:
        rule = [Rule("k", rpm=6, tpm=None)]
        assert (await a.admit(rule, 0)).allowed
        sec, usec = r.time()
        server_now_us = sec * 1_000_000 + usec
        tat_us = float(r.get(prefix + "k:r"))
        assert abs(tat_us - (server_now_us + 10_000_000)) < 1_000_000  # now + 60/6 s
        for _ in range(5):
            assert (await b.admit(rule, 0)).allowed
        d = await b.admit(rule, 0)
        assert not d.allowed and 9.0 < d.retry_after_s <= 10.0
    finally:
        r.close()
        await a.close()
        await b.close()
