"""Channel health: a per-channel circuit breaker with exponential cool-down.

States, per channel:

* ``closed``: traffic flows. Each failure (connect error, 5xx, timeout) adds one to a
  consecutive-failure count; any success resets it. ``failure_threshold`` consecutive
  failures open the breaker for ``cooldown_s``.
* ``open``: the channel is in cool-down; ``available()`` says False so selection prefers
  the pool's other channels. Reports from requests that were already in flight when it
  opened do not change the state (failures still count, for display).
* ``half_open``: the cool-down is over. ``available()`` admits exactly one caller (the
  probe) and says False to everyone else until a result is reported. A success closes the
  breaker and resets the cool-down to ``cooldown_s``; a failure re-opens it with the
  cool-down doubled, capped at ``max_cooldown_s``. A probe that never reports (its request
  was dropped, or selection asked about the channel but picked another one) is forgotten
  after ``probe_timeout_s`` and another probe is admitted, so a channel is never
  disabled permanently: at worst it is retried every ``max_cooldown_s``.

Hot path: ``available()``, ``record_success()`` and ``record_failure()`` are synchronous,
O(1) dictionary work plus one clock read, and never touch the network. They are meant to
be called from the event loop's thread (the gateway's single loop); they take no locks.
Channels that never failed cost nothing: they have no entry at all.

Sharing through Redis (when ``redis_url`` is given and ``start()`` has been awaited):

* Breaker transitions (open, re-open, close) are applied locally at once, marked dirty
  and written to Redis by a background task, one hash per channel
  (``<prefix><channel_id>``: ``state``, ``open_until`` as Redis server ``TIME`` in epoch
  seconds, ``cooldown``, ``failures``, ``updated`` as server microseconds) plus a set of
  channel ids (``<prefix>channels``). The write runs as a Lua script so ``open_until`` is
  computed from the server clock: instances never compare their own clocks, and the local
  clock may be monotonic. A write never shortens a cool-down that is still running in
  Redis. Hashes expire after a day without writes.
* The same task reads every channel's hash every ``sync_interval_s`` and adopts any state
  written since it last looked (last writer wins, by server time), so an instance learns
  within about one interval that another instance opened, re-opened or closed a breaker.
  A channel with a local transition not yet written keeps its local state until it is.
* Failure counts below the threshold stay per instance: each instance opens on its own
  evidence, and every instance then follows the first one to open.
* Half-open probing is per instance: each instance admits its own single probe.
* Redis unreachable: a warning is logged once per outage (logger ``reapi.health``; the
  URL is not logged, it may hold a password), the breaker keeps working on local state
  alone, the task retries with a back-off of up to 5 s, pending transitions are written
  once Redis is back, and a recovery is logged at info. Nothing is ever raised into the
  request path, and ``start()``/``stop()`` do not raise for Redis errors either.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from reapi.aio import stop_tasks, wait_event

log = logging.getLogger("reapi.health")

CLOSED, OPEN, HALF_OPEN = 0, 1, 2
_NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half_open"}

_KEY_TTL_S = 86_400
_MAX_BACKOFF_S = 5.0
_REDIS_TIMEOUT_S = 2.0

# KEYS[1] channel hash, KEYS[2] channel-id set
# ARGV: state ("open"|"closed"), remaining cool-down s, cooldown s, failures, channel id, ttl
_PUSH_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = ARGV[1]
local open_until = 0
local cooldown = tonumber(ARGV[3])
if state == 'open' then
  local remaining = tonumber(ARGV[2])
  if remaining < 0 then remaining = 0 end
  open_until = now + remaining
  local cur = redis.call('HMGET', KEYS[1], 'state', 'open_until', 'cooldown')
  if cur[1] == 'open' and tonumber(cur[2]) and tonumber(cur[2]) > open_until then
    open_until = tonumber(cur[2])
    if tonumber(cur[3]) and tonumber(cur[3]) > cooldown then cooldown = tonumber(cur[3]) end
  end
end
redis.call('HSET', KEYS[1], 'state', state, 'open_until', string.format('%.6f', open_until),
           'cooldown', string.format('%.6f', cooldown), 'failures', ARGV[4], 'updated', stamp)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
redis.call('SADD', KEYS[2], ARGV[5])
return stamp
"""


class _Ch:
    __slots__ = ("state", "failures", "open_until", "cooldown", "probe_since")

    def __init__(self, cooldown: float) -> None:
        self.state = CLOSED
        self.failures = 0
        self.open_until = 0.0  # local clock
        self.cooldown = cooldown  # length of the current / last cool-down
        self.probe_since: float | None = None  # local clock; half-open probe admitted at


class ChannelHealth:
    def __init__(self, *, failure_threshold: int = 3, cooldown_s: float = 30.0,
                 max_cooldown_s: float = 300.0, redis_url: str | None = None,
                 clock: Callable[[], float] = time.monotonic, sync_interval_s: float = 1.0,
                 prefix: str = "reapi:health:", probe_timeout_s: float = 30.0) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if cooldown_s <= 0 or max_cooldown_s < cooldown_s:
            raise ValueError("need 0 < cooldown_s <= max_cooldown_s")
        self._threshold = failure_threshold
        self._base = float(cooldown_s)
        self._max = float(max_cooldown_s)
        self._clock = clock
        self._probe_timeout = float(probe_timeout_s)
        self._ch: dict[int, _Ch] = {}
        # Redis sharing
        self._redis_url = redis_url
        self._interval = float(sync_interval_s)
        self._prefix = prefix
        self._ids_key = prefix + "channels"
        self._dirty: set[int] = set()
        self._seen: dict[int, int] = {}  # channel -> `updated` stamp of the last state adopted/written
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._redis = None
        self._down = False
        self._failed_rounds = 0

    # ---- hot path -------------------------------------------------------------------

    def available(self, channel_id: int) -> bool:
        c = self._ch.get(channel_id)
        if c is None or c.state == CLOSED:
            return True
        now = self._clock()
        if c.state == OPEN:
            if now < c.open_until:
                return False
            c.state = HALF_OPEN
            c.probe_since = now
            return True
        # HALF_OPEN: one probe at a time; a probe that never reports is given up on.
        if c.probe_since is None or now - c.probe_since >= self._probe_timeout:
            c.probe_since = now
            return True
        return False

    def record_success(self, channel_id: int) -> None:
        c = self._ch.get(channel_id)
        if c is None:
            return
        if c.state == CLOSED:
            c.failures = 0
            return
        if c.state == OPEN and self._clock() < c.open_until:
            return  # a request from before the breaker opened; the cool-down stands
        c.state = CLOSED
        c.failures = 0
        c.cooldown = self._base
        c.open_until = 0.0
        c.probe_since = None
        self._mark(channel_id)

    def record_failure(self, channel_id: int) -> None:
        c = self._ch.get(channel_id)
        if c is None:
            c = self._ch[channel_id] = _Ch(self._base)
        c.failures += 1
        if c.state == CLOSED:
            if c.failures >= self._threshold:
                self._open(channel_id, c, self._base)
            return
        now = self._clock()
        if c.state == OPEN and now < c.open_until:
            return  # already cooling down
        # half-open (or open with the cool-down over): the probe failed
        self._open(channel_id, c, min(c.cooldown * 2.0, self._max), now)

    def _open(self, channel_id: int, c: _Ch, cooldown: float, now: float | None = None) -> None:
        if now is None:
            now = self._clock()
        c.state = OPEN
        c.cooldown = cooldown
        c.open_until = now + cooldown
        c.probe_since = None
        self._mark(channel_id)

    def _mark(self, channel_id: int) -> None:
        if self._redis_url is None:
            return
        self._dirty.add(channel_id)
        if self._wake is not None:
            self._wake.set()

    # ---- inspection -----------------------------------------------------------------

    def state(self, channel_id: int) -> dict:
        c = self._ch.get(channel_id)
        if c is None:
            return {"state": "closed", "consecutive_failures": 0, "cooldown_remaining_s": 0.0}
        return self._describe(c, self._clock())

    def states(self) -> dict[int, dict]:
        now = self._clock()
        return {cid: self._describe(c, now) for cid, c in list(self._ch.items())}

    @staticmethod
    def _describe(c: _Ch, now: float) -> dict:
        st = c.state
        remaining = 0.0
        if st == OPEN:
            remaining = c.open_until - now
            if remaining <= 0:
                st, remaining = HALF_OPEN, 0.0
        return {"state": _NAMES[st], "consecutive_failures": c.failures,
                "cooldown_remaining_s": remaining}

    # ---- Redis sharing --------------------------------------------------------------

    async def start(self) -> None:
        if self._redis_url is None or self._task is not None:
            return
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        try:
            self._redis = aioredis.Redis.from_url(
                self._redis_url, socket_connect_timeout=_REDIS_TIMEOUT_S,
                socket_timeout=_REDIS_TIMEOUT_S, retry=Retry(NoBackoff(), 0),
                decode_responses=True)
            self._push_script = self._redis.register_script(_PUSH_LUA)
        except Exception as e:  # a malformed URL: keep working locally
            log.warning("channel health: cannot use Redis (%s); using local state only",
                        type(e).__name__)
            self._redis = None
            return
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="reapi-health-sync")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_tasks(task)
        r, self._redis = self._redis, None
        if r is None:
            return
        if self._dirty and not self._down:
            try:  # best effort: hand pending transitions to the other instances
                async with asyncio.timeout(_REDIS_TIMEOUT_S):
                    await self._push(r)
            except Exception:
                pass
        try:
            await r.aclose()
        except Exception:
            pass
        self._wake = None

    async def _run(self) -> None:
        r = self._redis
        while True:
            try:
                await self._push(r)
                await self._pull(r)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._failed_rounds += 1
                if not self._down:
                    self._down = True
                    log.warning("channel health: Redis unreachable (%s: %s); using local state "
                                "only and retrying", type(e).__name__, e)
            else:
                if self._down:
                    log.info("channel health: Redis reachable again; sharing state resumed")
                self._down = False
                self._failed_rounds = 0
            delay = self._interval
            if self._failed_rounds:  # back off: interval, 2x, 4x ... up to 5 s (or the interval)
                delay = min(self._interval * 2 ** min(self._failed_rounds - 1, 16),
                            max(_MAX_BACKOFF_S, self._interval))
            wake = self._wake
            if wake is None:
                return
            if self._failed_rounds:
                await asyncio.sleep(delay)  # back off; new transitions wait for the next try
            else:
                await wait_event(wake, delay)
            wake.clear()

    async def _push(self, r) -> None:
        if not self._dirty:
            return
        ids = list(self._dirty)
        self._dirty.clear()
        now = self._clock()
        pipe = r.pipeline(transaction=False)
        for cid in ids:
            c = self._ch[cid]
            if c.state == CLOSED:
                args = ("closed", 0, c.cooldown, c.failures)
            else:
                remaining = c.open_until - now if c.state == OPEN else 0.0
                args = ("open", max(remaining, 0.0), c.cooldown, c.failures)
            await self._push_script(keys=[self._prefix + str(cid), self._ids_key],
                                    args=[*args, cid, _KEY_TTL_S], client=pipe)
        try:
            stamps = await pipe.execute()
        except BaseException:
            self._dirty.update(ids)  # write them next time
            raise
        for cid, stamp in zip(ids, stamps):
            self._seen[cid] = max(self._seen.get(cid, 0), int(stamp))

    async def _pull(self, r) -> None:
        ids = await r.smembers(self._ids_key)
        if not ids:
            return
        ids = sorted(ids)
        pipe = r.pipeline(transaction=False)
        pipe.time()
        for cid in ids:
            pipe.hgetall(self._prefix + cid)
        res = await pipe.execute()
        sec, usec = res[0]
        server_now = sec + usec / 1e6
        now = self._clock()
        for raw_id, h in zip(ids, res[1:]):
            if not h:
                continue
            try:
                cid = int(raw_id)
                stamp = int(h["updated"])
                remote_state = h["state"]
                open_until = float(h["open_until"])
                cooldown = float(h["cooldown"])
                failures = int(h["failures"])
            except (KeyError, ValueError):
                continue
            if cid in self._dirty or stamp <= self._seen.get(cid, 0):
                continue  # our own newer transition is pending, or nothing new
            self._seen[cid] = stamp
            self._adopt(cid, remote_state, open_until - server_now, cooldown, failures, now)

    def _adopt(self, cid: int, remote_state: str, remaining: float, cooldown: float,
               failures: int, now: float) -> None:
        c = self._ch.get(cid)
        cooldown = min(max(cooldown, self._base), self._max)
        if remote_state != "open":
            if c is not None and c.state != CLOSED:
                c.state = CLOSED
                c.failures = 0
                c.cooldown = self._base
                c.open_until = 0.0
                c.probe_since = None
            return
        if c is None:
            c = self._ch[cid] = _Ch(self._base)
        c.failures = max(c.failures, failures)
        c.cooldown = cooldown
        if remaining > 0:
            c.state = OPEN
            c.open_until = now + remaining
            c.probe_since = None
        elif c.state != HALF_OPEN:
            # the cool-down is already over: due for a probe here too
            c.state = OPEN
            c.open_until = now
