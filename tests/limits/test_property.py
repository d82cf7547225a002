"""Property tests: the limiter is exactly GCRA, and GCRA has no fixed-window boundary.

Bound proved for every run (L = the rule's limit, any window start s, any length W,
half-open window [s, s+W), amounts = requests for rpm or tokens for tpm):

    admitted in [s, s+W)  <=  L + ceil(W * L / 60) - 1

Why: the bucket holds at most L when the window opens, and only refills L/60 per
second afterwards; the last admission is strictly before s+W, so the total is
< L + W*L/60.  Hence at most L in any window of length <= 60/L (a fixed window admits
2L in an arbitrarily short window around its boundary), at most 2L - 1 in any 60 s
window (the burst after an idle minute plus the L - 1 units refilled during it), and
the long-run rate tends to L per minute.  The bound is tight (test_bound_is_tight).

Besides the bound, every decision and retry_after is compared with an exact
rational-arithmetic reference GCRA, so the limiter is never stricter than GCRA either.
"""
from __future__ import annotations

import os

import asyncio
import math
import uuid
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reapi.limits import MemoryLimiter, RedisLimiter, Rule

from .conftest import REDIS_URL, T0, FakeClock, delete_prefix, redis_reachable

WINDOWS = [Fraction(1, 1000), Fraction(1), Fraction(10), Fraction(30), Fraction(60),
           Fraction(61), Fraction(120), Fraction(600)]


class RefGCRA:
    """Exact GCRA: cost c admitted iff backlog + c*60/L <= 60."""

    def __init__(self, limit: int) -> None:
        self.L = limit
        self.T = Fraction(60, limit)
        self.tat = Fraction(0)

    def admit(self, now: Fraction, cost: int) -> tuple[bool, Fraction]:
        if cost > self.L:
            return False, Fraction(60)
        b = max(self.tat - now, Fraction(0))
        w = b + cost * self.T - 60
        if w > 0:
            return False, w
        self.tat = now + b + cost * self.T
        return True, Fraction(0)


def bound(limit: int, w: Fraction) -> int:
    return limit + math.ceil(w * limit / 60) - 1


def check_bound(limit: int, admitted: list[tuple[Fraction, int]]) -> None:
    n = len(admitted)
    for i in range(n):
        s = admitted[i][0]
        for w in WINDOWS + [Fraction(60, limit)]:
            total = 0
            j = i
            while j < n and admitted[j][0] < s + w:
                total += admitted[j][1]
                j += 1
            assert total <= bound(limit, w), (limit, s, w, total)


gaps = st.one_of(
    st.just(0), st.integers(0, 50), st.integers(0, 3_000), st.integers(0, 70_000)
)  # milliseconds: bursts, pacing, idle minutes


async def run(limiter, clock: FakeClock, rule: Rule, limit: int, kind: str, events) -> None:
    ref = RefGCRA(limit)
    ms = 0
    admitted: list[tuple[Fraction, int]] = []
    for gap, cost in events:
        ms += gap
        clock.t = T0 + ms / 1000
        now = Fraction(ms, 1000)
        want, wait = ref.admit(now, cost)
        d = await limiter.admit([rule], cost if kind == "tokens" else 0)
        assert d.allowed == want, (ms, cost, d, float(wait))
        if want:
            admitted.append((now, cost if kind == "tokens" else 1))
        else:
            assert d.kind == kind
            assert d.retry_after_s == pytest.approx(float(wait), abs=2e-6)
    check_bound(limit, admitted)


rpm_case = st.tuples(st.integers(1, 30), st.lists(st.tuples(gaps, st.just(1)), max_size=150))


@st.composite
def tpm_case(draw):
    limit = draw(st.integers(1, 200))
    events = draw(st.lists(st.tuples(gaps, st.integers(0, limit + 3)), max_size=120))
    return limit, events


@settings(max_examples=300, deadline=None, database=None)
@given(rpm_case)
def test_memory_rpm_matches_exact_gcra_and_bound(case):
    limit, events = case
    clock = FakeClock()
    asyncio.run(run(MemoryLimiter(clock), clock, Rule("p", limit, None), limit, "requests", events))


@settings(max_examples=300, deadline=None, database=None)
@given(tpm_case())
def test_memory_tpm_matches_exact_gcra_and_bound(case):
    limit, events = case
    clock = FakeClock()
    asyncio.run(run(MemoryLimiter(clock), clock, Rule("p", None, limit), limit, "tokens", events))


async def _run_redis(rule: Rule, limit: int, kind: str, events) -> None:
    clock = FakeClock()
    prefix = f"reapi:test:{uuid.uuid4().hex}:"
    lim = RedisLimiter(REDIS_URL, prefix=prefix, timeout_s=2.0)
    lim._clock_us = clock.us
    try:
        await run(lim, clock, rule, limit, kind, events)
        assert not lim.degraded
    finally:
        await lim.close()
        delete_prefix(REDIS_URL, prefix)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(rpm_case, tpm_case())
def test_redis_matches_exact_gcra_and_bound(rpm, tpm):
    if not redis_reachable():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"Redis not reachable at {REDIS_URL}")
    asyncio.run(_run_redis(Rule("p", rpm[0], None), rpm[0], "requests", rpm[1]))
    asyncio.run(_run_redis(Rule("p", None, tpm[0]), tpm[0], "tokens", tpm[1]))


@pytest.mark.parametrize("limit", [1, 2, 7, 60])
async def test_bound_is_tight(limit):
    """Idle minute, burst L at s, then one per 60/L: 2L - 1 in [s, s+60), L in [s, s+60/L)."""
    clock = FakeClock()
    lim = MemoryLimiter(clock)
    rule = Rule("tight", limit, None)
    times = []
    for _ in range(limit):
        assert (await lim.admit([rule], 0)).allowed
        times.append(clock.t)
    assert not (await lim.admit([rule], 0)).allowed
    for k in range(1, limit):
        clock.t = T0 + k * 60 / limit
        assert (await lim.admit([rule], 0)).allowed
        assert not (await lim.admit([rule], 0)).allowed
        times.append(clock.t)
    in_minute = sum(1 for t in times if T0 <= t < T0 + 60)
    assert in_minute == bound(limit, Fraction(60)) == 2 * limit - 1
    assert sum(1 for t in times if T0 <= t < T0 + 60 / limit) == limit


def test_bound_rejects_a_fixed_window():
    """The checker itself: a fixed window's boundary burst (L just before, L at) fails it."""
    limit = 5
    admitted = [(Fraction(59_999, 1000), 1)] * limit + [(Fraction(60), 1)] * limit
    with pytest.raises(AssertionError):
        check_bound(limit, admitted)
