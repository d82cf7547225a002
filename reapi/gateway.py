"""The services one gateway process runs with, started and stopped together."""
from __future__ import annotations

import asyncio
import gc
import logging

import aiohttp

from reapi.billing.ledger import now_ms, sweep
from reapi.billing.writer import BillingWriter
from reapi.limits import Limiter, make_limiter
from reapi.relay.anthropic import ADAPTER as ANTHROPIC
from reapi.relay.base import Adapter
from reapi.relay.health import ChannelHealth
from reapi.relay.openai import ADAPTER as OPENAI
from reapi.settings import Settings
from reapi.store.cache import CatalogCache
from reapi.store.db import create_engine

log = logging.getLogger("reapi")

ADAPTERS: dict[str, Adapter] = {"openai": OPENAI, "anthropic": ANTHROPIC}


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings.database_url)
        self.catalog = CatalogCache(self.engine, settings.config_poll_ms)
        self.writer = BillingWriter(self.engine)
        self.limiter: Limiter = make_limiter(settings.redis_url)
        self.health = ChannelHealth(redis_url=settings.redis_url, failure_threshold=settings.channel_failures,
                                    cooldown_s=settings.channel_cooldown_s,
                                    max_cooldown_s=max(300, settings.channel_cooldown_s))
        self.http: aiohttp.ClientSession | None = None
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        from reapi.billing import tokens
        from reapi import metrics

        await asyncio.to_thread(tokens.warm)
        await self.catalog.reload()
        self.catalog.start()
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
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # collector, whose full passes over it would otherwise stall requests for milliseconds.
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        await self.catalog.stop()
        await self.writer.stop()
        await self.health.stop()
        await self.limiter.close()
        if self.http:
            await self.http.close()
        await self.engine.dispose()

    async def sweep_once(self) -> int:
        cutoff = now_ms() - self.settings.max_request_seconds * 1000
        async with self.engine.begin() as conn:
            n = await sweep(conn, cutoff)
        if n:
            log.warning("released %d abandoned hold(s) older than %ds", n, self.settings.max_request_seconds)
        return n

    async def _sweep_forever(self) -> None:
        interval = max(1.0, min(60.0, self.settings.max_request_seconds / 4))
        while True:
            await asyncio.sleep(interval)
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
