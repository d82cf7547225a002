"""The public routes (no key): GET /pricing, /healthz, /readyz, /metrics.

Plain ASGI, no framework: probes and scrapers call these often. Errors in OpenAI's envelope.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import orjson

from reapi import metrics
from reapi.api.http import JSON, Receive, Send, send_bytes, send_error
from reapi.errors import GatewayError
from reapi.gateway import Gateway

Answer = tuple[int, bytes, bytes]  # status, body, content type
Handler = Callable[[Gateway], Awaitable[Answer]]


def _json(obj: object, status: int = 200) -> Answer:
    return status, orjson.dumps(obj), JSON


async def pricing(gw: Gateway) -> Answer:
    """The rate card of the models some channel serves and the operator has not hidden, in the admin
    API's price shape (browsers get reapi.site's HTML page of the same card instead)."""
    from reapi.operations.prices import price_view  # the operations layer (pydantic with it): not at start-up

    snap = gw.catalog.snapshot
    served = {m for m in snap.served_models(None) if not (m in snap.info and snap.info[m].hidden)}
    data = []
    for name in sorted(served & snap.prices.keys()):
        p = snap.prices[name]
        lc = p.long_context
        data.append(price_view({
            "name": name, "input_micro": p.input_micro, "output_micro": p.output_micro,
            "cached_input_micro": p.cached_input_micro, "cache_write_micro": p.cache_write_micro,
            "context_window": p.context_window, "max_output_tokens": p.max_output_tokens,
            "lc_threshold_tokens": lc and lc.threshold_tokens, "lc_input_milli": lc and lc.input_multiplier_milli,
            "lc_output_milli": lc and lc.output_multiplier_milli,
            "aliases": orjson.dumps(snap.aliases_of(name)).decode()}))
    return _json({"object": "list", "currency": "USD", "unit": "per 1M tokens", "data": data})


async def healthz(gw: Gateway) -> Answer:
    return _json({"status": "ok"})


async def readyz(gw: Gateway) -> Answer:
    """Ready when the store (and Redis, if configured) answers: 200, else 503."""
    checks = {"store": "ok"}
    try:
        async with gw.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    except Exception:
        checks["store"] = "unreachable"
    if gw.settings.redis_url:
        checks["redis"] = "ok" if await gw.redis_ready() else "unreachable"
    ok = all(v == "ok" for v in checks.values())
    return _json({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)


async def metrics_route(gw: Gateway) -> Answer:
    body, ctype = await asyncio.to_thread(metrics.render)  # requests keep flowing meanwhile
    return 200, body, ctype.encode()


ROUTES: dict[str, Handler] = {"/pricing": pricing, "/healthz": healthz, "/readyz": readyz,
                              "/metrics": metrics_route}


def build_public(gw: Gateway):
    """The ASGI sub-application of ROUTES (GET and HEAD)."""

    async def app(scope: dict, receive: Receive, send: Send) -> None:
        handler = ROUTES[scope["path"]]
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            return await send_error(send, GatewayError(405, f"Use GET for {scope['path']}.",
                                                       code="method_not_allowed"), [(b"allow", b"GET, HEAD")])
        status, body, ctype = await handler(gw)
        if method == "HEAD":
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": b""})
        await send_bytes(send, status, body, [], ctype)

    return app
