"""A hostile upstream for tests: an aiohttp server whose every answer the test scripts.

It stands for a buggy or malicious OpenAI/Anthropic-compatible server (a third
party we cannot reach, so it is ours to fake). A test gives it a handler, an
`async def (request: web.Request) -> web.StreamResponse`, and may swap it at any
time; every request it receives is recorded (method, path, headers, body).

    up = await start_hostile(handler)
    ... channel base_url = up.url + "/v1", api_key = HOSTILE_KEY ...
    up.handler = another_handler
    await up.close()

Helpers below build the usual answers: `json_answer`, `sse_answer` (a stream of
pre-framed chunks, with optional pauses), and `secret_forms()`: the channel key
and URL in every disguise a leak might take, for tests that look for them.
"""
from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Awaitable, Callable, Iterable

from aiohttp import web

HOSTILE_KEY = "sk-hostile-UPSTREAM-secret-0123456789abcdef"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hostile:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[dict] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.url = ""

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append({"method": request.method, "path": request.path_qs,
                              "headers": dict(request.headers), "body": body})
        return await self.handler(request)

    async def start(self) -> "Hostile":
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def secret_forms(self) -> list[str]:
        """The channel's key, base URL and host in the forms a scrubber must catch."""
        return secret_forms(HOSTILE_KEY, self.url + "/v1")

    async def close(self) -> None:
        if self.runner:
            await self.runner.cleanup()


async def start_hostile(handler: Handler) -> Hostile:
    return await Hostile(handler).start()


def secret_forms(key: str, base_url: str) -> list[str]:
    host = urllib.parse.urlsplit(base_url).netloc
    forms = {key, key.upper(), key.lower(), urllib.parse.quote(key, safe=""), json.dumps(key)[1:-1],
             base_url, base_url.upper(), urllib.parse.quote(base_url, safe=""), json.dumps(base_url)[1:-1],
             host, key[:8] + "****" + key[-4:], key[:3] + "..." + key[-4:]}
    return sorted(f for f in forms if f)


def json_answer(obj: object, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(obj).encode(), content_type="application/json",
                        headers=headers)


async def sse_answer(request: web.Request, frames: Iterable[bytes | float], status: int = 200) -> web.StreamResponse:
    """A text/event-stream answer: each bytes item is written as it is (frame it yourself, e.g.
    b'data: {...}\\n\\n'); a float item pauses that many seconds."""
    resp = web.StreamResponse(status=status, headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for frame in frames:
        if isinstance(frame, (int, float)):
            await asyncio.sleep(frame)
        else:
            await resp.write(frame)
    await resp.write_eof()
    return resp


def chat_completion(content: str = "hi", usage: object = None, model: str = "upstream-model") -> dict:
    obj: dict = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": "stop"}]}
    if usage is not None:
        obj["usage"] = usage
    return obj
