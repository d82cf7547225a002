"""POST /admin/channels/{id}/test: one tiny real call through a channel's adapter."""
from __future__ import annotations

import asyncio
import time

import aiohttp

from reapi.catalog import Channel
from reapi.errors import GatewayError


async def probe_channel(gw, channel: Channel) -> dict:
    from reapi.gateway import ADAPTERS

    adapter = ADAPTERS[channel.type]
    model = channel.models[0]
    body = {"model": model, "messages": [{"role": "user", "content": "ping"}]}
    req = adapter.build_request(channel, body, channel.upstream_model(model), stream=False, max_tokens=8)
    started = time.perf_counter()
    try:
        async with gw.http.post(req.url, data=req.body, headers=req.headers,
                                timeout=aiohttp.ClientTimeout(total=30)) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise adapter.map_error(resp.status, raw, channel)
            adapter.parse_response(raw, model)
    except GatewayError as err:
        gw.health.record_failure(channel.id)
        return {"ok": False, "model": model, "status": err.status, "error": {"message": err.message, "code": err.code}}
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        gw.health.record_failure(channel.id)
        return {"ok": False, "model": model, "status": None,
                "error": {"message": "The upstream could not be reached.", "code": "upstream_unreachable"}}
    gw.health.record_success(channel.id)
    return {"ok": True, "model": model, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
