"""MemoryLimiter specifics (pruning, hot-path shortcuts) and header formatting."""
from __future__ import annotations

import inspect

import pytest

from reapi.limits import ALLOWED, Limiter, MemoryLimiter, RedisLimiter, Rule, format_reset
from reapi.limits import memory

from .conftest import FakeClock


@pytest.mark.parametrize(
    "seconds,text",
    [
        (0, "0s"),
        (-3, "0s"),
        (0.0000004, "1ms"),  # rounded up: a client waiting this long is never early
        (0.001, "1ms"),
        (0.12, "120ms"),
        (0.2, "200ms"),
        (0.999, "999ms"),
        (0.9991, "1s"),
        (1, "1s"),
        (1.2, "1.2s"),
        (1.25, "1.25s"),
        (8.64, "8.64s"),
        (20.0000000001, "20s"),  # float noise does not add a millisecond
        (59.999, "59.999s"),
        (60, "1m0s"),
        (61.5, "1m1.5s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.4, "1h2m3.4s"),
    ],
)
def test_format_reset_like_openai(seconds, text):
    assert format_reset(seconds) == text


async def test_idle_keys_are_pruned():
    clock = FakeClock()
    lim = MemoryLimiter(clock)
    for i in range(1_000):
        await lim.admit([Rule(f"key:{i}", rpm=10, tpm=1_000)], 100)
    assert len(lim) == 2_000
    clock.advance(59)
    await lim.admit([Rule("hot", rpm=10, tpm=None)], 0)
    assert len(lim) == 2_001  # nothing refilled yet: nothing pruned
    clock.advance(7)  # all the 1000 keys refilled (6 s each); next sweep is due
    await lim.admit([Rule("hot", rpm=10, tpm=None)], 0)
    assert len(lim) == 1
    # a pruned key behaves exactly like a fresh one
    d = await lim.admit([Rule("key:1", rpm=10, tpm=1_000)], 1_000)
    assert d.allowed and d.headers["x-ratelimit-remaining-requests"] == "9"


async def test_adjust_to_empty_removes_the_bucket():
    clock = FakeClock()
    lim = MemoryLimiter(clock)
    r = [Rule("k", rpm=None, tpm=100)]
    await lim.admit(r, 50)
    assert len(lim) == 1
    await lim.adjust(r, -50)
    assert len(lim) == 0


def test_check_and_consume_has_no_await():
    """Atomic on the event loop: admit awaits nothing between reading and writing state."""
    src = inspect.getsource(MemoryLimiter.admit_sync) + inspect.getsource(MemoryLimiter.adjust_sync)
    assert "await" not in src
    assert not inspect.iscoroutinefunction(MemoryLimiter.admit_sync)


def test_backends_satisfy_protocol():
    assert isinstance(MemoryLimiter(), Limiter)
    assert isinstance(RedisLimiter("redis://127.0.0.1:1/0"), Limiter)


async def test_negative_tokens_are_treated_as_zero():
    lim = MemoryLimiter(FakeClock())
    r = [Rule("k", rpm=None, tpm=10)]
    assert (await lim.admit(r, -100)).allowed
    assert (await lim.admit(r, 10)).allowed
    assert not (await lim.admit(r, 1)).allowed


async def test_no_rules_is_free():
    lim = MemoryLimiter(FakeClock())
    assert await lim.admit((), 5) is ALLOWED
    assert len(lim) == 0
    assert memory.PRUNE_INTERVAL_S == 60.0
