"""A webhook receiver the tests run (aiohttp on 127.0.0.1): it verifies every request with the
Standard Webhooks reference library and answers what the test scripted."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: dict[str, bool]  # secret -> did its signature verify


@dataclass
class Receiver:
    url: str
    secrets: list[str] = field(default_factory=list)  # verified against each
    answers: list[int] = field(default_factory=list)  # statuses to answer in turn; then 200
    delay_s: float = 0.0
    big_answer: bool = False
    got: list[Received] = field(default_factory=list)


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(url="")

    async def hook(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        verified = {}
        for s in rec.secrets:
            try:
                Webhook(s).verify(body, dict(request.headers))
                verified[s] = True
            except WebhookVerificationError:
                verified[s] = False
        rec.got.append(Received(request.path, dict(request.headers), body, verified))
        if rec.delay_s:
            await asyncio.sleep(rec.delay_s)
        status = rec.answers.pop(0) if rec.answers else 200
        if status in (301, 302, 307, 308):
            return web.Response(status=status, headers={"location": "/moved"})
        return web.Response(status=status, body=b"x" * (1 << 20) if rec.big_answer else b"ok")

    async def moved(request: web.Request) -> web.Response:
        rec.got.append(Received(request.path, dict(request.headers), await request.read(), {}))
        return web.Response(text="followed")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_route("*", "/moved", moved)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()
