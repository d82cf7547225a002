"""Config C: the floor of reapi's stack, a forwarder with no features at all.

Same server (uvicorn with uvloop and httptools), client (aiohttp) and JSON
library (orjson) as reapi, doing only what any gateway must: read the body,
parse it once, POST it upstream, relay the answer (SSE chunks as they come).
Run: BENCH_UPSTREAM=http://127.0.0.1:18090 uvicorn bench.forwarder:app --loop uvloop --http httptools
"""
from __future__ import annotations

import os

import aiohttp
import orjson

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:18090")
session: aiohttp.ClientSession | None = None


async def app(scope, receive, send) -> None:
    global session
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    stream = orjson.loads(body).get("stream") is True
    # The path (/fast, /slow or /stream + /v1/chat/completions) picks the upstream variant.
    async with session.post(UPSTREAM + scope["path"], data=body, headers={"content-type": "application/json"}) as resp:
        ctype = resp.headers.get("content-type", "application/json").encode()
        await send({"type": "http.response.start", "status": resp.status, "headers": [(b"content-type", ctype)]})
        if stream:
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": await resp.read()})
