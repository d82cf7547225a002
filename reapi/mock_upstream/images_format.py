"""The OpenAI Images API, offline: images come back in the answer, as base64 PNGs.

    POST /v1/images/generations  {"model", "prompt", "n"?, "size"?, ...}
    POST /v1/images/edits        the same plus "images": [{"image_url": URL}, ...] (JSON edits)
         -> {"created", "data": [{"b64_json", "revised_prompt"}], "output_format": "png", "size", "usage"}
    GET  /_mock/images/stats     {"received": N, "generated": N}
    POST /_mock/images/reset

Errors are OpenAI's {"error": {"message", "type", "param", "code"}}. Directives in the prompt,
e.g. "[images slow=200 reject]": reject (400 moderation_blocked), status=N (that HTTP error),
slow=MS (the answer waits), url (answer data[].url links to this mock instead of b64_json),
echo_key (a 401 whose message quotes the key it was sent, as some upstreams do).
"""
from __future__ import annotations

import asyncio
import base64
import re
import time
from dataclasses import dataclass

import orjson
from aiohttp import web

from . import media
from .task_directives import clamped_int, read_directives

_DIRECTIVE = re.compile(r"\[images ([^\]]*)\]")


@dataclass
class ImagesState:
    api_key: str | None
    received: int = 0
    generated: int = 0


IMAGES = web.AppKey("reapi_mock_images", ImagesState)


def _error(status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
           param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _directives(text: str) -> dict[str, str]:
    return read_directives(_DIRECTIVE, text)


def _int(d: dict[str, str], k: str, default: int, hi: int = 60_000) -> int:
    return clamped_int(d, k, default, hi)


async def _generate(request: web.Request, edit: bool) -> web.Response:
    state = request.app[IMAGES]
    sent = request.headers.get("Authorization", "")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        body = None
    prompt = body.get("prompt") if isinstance(body, dict) else None
    d = _directives(prompt) if isinstance(prompt, str) else {}
    if state.api_key is not None and sent != "Bearer " + state.api_key:
        return _error(401, "Incorrect API key provided.", code="invalid_api_key")
    if "echo_key" in d:
        return _error(401, f"Incorrect API key provided: {sent.removeprefix('Bearer ')}. You can find your "
                      "API key at https://platform.openai.com/account/api-keys.", code="invalid_api_key")
    if not isinstance(body, dict):
        return _error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str):
        return _error(400, "you must provide a model parameter", param="model")
    if not isinstance(prompt, str) or not prompt:
        return _error(400, "Missing required parameter: 'prompt'.", param="prompt")
    n = body.get("n", 1)
    if type(n) is not int or not 1 <= n <= 10:
        return _error(400, "Invalid value for 'n': must be an integer between 1 and 10.", param="n")
    if edit and not (isinstance(body.get("images"), list) and body["images"]):
        return _error(400, "Missing required parameter: 'images'.", param="images")
    state.received += 1
    if "slow" in d:
        await asyncio.sleep(_int(d, "slow", 0) / 1000)
    if "reject" in d:
        return _error(400, "Your request was rejected as a result of our safety system.",
                      type="image_generation_user_error", code="moderation_blocked")
    if "status" in d:
        return _error(_int(d, "status", 500, 599) or 500, "The server had an error processing your request.",
                      type="server_error")
    state.generated += n
    png = media.png(8, 8)
    if "url" in d:
        base = f"{request.scheme}://{request.host}"
        data = [{"url": f"{base}/_mock/images/files/{i}.png"} for i in range(n)]
    else:
        data = [{"b64_json": base64.b64encode(png).decode(), "revised_prompt": prompt[:200]} for _ in range(n)]
    out = {"created": int(time.time()), "data": data, "output_format": "png",
           "size": body.get("size", "1024x1024"), "quality": body.get("quality", "auto"),
           "usage": {"input_tokens": 10, "output_tokens": 4160 * n, "total_tokens": 10 + 4160 * n}}
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def generations(request: web.Request) -> web.Response:
    return await _generate(request, edit=False)


async def edits(request: web.Request) -> web.Response:
    return await _generate(request, edit=True)


async def files(request: web.Request) -> web.Response:
    return web.Response(body=media.png(8, 8), content_type="image/png")


async def stats(request: web.Request) -> web.Response:
    s = request.app[IMAGES]
    return web.Response(body=orjson.dumps({"received": s.received, "generated": s.generated}),
                        content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    s = request.app[IMAGES]
    s.received = s.generated = 0
    return web.Response(body=b"{}", content_type="application/json")


def add_routes(app: web.Application, api_key: str | None) -> None:
    app[IMAGES] = ImagesState(api_key)
    app.router.add_post("/v1/images/generations", generations)
    app.router.add_post("/v1/images/edits", edits)
    app.router.add_get("/_mock/images/files/{n}.png", files)
    app.router.add_get("/_mock/images/stats", stats)
    app.router.add_post("/_mock/images/reset", reset)
