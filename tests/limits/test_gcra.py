"""GCRA semantics, run identically on MemoryLimiter and RedisLimiter (fake clock)."""
from __future__ import annotations

import pytest

from reapi.limits import ALLOWED, Decision, MemoryLimiter, RedisLimiter, Rule, make_limiter

APPROX = 2e-6  # Redis reports retry_after rounded up to the microsecond

# Each step: (advance clock by s, tokens, allowed, kind, retry_after_s)
OK = (True, None, 0.0)
SCENARIOS = {
    "rpm burst then paced": (
        [Rule("acct:default:1", rpm=3, tpm=None)],
        [
            (0, 0, *OK),
            (0, 0, *OK),
            (0, 0, *OK),  # whole minute's allowance at once
            (0, 0, False, "requests", 20.0),  # then one per 60/3 = 20 s
            (19.999, 0, False, "requests", 0.001),
            (0.001, 0, *OK),  # exactly on time
            (0, 0, False, "requests", 20.0),
            (20, 0, *OK),
            (60, 0, *OK),  # idle a minute: full burst again
            (0, 0, *OK),
            (0, 0, *OK),
            (0, 0, False, "requests", 20.0),
        ],
    ),
    "tpm costs prompt + cap": (
        [Rule("key:7", rpm=None, tpm=600)],  # 0.1 s per token
        [
            (0, 500, *OK),
            (0, 200, False, "tokens", 10.0),  # backlog 50 s + 20 s - 60 s
            (0, 100, *OK),  # exactly fills the bucket
            (0, 0, *OK),  # zero tokens passes a full (not overdrawn) bucket
            (0, 1, False, "tokens", 0.1),
            (0, 601, False, "tokens", 60.0),  # more than tpm: can never pass, documented 60 s
            (60, 600, *OK),
        ],
    ),
    "kind of the longest wait": (
        [Rule("acct:a", rpm=2, tpm=6000), Rule("group:g", rpm=None, tpm=60)],
        [
            (0, 60, *OK),  # acct rpm backlog 30 s, group tpm backlog 60 s
            (0, 0, *OK),  # both exactly full now
            (10, 10, False, "requests", 20.0),  # rpm waits 20 s, group tpm 0 s
            (0, 40, False, "tokens", 30.0),  # rpm 20 s, group tpm 30 s
            (0, 30, False, "requests", 20.0),  # tie: the first kind checked
            (0, 61, False, "tokens", 60.0),  # can never pass the group tpm
        ],
    ),
    "limit zero refuses": (
        [Rule("key:0", rpm=0, tpm=None)],
        [(0, 0, False, "requests", 60.0), (100, 0, False, "requests", 60.0)],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenarios(limiter, clock, name):
    rules, steps = SCENARIOS[name]
    for i, (dt, tokens, allowed, kind, retry) in enumerate(steps):
        clock.advance(dt)
        d = await limiter.admit(rules, tokens)
        assert (d.allowed, d.kind) == (allowed, kind), (name, i, d)
        assert d.retry_after_s == pytest.approx(retry, abs=APPROX), (name, i, d)


@pytest.mark.parametrize(
    "rule,tokens,n_before",
    [
        (Rule("r", rpm=7, tpm=None), 0, 7),
        (Rule("r", rpm=60, tpm=None), 0, 60),
        (Rule("r", rpm=1000, tpm=None), 0, 1000),
        (Rule("t", rpm=None, tpm=90_000), 7_000, 12),
        (Rule("t", rpm=None, tpm=1_000), 333, 3),
        (Rule("b", rpm=5, tpm=1_000), 150, 5),
    ],
)
async def test_retry_after_is_exact(limiter, clock, rule, tokens, n_before):
    """Exhaust, then: refused 1 ms before retry_after, admitted exactly at it."""
    for _ in range(n_before):
        assert (await limiter.admit([rule], tokens)).allowed
    clock.advance(0.01)
    d = await limiter.admit([rule], tokens)
    assert not d.allowed and d.retry_after_s > 0.001
    wait = d.retry_after_s
    clock.advance(wait - 0.001)
    again = await limiter.admit([rule], tokens)
    assert not again.allowed
    assert again.retry_after_s == pytest.approx(0.001, abs=APPROX)
    clock.advance(0.001)
    assert (await limiter.admit([rule], tokens)).allowed


async def test_all_or_nothing_across_rules(limiter, clock):
    acct = Rule("acct:default:1", rpm=10, tpm=1_000)
    group = Rule("group:default", rpm=2, tpm=None)
    key = Rule("key:1", rpm=None, tpm=1_000)
    assert (await limiter.admit([acct, group], 10)).allowed
    assert (await limiter.admit([acct, group], 10)).allowed
    d = await limiter.admit([acct, group, key], 500)  # group rpm exhausted
    assert (d.allowed, d.kind, d.retry_after_s) == (False, "requests", pytest.approx(30.0, abs=APPROX))
    # neither acct nor key was charged by the refused call
    h = (await limiter.admit([key], 0)).headers
    assert h["x-ratelimit-remaining-tokens"] == "1000"
    h = (await limiter.admit([acct], 0)).headers
    assert h["x-ratelimit-remaining-requests"] == "7"  # 10 - 2 admitted - this probe
    assert h["x-ratelimit-remaining-tokens"] == "980"
    # a tokens refusal consumes no request either
    d = await limiter.admit([acct, key], 1_001)
    assert (d.allowed, d.kind, d.retry_after_s) == (False, "tokens", 60.0)
    h = (await limiter.admit([acct], 0)).headers
    assert h["x-ratelimit-remaining-requests"] == "6"
    assert h["x-ratelimit-remaining-tokens"] == "980"
    clock.advance(30)  # group regains exactly one request
    assert (await limiter.admit([acct, group, key], 500)).allowed
    assert not (await limiter.admit([acct, group, key], 0)).allowed


async def test_adjust_down_gives_back_never_below_empty(limiter, clock):
    r = Rule("key:9", rpm=100, tpm=600)  # 0.1 s per token
    assert (await limiter.admit([r], 300)).allowed  # prompt + max_tokens
    await limiter.adjust([r], -200)  # actually used 100
    d = await limiter.admit([r], 0)
    assert d.headers["x-ratelimit-remaining-tokens"] == "500"
    assert d.headers["x-ratelimit-reset-tokens"] == "10s"
    await limiter.adjust([r], -10_000)  # more than outstanding: just full
    d = await limiter.admit([r], 0)
    assert d.headers["x-ratelimit-remaining-tokens"] == "600"
    assert d.headers["x-ratelimit-reset-tokens"] == "0s"
    assert (await limiter.admit([r], 600)).allowed
    assert not (await limiter.admit([r], 1)).allowed
    # requests are never adjusted
    assert d.headers["x-ratelimit-remaining-requests"] == "97"


async def test_adjust_up_goes_into_debt(limiter, clock):
    r = Rule("key:9", rpm=None, tpm=600)
    assert (await limiter.admit([r], 100)).allowed
    await limiter.adjust([r], 600)  # used far more than estimated: 70 s backlog
    d = await limiter.admit([r], 0)
    assert (d.allowed, d.kind) == (False, "tokens")
    assert d.retry_after_s == pytest.approx(10.0, abs=APPROX)
    assert d.headers["x-ratelimit-remaining-tokens"] == "0"
    assert d.headers["x-ratelimit-reset-tokens"] == "1m10s"
    clock.advance(10)
    assert (await limiter.admit([r], 0)).allowed
    assert not (await limiter.admit([r], 1)).allowed
    clock.advance(0.1)
    assert (await limiter.admit([r], 1)).allowed


async def test_adjust_only_touches_tpm_rules(limiter, clock):
    rpm_only = Rule("a", rpm=1, tpm=None)
    assert (await limiter.admit([rpm_only], 50)).allowed
    await limiter.adjust([rpm_only], -50)
    await limiter.adjust([], 10)
    assert not (await limiter.admit([rpm_only], 0)).allowed


async def test_headers_most_restrictive_rule_per_kind(limiter, clock):
    acct = Rule("acct:g:1", rpm=10, tpm=1_000)
    group = Rule("group:g", rpm=100, tpm=500)
    d = await limiter.admit([acct, group], 100)
    assert d == Decision(
        True,
        None,
        0.0,
        {
            "x-ratelimit-limit-requests": "10",  # acct: 9 left < group's 99
            "x-ratelimit-remaining-requests": "9",
            "x-ratelimit-reset-requests": "6s",
            "x-ratelimit-limit-tokens": "500",  # group: 400 left < acct's 900
            "x-ratelimit-remaining-tokens": "400",
            "x-ratelimit-reset-tokens": "12s",
        },
    )
    clock.advance(0.5)
    d = await limiter.admit([acct, group], 0)
    assert d.headers["x-ratelimit-reset-requests"] == "11.5s"
    assert d.headers["x-ratelimit-remaining-requests"] == "8"
    assert d.headers["x-ratelimit-reset-tokens"] == "11.5s"
    assert d.headers["x-ratelimit-remaining-tokens"] == "404"  # 0.5 s refills 4.17 tokens


async def test_headers_omit_unlimited_kind_and_describe_refusal(limiter, clock):
    r = Rule("k", rpm=2, tpm=None)
    d = await limiter.admit([r], 10)
    assert d.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "30s",
    }
    await limiter.admit([r], 10)
    clock.advance(0.12)
    d = await limiter.admit([r], 10)
    assert not d.allowed
    assert d.headers["x-ratelimit-remaining-requests"] == "0"
    assert d.headers["x-ratelimit-reset-requests"] == "59.88s"  # state before, unchanged
    assert d.retry_after_s == pytest.approx(29.88, abs=APPROX)
    t = Rule("t", rpm=None, tpm=1000)
    d = await limiter.admit([t], 10)
    assert set(d.headers) == {
        "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"}
    assert d.headers["x-ratelimit-reset-tokens"] == "600ms"


async def test_too_big_request_reports_real_bucket_state(limiter, clock):
    r = Rule("k", rpm=None, tpm=1_000)
    assert (await limiter.admit([r], 400)).allowed
    d = await limiter.admit([r], 5_000)
    assert (d.allowed, d.kind, d.retry_after_s) == (False, "tokens", 60.0)
    assert d.headers["x-ratelimit-remaining-tokens"] == "600"
    assert d.headers["x-ratelimit-reset-tokens"] == "24s"


async def test_unlimited_returns_shared_read_only_decision(limiter):
    assert await limiter.admit([], 10**9) is ALLOWED
    assert await limiter.admit([Rule("x", None, None)], 10**9) is ALLOWED
    assert ALLOWED.allowed and ALLOWED.headers == {}
    with pytest.raises(TypeError):
        ALLOWED.headers["x"] = "y"
    with pytest.raises(TypeError):
        ALLOWED.headers.update(x="y")
    assert dict(ALLOWED.headers) == {}


async def test_keys_are_independent(limiter):
    a, b = Rule("key:1", rpm=1, tpm=None), Rule("key:2", rpm=1, tpm=None)
    assert (await limiter.admit([a], 0)).allowed
    assert (await limiter.admit([b], 0)).allowed
    assert not (await limiter.admit([a], 0)).allowed


def test_make_limiter():
    assert isinstance(make_limiter(None), MemoryLimiter)
    assert isinstance(make_limiter(""), MemoryLimiter)
    assert isinstance(make_limiter("redis://127.0.0.1:6379/0"), RedisLimiter)
