"""reapi's own task API, offline: an upstream gateway of the same API (channel type reapi-tasks).

    POST /api/v1/images/generations | /api/v1/videos/generations | /api/v1/audio/generations
         {"model", "prompt"?, "n"?, "number_of_songs"?, "return_last_frame"?, ...}
         -> {"id": "task_<26>", "model", "status": "processing", "created_at"}
    GET  /api/v1/tasks/{id}
         -> {"id", "model", "status": processing|completed|failed, "progress", "created_at",
             "output": {"image_urls" | "video_urls" | "audio_urls": [...], "last_frame_url"?} | null,
             "error": {"code", "message"} | null}
    GET  /_mock/reapi/files/{id}/{n}.{png|mp4|mp3}   the outputs (valid files, reapi.mock_upstream.media)
    GET  /_mock/reapi/stats   {"received", "submits", "polls", "tasks"};  POST /_mock/reapi/reset

Errors are {"error": {"code": <5 digits>, "message", "request_id"}}. Directives in the prompt
(or lyrics), e.g. "[reapi steps=3 fail]": steps=N (N polls answer processing, with progress,
before the end; default 1), fail (the task ends failed, 50003), reject (the submit answers 400
20001), broke (the submit answers 402 30001), slow=MS (the submit answer waits), stuck (never
ends), busy=N (the first N polls answer 429 40001), last_frame (a video also gets a last frame).
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

_DIRECTIVE = re.compile(r"\[reapi ([^\]]*)\]")
CATEGORIES = {"images": "image", "videos": "video", "audio": "audio"}
_EXT = {"image": "png", "video": "mp4", "audio": "mp3"}
_FIELD = {"image": "image_urls", "video": "video_urls", "audio": "audio_urls"}
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


@dataclass
class ReapiTask:
    id: str
    model: str
    category: str
    files: int
    steps: int
    fail: bool
    stuck: bool
    busy: int
    last_frame: bool
    created_at: int
    polls: int = 0


@dataclass
class ReapiState:
    api_key: str | None
    tasks: dict[str, ReapiTask] = field(default_factory=dict)
    received: int = 0
    submits: int = 0
    polls: int = 0


REAPI = web.AppKey("reapi_mock_reapi_tasks", ReapiState)


def _error(status: int, code: int, message: str, headers: dict | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "request_id": "req_" + secrets.token_hex(8)}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def _auth(request: web.Request) -> web.Response | None:
    key = request.app[REAPI].api_key
    sent = request.headers.get("Authorization")
    if sent is None:
        return _error(401, 10001, "Missing Authorization header.")
    if not sent.startswith("Bearer "):
        return _error(401, 10002, "Authorization must be a Bearer token.")
    if key is not None and sent != "Bearer " + key:
        return _error(401, 10003, "Invalid API key.")
    return None


def _directives(text: str) -> dict[str, str]:
    return read_directives(_DIRECTIVE, text)


def _int(d: dict, k: str, default: int, hi: int = 10_000) -> int:
    return clamped_int(d, k, default, hi)


def new_task_id() -> str:
    return "task_" + "".join(secrets.choice(_ALPHABET) for _ in range(26))


async def submit(request: web.Request) -> web.Response:
    state = request.app[REAPI]
    denied = _auth(request)
    if denied is not None:
        return denied
    category = CATEGORIES[request.match_info["kind"]]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, 20001, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return _error(400, 20001, "The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _error(400, 20002, "Missing parameter: model.")
    state.received += 1
    text = " ".join(v for v in (body.get("prompt"), body.get("lyrics")) if isinstance(v, str))
    d = _directives(text)
    if "slow" in d:
        await asyncio.sleep(_int(d, "slow", 0, 60_000) / 1000)
    if "reject" in d:
        return _error(400, 20001, "Invalid parameter: prompt (rejected by the content filter).")
    if "broke" in d:
        return _error(402, 30001, "Insufficient credits.")
    count = body.get("n", body.get("number_of_songs", 1))
    files = count if type(count) is int and 1 <= count <= 8 else 1
    state.submits += 1
    t = ReapiTask(new_task_id(), body["model"], category, files if category != "video" else 1,
                  steps=_int(d, "steps", 1), fail="fail" in d, stuck="stuck" in d, busy=_int(d, "busy", 0),
                  last_frame=category == "video" and ("last_frame" in d or body.get("return_last_frame") is True),
                  created_at=int(time.time()))
    state.tasks[t.id] = t
    return web.Response(body=orjson.dumps({"id": t.id, "model": t.model, "status": "processing",
                                          "created_at": t.created_at}), content_type="application/json")


async def get_task(request: web.Request) -> web.Response:
    state = request.app[REAPI]
    denied = _auth(request)
    if denied is not None:
        return denied
    t = state.tasks.get(request.match_info["id"])
    if t is None:
        return _error(404, 20003, "Task not found.")
    state.polls += 1
    t.polls += 1
    if t.polls <= t.busy:
        return _error(429, 40001, "Rate limited.", {"retry-after": "0"})
    out: dict = {"id": t.id, "model": t.model, "created_at": t.created_at, "output": None, "error": None}
    if t.stuck or t.polls <= t.busy + t.steps:
        out["status"] = "processing"
        out["progress"] = min(99, int(100 * (t.polls - t.busy) / (t.steps + 1)))
    elif t.fail:
        out["status"] = "failed"
        out["error"] = {"code": 50003, "message": "The upstream provider rejected the task (content policy)."}
    else:
        base = f"{request.scheme}://{request.host}/_mock/reapi/files/{t.id}"
        ext = _EXT[t.category]
        out["status"] = "completed"
        out["progress"] = 100
        out["completed_at"] = int(time.time())
        out["output"] = {_FIELD[t.category]: [f"{base}/{n}.{ext}" for n in range(t.files)]}
        if t.last_frame:
            out["output"]["last_frame_url"] = f"{base}/{t.files}.png"
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def files(request: web.Request) -> web.Response:
    ext = request.match_info["ext"]
    makers = {"png": (media.png, "image/png"), "mp4": (media.mp4, "video/mp4"), "mp3": (media.mp3, "audio/mpeg")}
    if request.match_info["id"] not in request.app[REAPI].tasks or ext not in makers:
        return web.Response(status=404)
    make, ctype = makers[ext]
    return web.Response(body=make(), content_type=ctype)


async def stats(request: web.Request) -> web.Response:
    s = request.app[REAPI]
    return web.Response(body=orjson.dumps({"received": s.received, "submits": s.submits, "polls": s.polls,
                                          "tasks": len(s.tasks)}), content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    s = request.app[REAPI]
    s.tasks.clear()
    s.received = s.submits = s.polls = 0
    return web.Response(body=b"{}", content_type="application/json")


def add_routes(app: web.Application, api_key: str | None) -> None:
    app[REAPI] = ReapiState(api_key)
    app.router.add_post("/api/v1/{kind:images|videos|audio}/generations", submit)
    app.router.add_get("/api/v1/tasks/{id}", get_task)
    app.router.add_get("/_mock/reapi/files/{id}/{n:\\d+}.{ext}", files)
    app.router.add_get("/_mock/reapi/stats", stats)
    app.router.add_post("/_mock/reapi/reset", reset)
