"""Fixtures for the rate-limit tests.

Redis tests use the real Redis at 127.0.0.1:6379 (REAPI_TEST_REDIS_URL overrides) with
a unique key prefix per test, deleted afterwards.  They are skipped only when that
Redis cannot be reached.
"""
from __future__ import annotations

import os

import shutil
import subprocess
import time
import uuid

import pytest
import redis

from reapi.limits import MemoryLimiter, RedisLimiter
from tests.harness import free_port

REDIS_URL = os.environ.get("REAPI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1000.0  # fake clocks start here (seconds)


class FakeClock:
    """Injected clock in seconds; ``us()`` feeds RedisLimiter's test clock hook."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def us(self) -> int:
        return round(self.t * 1_000_000)

    def advance(self, dt: float) -> None:
        self.t += dt


_reachable: bool | None = None


def redis_reachable() -> bool:
    global _reachable
    if _reachable is None:
        try:
            r = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
            _reachable = bool(r.ping())
            r.close()
        except redis.RedisError:
            _reachable = False
    return _reachable


@pytest.fixture
def redis_url() -> str:
    if not redis_reachable():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"Redis not reachable at {REDIS_URL}")
    return REDIS_URL


def delete_prefix(url: str, prefix: str) -> None:
    r = redis.Redis.from_url(url)
    try:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


@pytest.fixture
def prefix(redis_url):
    p = f"reapi:test:{uuid.uuid4().hex}:"
    yield p
    delete_prefix(redis_url, p)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request, clock):
    """The same fake-clocked semantics on both backends."""
    if request.param == "memory":
        lim = MemoryLimiter(clock)
        yield lim
        await lim.close()
        return
    url = request.getfixturevalue("redis_url")
    pfx = request.getfixturevalue("prefix")
    lim = RedisLimiter(url, prefix=pfx, timeout_s=2.0)  # no spurious fallback on a busy CI box
    lim._clock_us = clock.us
    yield lim
    assert not lim.degraded, "Redis test silently fell back to memory"
    await lim.close()


class RedisServer:
    """A throwaway redis-server on a fixed port that can be stopped and restarted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                r = redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
                if r.ping():
                    r.close()
                    return
            except redis.RedisError:
                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1)


@pytest.fixture
def redis_server():
    if shutil.which("redis-server") is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("redis-server binary not on PATH (needed to stop/restart a private Redis)")
    srv = RedisServer(free_port())
    yield srv
    srv.stop()
