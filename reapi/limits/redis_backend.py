"""Redis GCRA limiter: several gateway processes share one set of limits.

One Lua script does the all-or-nothing check-and-consume for every (rule, kind) of a
call atomically, with Redis server ``TIME`` as the clock (gateways with skewed clocks
agree).  One round trip per ``admit`` / ``adjust`` (EVALSHA; the script is loaded
lazily on NOSCRIPT, which also covers a Redis restart that flushed the script cache).
Each bucket is a string key ``{prefix}{rule.key}:r`` / ``:t`` holding the TAT in
microseconds, with a PX expiry equal to the time it takes to refill, so idle keys
vanish by themselves.  Keys of one call must live on one Redis node (standalone
Redis, or put a ``{hash tag}`` in ``prefix`` for Cluster).

When Redis is unreachable see :class:`RedisLimiter` (fallback to a per-process
limiter, one log line per outage, re-probe every ``retry_interval_s``).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from .base import (
    ALLOWED,
    REQUESTS,
    TOKENS,
    Decision,
    Limiter,
    Rule,
    build_headers,
)
from .memory import MemoryLimiter

__all__ = ["RedisLimiter", "GCRA_LUA"]

log = logging.getLogger("reapi.limits")

# Times are microseconds.  ARGV[1] = 'a' (admit) | 'j' (adjust);
# ARGV[2] = '' in production (server TIME), or a clock override used only by tests
# (then expiries get a one-hour pad so fake time can't race real expiry).
# admit:  ARGV[1+2i], ARGV[2+2i] = limit, cost for KEYS[i]
#         -> {allowed, index of the key that waits longest, retry_us,
#             remaining_1, backlog_us_1, remaining_2, backlog_us_2, ...}
#            (remaining/backlog after consumption if allowed, else before)
# adjust: ARGV[3] = delta tokens, ARGV[3+i] = limit for KEYS[i] -> 0
GCRA_LUA = r"""
if redis.replicate_commands then redis.replicate_commands() end
local W = 60000000
local now, pad
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2]); pad = 3600000
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2]); pad = 0
end
local n = #KEYS
local function backlog(key)
  local v = redis.call('GET', key)
  if v then
    local b = tonumber(v) - now
    if b > 0 then return b end
  end
  return 0
end
local function store(key, b)
  if b > 0 then
    redis.call('SET', key, string.format('%.17g', now + b), 'PX', math.ceil(b / 1000) + pad)
  else
    redis.call('DEL', key)
  end
end
if ARGV[1] == 'j' then
  local delta = tonumber(ARGV[3])
  for i = 1, n do
    local lim = tonumber(ARGV[3 + i])
    if lim > 0 then store(KEYS[i], backlog(KEYS[i]) + delta * W / lim) end
  end
  return 0
end
local bs = {}
local worst, widx = 0, 0
for i = 1, n do
  local lim = tonumber(ARGV[1 + 2 * i])
  local cost = tonumber(ARGV[2 + 2 * i])
  local b = 0
  local w
  if lim > 0 then b = backlog(KEYS[i]) end
  if lim <= 0 or cost > lim then
    w = W
  else
    w = b + cost * W / lim - W
  end
  bs[i] = b
  if w > worst then worst = w; widx = i end
end
local ok = worst <= 0.1
local out = {ok and 1 or 0, widx, math.max(math.ceil(worst - 0.1), 0)}
for i = 1, n do
  local lim = tonumber(ARGV[1 + 2 * i])
  local cost = tonumber(ARGV[2 + 2 * i])
  local b = bs[i]
  local rem = 0
  if lim > 0 then
    if ok and cost > 0 then
      b = b + cost * W / lim
      store(KEYS[i], b)
    end
    rem = math.floor((W - b) * lim / W + 1e-6)
    if rem < 0 then rem = 0 end
  end
  out[2 + 2 * i] = rem
  out[3 + 2 * i] = math.floor(b + 0.5)
end
return out
"""

_SHA = hashlib.sha1(GCRA_LUA.encode()).hexdigest()


@dataclass(slots=True)
class _Adjust:
    rules: Sequence[Rule]
    delta: int
    done: asyncio.Future


class RedisLimiter(Limiter):
    """GCRA limits shared through Redis, degrading to a per-process limiter.

    Redis unreachable (refused, timed out, or any other Redis error): the call never
    raises and never blocks long (one deadline of ``timeout_s``, default 0.25 s, for
    connecting and the round trip; no client-side retries; at most
    ``max_connections`` calls in flight, a call queueing for a free slot longer than
    ``4 * timeout_s`` counts as a failure too).  The limiter logs one WARNING on
    ``reapi.limits`` when the outage starts, answers from ``fallback`` (default a
    :class:`MemoryLimiter`, so limits then hold per process) and sends no traffic to
    Redis until ``retry_interval_s`` has passed; then exactly one call probes Redis
    (the others keep using the fallback meanwhile).  If the probe succeeds, one INFO
    line is logged and Redis is used again; otherwise the next probe is another
    ``retry_interval_s`` later, without another log line.  Usage recorded in the
    fallback during the outage is not copied to Redis, and an ``adjust`` that lands
    on the other backend than its ``admit`` is simply applied where it lands.
    """

    __slots__ = (
        "_r",
        "_prefix",
        "fallback",
        "_retry_interval",
        "_timeout",
        "_gate",
        "_queue_timeout",
        "_down",
        "_probe_at",
        "_clock_us",
        "_adjust_next",
        "_adjust_busy",
        "_batch",
    )

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "reapi:rl:",
        fallback: Limiter | None = None,
        retry_interval_s: float = 5.0,
        timeout_s: float = 0.25,
        max_connections: int = 16,
    ) -> None:
        self._r = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._timeout = timeout_s
        # At most max_connections calls in flight: a burst of concurrent requests
        # queues briefly for a few connections instead of opening hundreds at once
        # (whose handshakes would trip the short timeouts and fake an outage).
        self._gate = asyncio.Semaphore(max_connections)
        self._queue_timeout = 4 * timeout_s
        self._prefix = prefix
        self.fallback: Limiter = fallback if fallback is not None else MemoryLimiter()
        self._retry_interval = retry_interval_s
        self._down = False  # inside an outage (logged once)
        self._probe_at = 0.0  # time.monotonic() before which Redis is not tried
        # Test hook only: a callable returning "now" in microseconds, sent to the
        # script instead of using Redis TIME.  Never set in production.
        self._clock_us: Callable[[], int] | None = None
        # Token corrections per key set: the one waiting to be sent (others add to it)
        # and the one in flight. Under load one call carries many requests' corrections.
        self._adjust_next: dict[tuple[str, ...], _Adjust] = {}
        self._adjust_busy: dict[tuple[str, ...], asyncio.Future] = {}
        # Script calls made in the same event-loop turn, sent together as one pipeline.
        self._batch: list[tuple[list[str], list[object], asyncio.Future]] = []

    @property
    def degraded(self) -> bool:
        """True while Redis is considered down and the fallback answers."""
        return self._down

    async def admit(self, rules: Sequence[Rule], tokens: int) -> Decision:
        if not rules:
            return ALLOWED
        if tokens < 0:
            tokens = 0
        prefix = self._prefix
        keys: list[str] = []
        args: list[object] = ["a", "" if self._clock_us is None else self._clock_us()]
        for r in rules:
            if r.rpm is not None:
                keys.append(prefix + r.key + ":r")
                args.append(r.rpm)
                args.append(1)
            if r.tpm is not None:
                keys.append(prefix + r.key + ":t")
                args.append(r.tpm)
                args.append(tokens)
        if not keys:
            return ALLOWED
        res = await self._call(keys, args)
        if res is None:
            return await self.fallback.admit(rules, tokens)

        # Headers: the most restrictive rule of each kind (fewest remaining, then
        # longest reset); the result lists (remaining, backlog_us) in key order.
        rq_lim = tk_lim = None
        rq_rem = tk_rem = rq_b = tk_b = 0
        i = 3
        kind = None
        widx = res[1]
        j = 0
        for r in rules:
            lim = r.rpm
            if lim is not None:
                j += 1
                if j == widx:
                    kind = REQUESTS
                rem = res[i]
                b = res[i + 1]
                i += 2
                if rq_lim is None or rem < rq_rem or (rem == rq_rem and b > rq_b):
                    rq_lim, rq_rem, rq_b = lim, rem, b
            lim = r.tpm
            if lim is not None:
                j += 1
                if j == widx:
                    kind = TOKENS
                rem = res[i]
                b = res[i + 1]
                i += 2
                if tk_lim is None or rem < tk_rem or (rem == tk_rem and b > tk_b):
                    tk_lim, tk_rem, tk_b = lim, rem, b
        headers = build_headers(rq_lim, rq_rem, rq_b / 1e6, tk_lim, tk_rem, tk_b / 1e6)
        if res[0]:
            return Decision(True, None, 0.0, headers)
        return Decision(False, kind, res[2] / 1e6, headers)

    async def adjust(self, rules: Sequence[Rule], delta_tokens: int) -> None:
        """Correct the token counts; returns once the correction is applied. While a
        correction for the same keys is in flight, later ones are summed into the next
        call, so there is at most one call per key set in flight."""
        if not delta_tokens or not rules:
            return
        prefix = self._prefix
        keys = tuple(prefix + r.key + ":t" for r in rules if r.tpm is not None)
        if not keys:
            return
        nxt = self._adjust_next.get(keys)
        if nxt is None:
            loop = asyncio.get_running_loop()
            nxt = self._adjust_next[keys] = _Adjust(rules, 0, loop.create_future())
            loop.create_task(self._send_adjust(keys, nxt))  # not the caller's: a cancelled caller cannot drop it
        nxt.delta += delta_tokens
        await asyncio.shield(nxt.done)

    async def _send_adjust(self, keys: tuple[str, ...], nxt: _Adjust) -> None:
        try:
            prev = self._adjust_busy.get(keys)
            if prev is not None:
                await asyncio.wait([prev])
            del self._adjust_next[keys]  # from here on, new corrections start the next call
            self._adjust_busy[keys] = nxt.done
            if nxt.delta:
                args: list[object] = ["j", "" if self._clock_us is None else self._clock_us(), nxt.delta]
                args += [r.tpm for r in nxt.rules if r.tpm is not None]
                if await self._call(list(keys), args) is None:
                    await self.fallback.adjust(nxt.rules, nxt.delta)
        finally:
            if self._adjust_busy.get(keys) is nxt.done:
                del self._adjust_busy[keys]
            if not nxt.done.done():
                nxt.done.set_result(None)

    async def close(self) -> None:
        try:
            await self._r.aclose()
        finally:
            await self.fallback.close()

    async def _call(self, keys: list[str], args: list[object]):
        """Run the script; None means "Redis unavailable: use the fallback".

        Calls made during one turn of the event loop go to Redis as one pipeline: one
        write and one read for all of them. Each script still runs atomically on its own."""
        fut = asyncio.get_running_loop().create_future()
        self._batch.append((keys, args, fut))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[list[str], list[object], asyncio.Future]]) -> None:
        results = None
        try:
            results = await self._run_scripts([(keys, args) for keys, args, _ in batch])
        except Exception:  # a bug, not an outage: log it, and let the fallback answer
            log.exception("rate limiter batch failed")
        finally:
            for i, (_, _, fut) in enumerate(batch):
                if not fut.done():
                    fut.set_result(None if results is None else results[i])

    async def _run_scripts(self, calls: list[tuple[list[str], list[object]]]) -> list | None:
        probing = False
        if self._down:
            now = time.monotonic()
            if now < self._probe_at:
                return None
            self._probe_at = now + self._retry_interval  # only this call probes
            probing = True
        sem = self._gate
        if sem.locked():
            # All connections busy: queue, but not forever (Redis too slow to keep
            # up counts as unavailable too).
            try:
                async with asyncio.timeout(self._queue_timeout):
                    await sem.acquire()
            except TimeoutError as e:
                self._failed(e, "no free connection")
                return None
            if self._down and not probing:  # an outage began while we queued
                sem.release()
                return None
        else:
            await sem.acquire()  # free slot: returns without suspending
        try:
            # One deadline for connect + round trip(s); a cancelled read makes
            # redis-py drop that connection, so no reply is ever misrouted.
            async with asyncio.timeout(self._timeout):
                res = await self._pipeline(calls)
                missing = [i for i, r in enumerate(res) if isinstance(r, NoScriptError)]
                if missing:
                    # First use, or Redis restarted / SCRIPT FLUSH: load it and run the
                    # calls that did not run (only those: the others already counted).
                    await self._r.script_load(GCRA_LUA)
                    again = await self._pipeline([calls[i] for i in missing])
                    for i, r in zip(missing, again):
                        res[i] = r
                for r in res:
                    if isinstance(r, Exception):
                        raise r
        except (RedisError, OSError) as e:  # OSError includes TimeoutError
            self._failed(e, "")
            return None
        finally:
            sem.release()
        if probing:
            self._recovered()
        return res

    async def _pipeline(self, calls: list[tuple[list[str], list[object]]]) -> list:
        if len(calls) == 1:
            keys, args = calls[0]
            try:
                return [await self._r.evalsha(_SHA, len(keys), *keys, *args)]
            except NoScriptError as e:
                return [e]
        pipe = self._r.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(_SHA, len(keys), *keys, *args)
        return await pipe.execute(raise_on_error=False)

    def _failed(self, e: BaseException, what: str) -> None:
        self._probe_at = time.monotonic() + self._retry_interval
        if not self._down:
            self._down = True
            log.warning(
                "Redis rate limiter unavailable (%s: %s); enforcing limits per process "
                "until it is back (retrying every %.3gs)",
                type(e).__name__,
                what or str(e) or f"no reply within {self._timeout}s",
                self._retry_interval,
            )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            log.info("Redis rate limiter reachable again; shared limits restored")
