"""POST /admin/channels/{id}/test: one tiny real call through a channel's adapter.

The answer is the admin's, but it is still an upstream's text: every message is scrubbed
(reapi.relay.scrub), codes are allow-listed, a redirect is not followed (it maps to
upstream_bad_response) and an unreadable reply is a failed probe, never a 500.
"""
from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from reapi.catalog import Channel
from reapi.errors import GatewayError
from reapi.relay.registry import adapter_for
from reapi.relay.scrub import safe_code, scrub

log = logging.getLogger("reapi.health")


def _failed(model: str | None, status: int | None, message: str, code: str, channel: Channel) -> dict:
    return {"ok": False, "model": model, "status": status,
            "error": {"message": scrub(message, channel), "code": safe_code(code, channel, "upstream_error")}}


async def probe_channel(gw, channel: Channel) -> dict:
    adapter = adapter_for(channel.type)
    if not channel.models:
        return _failed(None, None, "The channel serves no model to probe.", "invalid_channel", channel)
    model = channel.models[0]
    body = {"model": model, "messages": [{"role": "user", "content": "ping"}]}
    started = time.perf_counter()
    try:
        req = adapter.build_request(channel, body, channel.upstream_model(model), stream=False, max_tokens=8)
        async with gw.http.post(req.url, data=req.body, headers=req.headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=30)) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise adapter.map_error(resp.status, raw, channel)
            adapter.parse_response(raw, model)
    except GatewayError as err:
        gw.health.record_failure(channel.id)
        return _failed(model, err.status, err.message, err.code or "upstream_error", channel)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        gw.health.record_failure(channel.id)
        return _failed(model, None, "The upstream could not be reached.", "upstream_unreachable", channel)
    except Exception as exc:  # an unreadable 2xx body (not JSON, wrong shapes): a failed probe, not a 500
        gw.health.record_failure(channel.id)
        log.warning("channel=%d probe: unreadable upstream reply (%s)", channel.id, type(exc).__name__)
        return _failed(model, 502, "The upstream returned a malformed reply.", "upstream_bad_response", channel)
    gw.health.record_success(channel.id)
    return {"ok": True, "model": model, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
