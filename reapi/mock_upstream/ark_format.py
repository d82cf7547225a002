"""The Volcengine Ark content-generation task API, offline (Seedance-style video tasks).

    POST /api/v3/contents/generations/tasks       {"model", "content": [{"type": "text", "text"}, ...], ...}
                                                  -> {"id": "cgt-..."}
    GET  /api/v3/contents/generations/tasks/{id}  -> {"id", "model", "status": queued|running|succeeded|
                                                      failed|cancelled, "content": {"video_url", "last_frame_url"},
                                                      "error": {"code", "message"} | null, "usage", ...}
    GET  /_mock/ark/stats                         {"received": N, "submits": N, "polls": N, "tasks": N}
    POST /_mock/ark/reset

Errors are Ark's {"error": {"code", "message", "type"}}. Directives in the prompt text, e.g.
"[ark steps=3 fail]": steps=N (N polls answer running, with progress, before the end; default 1),
fail (the task ends failed), reject (the submit answers 400), slow=MS (the submit answer waits),
stuck (never ends), busy=N (the first N polls answer 429), last_frame (also a last frame image),
output_host=NAME (the output URLs name that host instead of this one).
Outputs are real files served by this mock (reapi.mock_upstream.media): a valid MP4 and a valid PNG.
"""
from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from . import media
from .task_directives import clamped_int, read_directives

PATH = "/api/v3/contents/generations/tasks"
_DIRECTIVE = re.compile(r"\[ark ([^\]]*)\]")


@dataclass
class ArkTask:
    id: str
    model: str
    steps: int
    fail: bool
    stuck: bool
    busy: int
    last_frame: bool
    created_at: int
    output_host: str | None = None
    polls: int = 0


@dataclass
class ArkState:
    api_key: str | None
    tasks: dict[str, ArkTask] = field(default_factory=dict)
    received: int = 0  # submit requests that arrived (before any directive delays or rejects them)
    submits: int = 0  # submits accepted (a task created)
    polls: int = 0


ARK = web.AppKey("reapi_mock_ark", ArkState)


def _error(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps({"error": {"code": code, "message": message, "type": "BadRequest"}}),
                        status=status, content_type="application/json", headers=headers)


def _authorized(request: web.Request) -> bool:
    key = request.app[ARK].api_key
    return key is None or request.headers.get("Authorization") == "Bearer " + key


def _directives(text: str) -> dict[str, str]:
    return read_directives(_DIRECTIVE, text)


def _int(d: dict, k: str, default: int) -> int:
    return clamped_int(d, k, default, 10_000)


async def submit(request: web.Request) -> web.Response:
    state = request.app[ARK]
    if not _authorized(request):
        return _error(401, "AuthenticationError", "The API key in the request is missing or invalid.")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "InvalidParameter", "The request body is not valid JSON.")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not isinstance(body.get("content"), list):
        return _error(400, "MissingParameter", "The request must have model and content.")
    state.received += 1
    text = " ".join(c.get("text", "") for c in body["content"] if isinstance(c, dict) and c.get("type") == "text")
    d = _directives(text)
    if "slow" in d:
        await asyncio.sleep(_int(d, "slow", 0) / 1000)
    if "reject" in d:
        return _error(400, "InputTextSensitiveContentDetected",
                      "The request failed because the input text may contain sensitive information.")
    state.submits += 1
    tid = "cgt-" + time.strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(4)
    state.tasks[tid] = ArkTask(tid, body["model"], steps=_int(d, "steps", 1), fail="fail" in d, stuck="stuck" in d,
                               busy=_int(d, "busy", 0), last_frame="last_frame" in d or bool(body.get("return_last_frame")),
                               created_at=int(time.time()), output_host=d.get("output_host") or None)
    return web.Response(body=orjson.dumps({"id": tid}), content_type="application/json")


async def get_task(request: web.Request) -> web.Response:
    state = request.app[ARK]
    if not _authorized(request):
        return _error(401, "AuthenticationError", "The API key in the request is missing or invalid.")
    t = state.tasks.get(request.match_info["id"])
    if t is None:
        return _error(404, "ResourceNotFound", "The specified task does not exist.")
    state.polls += 1
    t.polls += 1
    if t.polls <= t.busy:
        return _error(429, "RateLimitExceeded", "Too many requests.", {"retry-after": "0"})
    out: dict = {"id": t.id, "model": t.model, "created_at": t.created_at, "updated_at": int(time.time()),
                 "error": None, "content": None}
    done_after = t.busy + t.steps
    if t.stuck or t.polls <= done_after:
        out["status"] = "queued" if t.polls - t.busy <= 0 else "running"
        out["progress"] = min(99, int(100 * (t.polls - t.busy) / (t.steps + 1)))
    elif t.fail:
        out["status"] = "failed"
        out["error"] = {"code": "OutputVideoSensitiveContentDetected",
                        "message": "The generated video may contain sensitive information."}
    else:
        base = f"{request.scheme}://{request.host}"
        if t.output_host:  # the output on another host of the same port (e.g. an internal name)
            base = f"{request.scheme}://{t.output_host}:{request.url.port}"
        out["status"] = "succeeded"
        out["content"] = {"video_url": f"{base}/_mock/ark/files/{t.id}.mp4"}
        if t.last_frame:
            out["content"]["last_frame_url"] = f"{base}/_mock/ark/files/{t.id}.png"
        out["usage"] = {"completion_tokens": 108900, "total_tokens": 108900}
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def files(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name.endswith(".mp4"):
        return web.Response(body=media.mp4(), content_type="video/mp4")
    if name.endswith(".png"):
        return web.Response(body=media.png(), content_type="image/png")
    return web.Response(status=404)


async def stats(request: web.Request) -> web.Response:
    s = request.app[ARK]
    return web.Response(body=orjson.dumps({"received": s.received, "submits": s.submits, "polls": s.polls,
                                          "tasks": len(s.tasks)}),
                        content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    s = request.app[ARK]
    s.tasks.clear()
    s.received = s.submits = s.polls = 0
    return web.Response(body=b"{}", content_type="application/json")


def add_routes(app: web.Application, api_key: str | None) -> None:
    app[ARK] = ArkState(api_key)
    app.router.add_post(PATH, submit)
    app.router.add_get(PATH + "/{id}", get_task)
    app.router.add_get("/_mock/ark/files/{name}", files)
    app.router.add_get("/_mock/ark/stats", stats)
    app.router.add_post("/_mock/ark/reset", reset)
