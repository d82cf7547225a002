"""In-process GCRA limiter: limits hold per process.

State is two dicts ``rule key -> TAT`` (one for requests, one for tokens), TAT being a
clock reading in seconds.  A TAT <= now means "bucket full", exactly like a missing
entry, so such entries are pruned (every 60 s of clock time, amortised O(1) per call)
and memory stays proportional to the keys active in the last minute.

``admit`` contains no ``await``: the check-and-consume runs atomically on the event
loop thread, so no lock is needed.  Do not share one instance across threads.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from .base import (
    ALLOWED,
    EPS_S,
    REQUESTS,
    TOKENS,
    TOO_BIG_RETRY_S,
    WINDOW_S,
    Decision,
    Limiter,
    Rule,
    build_headers,
)

__all__ = ["MemoryLimiter"]

PRUNE_INTERVAL_S = 60.0


class MemoryLimiter(Limiter):
    __slots__ = ("_clock", "_req", "_tok", "_next_prune")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._req: dict[str, float] = {}
        self._tok: dict[str, float] = {}
        self._next_prune = clock() + PRUNE_INTERVAL_S

    async def admit(self, rules: Sequence[Rule], tokens: int) -> Decision:
        if not rules:
            return ALLOWED
        return self.admit_sync(rules, tokens)

    async def adjust(self, rules: Sequence[Rule], delta_tokens: int) -> None:
        if delta_tokens and rules:
            self.adjust_sync(rules, delta_tokens)

    async def close(self) -> None:
        self._req.clear()
        self._tok.clear()

    def __len__(self) -> int:
        """Number of live buckets (for tests and metrics)."""
        return len(self._req) + len(self._tok)

    # -- synchronous core (also used by RedisLimiter's fallback path) --------------

    def admit_sync(self, rules: Sequence[Rule], tokens: int) -> Decision:
        if tokens < 0:
            tokens = 0
        now = self._clock()
        if now >= self._next_prune:
            self._prune(now)
        req = self._req
        tok = self._tok

        # Pass 1: how long would each bucket make this call wait? (no writes)
        wait = 0.0
        kind: str | None = None
        limited = False
        for r in rules:
            lim = r.rpm
            if lim is not None:
                limited = True
                if lim <= 0:
                    w = TOO_BIG_RETRY_S
                else:
                    tat = req.get(r.key, now)
                    w = (tat - now if tat > now else 0.0) + WINDOW_S / lim - WINDOW_S
                if w > wait:
                    wait = w
                    kind = REQUESTS
            lim = r.tpm
            if lim is not None:
                limited = True
                if lim <= 0 or tokens > lim:
                    w = TOO_BIG_RETRY_S
                else:
                    tat = tok.get(r.key, now)
                    w = (tat - now if tat > now else 0.0) + tokens * WINDOW_S / lim - WINDOW_S
                if w > wait:
                    wait = w
                    kind = TOKENS
        if not limited:
            return ALLOWED
        allowed = wait <= EPS_S

        # Pass 2: consume (only if every bucket agreed) and compute headers for the
        # most restrictive rule of each kind: fewest remaining, then longest reset.
        rq_lim = tk_lim = None
        rq_rem = tk_rem = 0
        rq_b = tk_b = 0.0
        for r in rules:
            lim = r.rpm
            if lim is not None:
                if lim > 0:
                    tat = req.get(r.key, now)
                    b = tat - now if tat > now else 0.0
                    if allowed:
                        b += WINDOW_S / lim
                        req[r.key] = now + b
                    rem = int((WINDOW_S - b) * lim / WINDOW_S + 1e-6)
                    if rem < 0:
                        rem = 0
                else:
                    b = 0.0
                    rem = 0
                if rq_lim is None or rem < rq_rem or (rem == rq_rem and b > rq_b):
                    rq_lim, rq_rem, rq_b = lim, rem, b
            lim = r.tpm
            if lim is not None:
                if lim > 0:
                    tat = tok.get(r.key, now)
                    b = tat - now if tat > now else 0.0
                    if allowed and tokens > 0:
                        b += tokens * WINDOW_S / lim
                        tok[r.key] = now + b
                    rem = int((WINDOW_S - b) * lim / WINDOW_S + 1e-6)
                    if rem < 0:
                        rem = 0
                else:
                    b = 0.0
                    rem = 0
                if tk_lim is None or rem < tk_rem or (rem == tk_rem and b > tk_b):
                    tk_lim, tk_rem, tk_b = lim, rem, b
        headers = build_headers(rq_lim, rq_rem, rq_b, tk_lim, tk_rem, tk_b)
        if allowed:
            return Decision(True, None, 0.0, headers)
        return Decision(False, kind, wait, headers)

    def adjust_sync(self, rules: Sequence[Rule], delta_tokens: int) -> None:
        now = self._clock()
        tok = self._tok
        for r in rules:
            lim = r.tpm
            if lim is None or lim <= 0:
                continue
            tat = tok.get(r.key, now)
            new = (tat if tat > now else now) + delta_tokens * WINDOW_S / lim
            if new > now:
                tok[r.key] = new
            else:  # gave back more than was outstanding: bucket is simply full
                tok.pop(r.key, None)

    def _prune(self, now: float) -> None:
        for d in (self._req, self._tok):
            dead = [k for k, tat in d.items() if tat <= now]
            for k in dead:
                del d[k]
        self._next_prune = now + PRUNE_INTERVAL_S
