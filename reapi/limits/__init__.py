"""Rate limiting: requests per minute and tokens per minute.

Rules
-----
A call is checked against a list of :class:`Rule` (per account in a group, the group
total, optionally the API key); each rule may limit requests (``rpm``) and/or tokens
(``tpm``).  ``admit(rules, tokens)`` charges 1 request and ``tokens`` (prompt tokens +
output cap) to every rule, all-or-nothing: if any rule refuses, nothing is consumed
anywhere.  After the call, ``adjust(rules, actual - admitted)`` corrects the tpm
buckets (a negative delta gives capacity back, never beyond a full bucket; a positive
one may put the bucket in debt, which delays later calls).

Algorithm
---------
GCRA (a continuous token bucket) per (rule, kind): a limit L refills at L per 60 s
and holds at most L, so a client may spend a whole minute's allowance at once and is
then paced at one unit every 60/L s.  There are no fixed windows: in *any* interval
of length W the admitted amount is at most ``L + ceil(W*L/60) - 1`` (so never more
than L within 60/L s, unlike a fixed window that can admit 2L around a boundary; a
full 60 s interval right after a minute of idleness can see the burst L plus the
L - 1 refilled units).

* A call needing more tokens than a rule's ``tpm`` can never pass: it is refused
  with kind ``"tokens"`` and ``retry_after_s = 60``.
* ``Decision.retry_after_s`` is exact: after that many seconds (with no other
  traffic) the same call is admitted.  ``kind`` is the kind whose bucket waits longest.
* ``Decision.headers`` follows OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,
  tokens}`` for the most restrictive rule of each kind (fewest remaining), omitted for
  a kind no rule limits.  ``remaining`` = how many more units could be admitted now;
  ``reset`` = time until the bucket is full again, formatted like OpenAI ("120ms",
  "1s", "1.5s", "6m0s").  On a refusal they describe the state before the call.
* Decisions are read-only.  When nothing limits a call (no rules, or no rule with a
  limit) the shared :data:`ALLOWED` constant is returned; its ``headers`` is an
  immutable empty dict (mutating raises TypeError) -- copy headers before adding any.

Backends
--------
``make_limiter(None)`` -> :class:`MemoryLimiter` (one process).  ``make_limiter(url)``
-> :class:`RedisLimiter` (several gateway processes share limits; one Lua script, one
round trip per call, Redis server time so skewed gateway clocks agree, keys expire
once their bucket has refilled).

When Redis is unavailable
-------------------------
If Redis cannot be reached (connection refused, no answer within 0.25 s, or any other
Redis error), requests are never failed and are held up by about 0.25 s at most: the
gateway logs a single WARNING on the ``reapi.limits`` logger when the outage starts
and enforces the same limits with an in-process limiter instead, so during the outage
each gateway process enforces the limits on its own (N processes may together admit
up to N times a limit).  It sends no traffic to Redis for ``retry_interval_s``
(default 5 s), then lets one request probe it; once Redis answers again it logs one
INFO line and shared limits resume (usage counted in-process during the outage is
not carried over).  Each process keeps at most 16 Redis calls in flight; a call that
cannot get a slot within 1 s (Redis alive but too slow for the load) is treated the
same way as an outage.
"""
from __future__ import annotations

from .base import ALLOWED, Decision, Limiter, Rule, format_reset
from .memory import MemoryLimiter

__all__ = [
    "ALLOWED",
    "Decision",
    "Limiter",
    "MemoryLimiter",
    "RedisLimiter",
    "Rule",
    "format_reset",
    "make_limiter",
]


def __getattr__(name: str):
    # The Redis client library is imported only by deployments that use it (~20 MB RSS).
    if name == "RedisLimiter":
        from .redis_backend import RedisLimiter

        return RedisLimiter
    raise AttributeError(name)


def make_limiter(redis_url: str | None) -> Limiter:
    """A :class:`RedisLimiter` for a non-empty URL, else a :class:`MemoryLimiter`."""
    if redis_url:
        from .redis_backend import RedisLimiter

        return RedisLimiter(redis_url)
    return MemoryLimiter()
