"""Servers the media tests start on 127.0.0.1: an ASGI app under uvicorn, a file host (aiohttp)
whose routes the test writes, and moto's S3-compatible server."""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Awaitable, Callable

import uvicorn
from aiohttp import web


@contextlib.asynccontextmanager
async def serve_asgi(app) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning",
                                           access_log=False))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def file_host(routes: dict[str, Handler]) -> AsyncIterator[tuple[str, list[str]]]:
    """An aiohttp server answering GET path -> handler; yields its base URL and the paths asked for."""
    seen: list[str] = []
    app = web.Application()

    def wrap(h: Handler) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            seen.append(request.path)
            return await h(request)
        return handler

    for path, h in routes.items():
        app.router.add_get(path, wrap(h))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()
