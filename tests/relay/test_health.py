import asyncio
import logging
import time
import uuid

import pytest
import redis.asyncio as aioredis

from reapi.relay.health import ChannelHealth

REDIS_URL = "redis://127.0.0.1:6379/0"
DEAD_URL = "redis://127.0.0.1:1/0"


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def make(**kw):
    clock = FakeClock()
    kw.setdefault("failure_threshold", 3)
    kw.setdefault("cooldown_s", 30.0)
    kw.setdefault("max_cooldown_s", 300.0)
    return ChannelHealth(clock=clock, **kw), clock


# ---- local breaker ------------------------------------------------------------------

def test_unknown_channel_is_closed_and_available():
    h, _ = make()
    assert h.available(7)
    assert h.state(7) == {"state": "closed", "consecutive_failures": 0, "cooldown_remaining_s": 0.0}
    assert h.states() == {}


def test_threshold_minus_one_stays_closed_threshold_opens():
    h, _ = make()
    for _ in range(2):
        h.record_failure(1)
    assert h.available(1)
    assert h.state(1)["state"] == "closed"
    assert h.state(1)["consecutive_failures"] == 2
    h.record_failure(1)
    assert not h.available(1)
    st = h.state(1)
    assert st["state"] == "open"
    assert st["consecutive_failures"] == 3
    assert st["cooldown_remaining_s"] == pytest.approx(30.0)
    assert h.available(2)  # other channels unaffected


def test_success_resets_the_count():
    h, _ = make()
    h.record_failure(1)
    h.record_failure(1)
    h.record_success(1)
    assert h.state(1)["consecutive_failures"] == 0
    h.record_failure(1)
    h.record_failure(1)
    assert h.available(1)
    assert h.state(1)["state"] == "closed"


def test_cooldown_expiry_half_open_admits_exactly_one():
    h, clock = make()
    for _ in range(3):
        h.record_failure(1)
    clock.advance(29.9)
    assert not h.available(1)
    assert h.state(1)["cooldown_remaining_s"] == pytest.approx(0.1)
    clock.advance(0.1)
    assert h.state(1)["state"] == "half_open"  # inspecting does not use up the probe
    assert h.available(1) is True
    assert [h.available(1) for _ in range(5)] == [False] * 5
    assert h.state(1) == {"state": "half_open", "consecutive_failures": 3, "cooldown_remaining_s": 0.0}


def test_probe_success_closes():
    h, clock = make()
    for _ in range(3):
        h.record_failure(1)
    clock.advance(30)
    assert h.available(1)
    h.record_success(1)
    assert h.state(1) == {"state": "closed", "consecutive_failures": 0, "cooldown_remaining_s": 0.0}
    assert all(h.available(1) for _ in range(5))
    # after closing, the next opening starts again from the base cool-down
    for _ in range(3):
        h.record_failure(1)
    assert h.state(1)["cooldown_remaining_s"] == pytest.approx(30.0)


def test_probe_failure_reopens_with_doubled_cooldown_capped():
    h, clock = make(cooldown_s=30.0, max_cooldown_s=100.0)
    for _ in range(3):
        h.record_failure(1)
    seen = []
    for _ in range(4):
        clock.advance(h.state(1)["cooldown_remaining_s"])
        assert h.available(1)  # the probe
        h.record_failure(1)
        st = h.state(1)
        assert st["state"] == "open"
        assert not h.available(1)
        seen.append(st["cooldown_remaining_s"])
    assert seen == [pytest.approx(60.0), pytest.approx(100.0), pytest.approx(100.0), pytest.approx(100.0)]


def test_reports_from_requests_in_flight_do_not_change_an_open_breaker():
    h, clock = make()
    for _ in range(3):
        h.record_failure(1)
    clock.advance(5)
    h.record_failure(1)  # straggler: no re-open, no longer cool-down
    h.record_success(1)  # straggler: does not close early
    st = h.state(1)
    assert st["state"] == "open"
    assert st["cooldown_remaining_s"] == pytest.approx(25.0)


def test_a_probe_that_never_reports_is_given_up_on():
    h, clock = make(probe_timeout_s=10.0)
    for _ in range(3):
        h.record_failure(1)
    clock.advance(30)
    assert h.available(1)
    clock.advance(9.9)
    assert not h.available(1)
    clock.advance(0.1)
    assert h.available(1)  # a fresh probe; the channel is never stuck
    assert not h.available(1)


def test_states_lists_channels_with_history():
    h, clock = make()
    for _ in range(3):
        h.record_failure(1)
    h.record_failure(2)
    s = h.states()
    assert set(s) == {1, 2}
    assert s[1]["state"] == "open" and s[2]["state"] == "closed"
    assert s[2]["consecutive_failures"] == 1


async def test_no_redis_start_stop_are_noops():
    h, _ = make()
    await h.start()
    await h.stop()
    h.record_failure(1)
    assert h.available(1)


# ---- shared through Redis -----------------------------------------------------------

@pytest.fixture
async def prefix():
    p = f"reapi:test:health:{uuid.uuid4().hex}:"
    yield p
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=p + "*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


async def wait_for(pred, timeout: float) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)
    return time.monotonic() - t0


async def test_other_instance_sees_open_within_two_sync_intervals(prefix):
    iv = 0.05
    a = ChannelHealth(redis_url=REDIS_URL, prefix=prefix, sync_interval_s=iv, cooldown_s=30)
    b = ChannelHealth(redis_url=REDIS_URL, prefix=prefix, sync_interval_s=iv, cooldown_s=30)
    await a.start()
    await b.start()
    try:
        await asyncio.sleep(iv)  # both running
        for _ in range(3):
            a.record_failure(42)
        assert not a.available(42)
        took = await wait_for(lambda: b.state(42)["state"] == "open", 2 * iv + 0.05)
        assert took <= 2 * iv + 0.05
        assert not b.available(42)
        st = b.state(42)
        assert 29.0 < st["cooldown_remaining_s"] <= 30.0
        assert st["consecutive_failures"] == 3
        assert b.available(43)

        # the hash as documented: server-time epoch open_until, cool-down, failures
        r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            h = await r.hgetall(prefix + "42")
            sec, _ = await r.time()
        finally:
            await r.aclose()
        assert h["state"] == "open"
        assert 29.0 < float(h["open_until"]) - sec <= 31.0
        assert float(h["cooldown"]) == 30.0
        assert int(h["failures"]) == 3
    finally:
        await a.stop()
        await b.stop()


async def test_close_and_reopen_propagate(prefix):
    iv = 0.05
    clocks = [FakeClock(), FakeClock(5_000.0)]  # unrelated local clocks: only Redis TIME is shared
    a = ChannelHealth(redis_url=REDIS_URL, prefix=prefix, sync_interval_s=iv, clock=clocks[0],
                      cooldown_s=10, max_cooldown_s=100)
    b = ChannelHealth(redis_url=REDIS_URL, prefix=prefix, sync_interval_s=iv, clock=clocks[1],
                      cooldown_s=10, max_cooldown_s=100)
    await a.start()
    await b.start()
    try:
        for _ in range(3):
            a.record_failure(5)
        await wait_for(lambda: b.state(5)["state"] == "open", 1.0)
        assert b.state(5)["cooldown_remaining_s"] == pytest.approx(10.0, abs=0.5)
        # a's probe fails: b learns the doubled cool-down
        clocks[0].advance(10)
        assert a.available(5)
        a.record_failure(5)
        await wait_for(lambda: b.state(5)["cooldown_remaining_s"] > 15, 1.0)
        assert b.state(5)["cooldown_remaining_s"] == pytest.approx(20.0, abs=0.5)
        # a's next probe succeeds: b closes too
        clocks[0].advance(20)
        assert a.available(5)
        a.record_success(5)
        await wait_for(lambda: b.state(5)["state"] == "closed", 1.0)
        assert b.available(5)
    finally:
        await a.stop()
        await b.stop()


async def test_late_starter_learns_existing_state(prefix):
    a = ChannelHealth(redis_url=REDIS_URL, prefix=prefix, sync_interval_s=0.05)
    await a.start()
    try:
        for _ in range(3):
            a.record_failure(9)
        await asyncio.sleep(0.1)
        b = ChannelHealth(redis_url=REDIS_URL, prefix=prefix, sync_interval_s=0.05)
        await b.start()
        try:
            await wait_for(lambda: not b.available(9), 1.0)
        finally:
            await b.stop()
    finally:
        await a.stop()


async def test_redis_down_keeps_local_behaviour_and_logs_once(caplog):
    caplog.set_level(logging.INFO, logger="reapi.health")
    clock = FakeClock()
    h = ChannelHealth(redis_url=DEAD_URL, sync_interval_s=0.01, clock=clock)
    t0 = time.perf_counter()
    await h.start()
    assert time.perf_counter() - t0 < 0.5
    try:
        t0 = time.perf_counter()
        for _ in range(2):
            h.record_failure(1)
        assert h.available(1)
        h.record_failure(1)
        assert not h.available(1)
        assert time.perf_counter() - t0 < 0.05
        await asyncio.sleep(0.2)  # several failed sync rounds
        clock.advance(30)
        assert h.available(1)
        assert not h.available(1)
        h.record_success(1)
        assert h.state(1)["state"] == "closed"
        for _ in range(3):
            h.record_failure(2)
        await asyncio.sleep(0.1)
    finally:
        t0 = time.perf_counter()
        await h.stop()
        assert time.perf_counter() - t0 < 0.5
    warnings = [r for r in caplog.records if r.name == "reapi.health" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "redis://" not in warnings[0].getMessage()  # the URL (which may hold a password) is not logged


async def test_pending_transitions_are_written_after_an_outage(prefix):
    """An instance that was cut off pushes what happened meanwhile once Redis is back."""
    a = ChannelHealth(redis_url=DEAD_URL, prefix=prefix, sync_interval_s=0.01)
    await a.start()
    for _ in range(3):
        a.record_failure(3)
    await asyncio.sleep(0.05)
    assert 3 in a._dirty
    # "Redis comes back": point the running instance at the live server
    await a.stop()
    a._redis_url = REDIS_URL
    await a.start()
    b = ChannelHealth(redis_url=REDIS_URL, prefix=prefix, sync_interval_s=0.05)
    await b.start()
    try:
        await wait_for(lambda: not b.available(3), 1.0)
    finally:
        await a.stop()
        await b.stop()


def test_hot_path_is_cheap():
    h = ChannelHealth()
    for _ in range(3):
        h.record_failure(1)
    n = 100_000
    t0 = time.perf_counter()
    for _ in range(n):
        h.available(1)
        h.available(2)
    per_call = (time.perf_counter() - t0) / (2 * n)
    assert per_call < 5e-6
