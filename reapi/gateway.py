"""The services one gateway process runs with, started and stopped together."""
from __future__ import annotations

import asyncio
import gc
import logging
import secrets

import aiohttp
from sqlalchemy import text

from reapi.aio import stop_tasks, watch_lag
from reapi.billing.ledger import DB_NOW, now_ms
from reapi.billing.writer import BillingWriter
from reapi.limits import Limiter, make_limiter
from reapi.relay.health import ChannelHealth
from reapi.relay.registry import ADAPTERS  # noqa: F401 (re-exported: the registry lives in reapi.relay.registry)
from reapi.settings import Settings
from reapi.store.cache import CatalogCache
from reapi.store.db import create_engine

log = logging.getLogger("reapi")

# A hold older than REAPI_MAX_REQUEST_SECONDS plus this is released whatever its instance: calls
# are bounded to REAPI_MAX_REQUEST_SECONDS, so only a hold whose close was lost gets that old.
AGE_GRACE_S = 60

# The lease: this process's row in `instances`, written and judged by the store's clock ({now}).
RENEW_LEASE = ("INSERT INTO instances (id, started_at, expires_at) VALUES (:id, {now}, {now} + :ms) "
               "ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at")
# Leases that ran out long ago: their holds, if any are left, count as the holds of a missing instance.
FORGET_LEASES = "DELETE FROM instances WHERE expires_at < {now} - :ms"
END_LEASE = "DELETE FROM instances WHERE id = :id"


FULL_GC_EVERY = 1000  # gc's third threshold (Python's default is 10); see Gateway.start


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings.database_url)
        self.catalog = CatalogCache(self.engine, settings.config_poll_ms)
        self.instance_id = secrets.token_hex(8)  # this process's lease, recorded on each of its holds
        self.writer = BillingWriter(self.engine, instance_id=self.instance_id,
                                    async_holds=settings.pg_hold_commit == "async")
        self.limiter: Limiter = make_limiter(settings.redis_url)
        self.health = ChannelHealth(redis_url=settings.redis_url, failure_threshold=settings.channel_failures,
                                    cooldown_s=settings.channel_cooldown_s,
                                    max_cooldown_s=max(300, settings.channel_cooldown_s))
        self.http: aiohttp.ClientSession | None = None
        self._sweeper: asyncio.Task | None = None
        self._lease: asyncio.Task | None = None
        self._lag: asyncio.Task | None = None
        self.task_worker = None  # reapi.tasks.worker.Worker when this process works tasks
        self.media_store = None  # reapi.media's store, opened by the task worker on first use
        self.task_polls = None  # SQLite: the task API's read-only poll connection (reapi.tasks.queries)

    async def start(self) -> None:
        from reapi.billing import tokens
        from reapi import metrics

        await asyncio.to_thread(tokens.warm)
        await self.catalog.reload()
        self.catalog.start()
        await self.renew_lease()  # before the first hold: a hold without a live lease is abandoned
        self._lease = asyncio.get_running_loop().create_task(self._renew_forever())
        self.writer.start()
        await self.health.start()
        metrics.set_health_provider(self.health.states)
        s = self.settings
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(total=None, connect=s.upstream_connect_timeout,
                                          sock_read=s.upstream_read_timeout),
            auto_decompress=True, skip_auto_headers=("User-Agent",))
        await self.sweep_once()  # holds left by a process that died are released at start-up
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        self._lag = asyncio.get_running_loop().create_task(watch_lag(metrics.loop_lag))
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # collector, whose full passes over it would otherwise stall requests for milliseconds.
        gc.collect()
        gc.freeze()
        # A full collection walks every live object: with 5,000 streams open that is some million of
        # them, 100-320 ms with the loop stopped, and Python's default ran one every second or two
        # (bench/analysis.md). One per FULL_GC_EVERY middle-generation passes instead of 10 makes
        # them rare under load; the young passes, which free nearly all cyclic garbage, are unchanged.
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_GC_EVERY)

    async def stop(self) -> None:
        await stop_tasks(self._sweeper, self._lag)
        await self.catalog.stop()
        await self.writer.stop()
        if self._lease:
            await stop_tasks(self._lease)
            await self.end_lease()
        await self.health.stop()
        await self.limiter.close()
        if self.http:
            await self.http.close()
        if self.task_polls is not None:
            self.task_polls.conn.close()
        await self.engine.dispose()

    @property
    def lease_interval(self) -> float:
        """Seconds between lease renewals, and between sweeps."""
        return self.settings.lease_seconds / 3

    async def _lease_sql(self, *statements: tuple[str, dict]) -> None:
        """Statements on `instances`, in one transaction."""
        async with self.engine.begin() as conn:
            for sql, params in statements:
                await conn.execute(text(sql.replace("{now}", DB_NOW[conn.dialect.name])), params)

    async def renew_lease(self) -> None:
        """Extend this instance's lease (create it the first time) and forget leases long gone."""
        lease = self.settings.lease_seconds
        await self._lease_sql((RENEW_LEASE, {"id": self.instance_id, "ms": lease * 1000}),
                              (FORGET_LEASES, {"ms": max(3600, 10 * lease) * 1000}))

    async def end_lease(self) -> None:
        """On a clean stop: the lease goes, so another instance releases any hold still open at once."""
        try:
            await self._lease_sql((END_LEASE, {"id": self.instance_id}))
        except Exception:
            log.warning("could not end this instance's lease; it runs out in %ds", self.settings.lease_seconds)

    async def _renew_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.lease_interval)
            try:
                await self.renew_lease()
            except Exception:
                if not failing:
                    log.exception("could not renew this instance's lease; retrying (other instances release "
                                  "its holds if it runs out)")
                failing = True
                continue
            if failing:
                log.warning("instance lease renewed again")
            failing = False

    async def sweep_once(self) -> int:
        """Release the holds of dead instances (lease ran out or gone) and any hold past the age limit."""
        cutoff = now_ms() - (self.settings.max_request_seconds + AGE_GRACE_S) * 1000
        n = await self.writer.sweep(cutoff)
        if n:
            log.warning("released %d abandoned hold(s)", n)
        return n

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_interval)
            try:
                await self.sweep_once()
            except Exception:
                log.exception("hold sweeper failed; will retry")

    async def redis_ready(self) -> bool:
        if not self.settings.redis_url:
            return True
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(await client.ping())
        except Exception:
            return False
        finally:
            await client.aclose()
