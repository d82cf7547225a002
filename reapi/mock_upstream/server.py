"""The mock upstream HTTP server (aiohttp): routes, auth, delays, streaming, stats.

Routes
    POST /v1/chat/completions   OpenAI Chat Completions (Authorization: Bearer KEY)
    POST /v1/messages           Anthropic Messages (x-api-key: KEY or Authorization: Bearer KEY;
                                anthropic-version header required)
    POST /v1/responses          OpenAI Responses (Authorization: Bearer KEY); stored unless store: false
    GET/DELETE /v1/responses/{id}, POST /v1/responses/{id}/cancel, GET /v1/responses/{id}/input_items
                                the stored responses (404 for an id this mock did not make)
    POST /v1/messages/count_tokens  Anthropic token counting (same auth; the prompt as /v1/messages counts it)
    GET  /v1/models             OpenAI model list (either auth header)
    GET/DELETE /_mock/requests  recorded requests (newest last, last 200) / clear
    GET  /_mock/stats           request and stream counters
    POST /_mock/reset           zero the counters and forget the requests

Streams are written as one write when there is no chunk delay (cheap for
benchmarks), else unit by unit with the delay in between.  A stream counts as
*cancelled* when the client goes away before its end: a write fails, the handler
is cancelled, or the connection is seen closed while waiting between chunks.
``[mock drop_after=N]`` streams are counted as ``streams_dropped``, not completed.

Stored responses (Responses API): every response made without ``store: false`` is kept (the last
10,000), with its input items. A ``background: true`` create answers ``status: "queued"`` without
output or usage; each retrieve then moves it one step: ``in_progress``, then ``completed`` (the
whole response with usage). ``cancel`` of a queued or in-progress background response makes it
``cancelled`` (no output, no usage); of a finished one, a 400.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import orjson
from aiohttp import web

from . import anthropic_format, ark_format, openai_format, responses_format
from .directives import (
    DirectiveError,
    Directives,
    RequestInfo,
    make_plan,
    new_id,
    parse_directives,
    warm_tokenizer,
)
from . import images_format, reapi_tasks_format

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "mock-model",
)


@dataclass
class MockConfig:
    api_key: str | None = None  # when set, requests must carry it, else 401 in the provider's error shape
    latency_ms: int = 0  # delay before the response starts
    chunk_delay_ms: int = 0  # delay between stream chunks
    words: int = 12  # default completion length in tokens
    models: tuple[str, ...] = DEFAULT_MODELS  # ids listed by GET /v1/models


class MockState:
    """Per-app counters and the recorded-requests ring."""

    __slots__ = ("config", "requests", "n_requests", "streams_started", "streams_completed",
                 "streams_cancelled", "streams_dropped", "responses")

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.requests: deque[dict[str, Any]] = deque(maxlen=200)
        self.responses: OrderedDict[str, StoredResponse] = OrderedDict()
        self.reset()

    def reset(self) -> None:
        self.requests.clear()
        self.responses.clear()
        self.n_requests = 0
        self.streams_started = 0
        self.streams_completed = 0
        self.streams_cancelled = 0
        self.streams_dropped = 0

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.n_requests,
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_cancelled": self.streams_cancelled,
            "streams_dropped": self.streams_dropped,
        }


class StoredResponse:
    """One stored Responses answer: the finished response, its input items and, for a background
    response, how far it has got (0 queued, 1 in progress, 2 finished; -1 cancelled)."""

    __slots__ = ("final", "items", "step")

    def __init__(self, final: dict[str, Any], items: list[Any], background: bool) -> None:
        self.final = final
        self.items = items
        self.step = 0 if background else 2

    def view(self) -> dict[str, Any]:
        if self.step == 2:
            return self.final
        status = {0: "queued", 1: "in_progress", -1: "cancelled"}[self.step]
        return {**self.final, "status": status, "output": [], "usage": None, "incomplete_details": None,
                "error": None}


MAX_STORED = 10_000
STATE = web.AppKey("reapi_mock_state", MockState)

_JSON = "application/json"
_SSE_CT = "text/event-stream; charset=utf-8"


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _alive(request: web.Request) -> bool:
    tr = request.transport
    return tr is not None and not tr.is_closing()


async def _wait(request: web.Request, seconds: float) -> bool:
    """Sleep ``seconds``; return False as soon as the client connection is gone."""
    if seconds <= 0:
        return _alive(request)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        if not _alive(request):
            return False
        left = end - loop.time()
        if left <= 0:
            return True
        await asyncio.sleep(min(0.05, left))


async def _hang(request: web.Request) -> None:
    while _alive(request):
        await asyncio.sleep(0.05)


def _headers(request: web.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON, headers=headers)


class _Format:
    """The per-format bits the shared handler needs."""

    __slots__ = ("mod", "id_header", "anthropic", "responses")

    def __init__(self, mod: ModuleType, id_header: str, anthropic: bool, responses: bool = False) -> None:
        self.mod = mod
        self.id_header = id_header
        self.anthropic = anthropic
        self.responses = responses

    def error(self, status: int, message: str | None = None, type: str | None = None,
              param: str | None = None, code: str | None = None) -> web.Response:
        if self.anthropic:
            body = anthropic_format.error_body(status, message, type, code)
        else:
            body = openai_format.error_body(status, message, type, param, code)
        return _json(body, status, {self.id_header: new_id("req_")})

    def stream_error(self, d: Directives) -> dict[str, Any]:
        if self.anthropic:
            return anthropic_format.error_object(500, type=d.error_type or "overloaded_error", code=d.error_code)
        return {
            "message": "The server had an error while processing your request (mock).",
            "type": d.error_type or "server_error",
            "param": d.error_param,
            "code": d.error_code,
        }

    def authorized(self, request: web.Request, key: str) -> bool:
        if request.headers.get("Authorization") == "Bearer " + key:
            return True
        # Anthropic: x-api-key (recent anthropic SDKs send the key as a Bearer token instead)
        return self.anthropic and request.headers.get("x-api-key") == key


_OPENAI = _Format(openai_format, "x-request-id", anthropic=False)
_ANTHROPIC = _Format(anthropic_format, "request-id", anthropic=True)
_RESPONSES = _Format(responses_format, "x-request-id", anthropic=False, responses=True)


# --------------------------------------------------------------------------------------
# Completion handlers
# --------------------------------------------------------------------------------------


async def _serve(request: web.Request, fmt: _Format) -> web.StreamResponse:
    state = request.app[STATE]
    cfg = state.config
    state.n_requests += 1
    raw = await request.read()
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    state.requests.append({"path": request.path, "headers": _headers(request), "body": body})

    if cfg.api_key is not None and not fmt.authorized(request, cfg.api_key):
        return fmt.error(401)
    if fmt.anthropic and "anthropic-version" not in request.headers:
        return fmt.error(400, "anthropic-version: header is required")
    if not isinstance(body, dict):
        return fmt.error(400, "We could not parse the JSON body of your request.")
    try:
        info: RequestInfo = fmt.mod.read_request(body)
        d = parse_directives(info.directive_text)
    except ValueError as e:  # includes DirectiveError
        code = "mock_directive" if isinstance(e, DirectiveError) else None
        return fmt.error(400, str(e), code=code)

    if d.hang:
        await _hang(request)
        return web.Response(status=499)  # the client is gone; nothing is sent
    delay_ms = d.delay_ms if d.delay_ms is not None else cfg.latency_ms
    if delay_ms and not await _wait(request, delay_ms / 1000):
        return web.Response(status=499)
    if d.status is not None:
        return fmt.error(d.status, None, d.error_type, d.error_param, d.error_code)
    previous = body.get("previous_response_id") if fmt.responses else None
    if previous is not None and previous not in state.responses:
        return fmt.error(404, f"Previous response with id '{previous}' not found.", "invalid_request_error",
                         "previous_response_id", "previous_response_not_found")

    mod = fmt.mod
    plan = make_plan(
        model=info.model,
        directives=d,
        default_words=cfg.words,
        cap=info.cap,
        tool=info.tool,
        after_tool_result=info.after_tool_result,
        thinking=info.thinking,
        prompt_tokens=lambda: mod.count_prompt(body),
    )
    if not info.stream:
        out = mod.build_response(plan, body)
        if fmt.responses:
            out = dumps(_remember(state, body, orjson.loads(out)))
        return _json(out, 200, {fmt.id_header: new_id("req_")})

    script = mod.build_stream(plan, body, fmt.stream_error(d) if d.error_event_after is not None else None)
    content = script.content
    ending = script.tail
    drop = False
    if d.drop_after is not None:
        content, ending, drop = content[: d.drop_after], b"", True
    elif d.error_event_after is not None:
        content, ending = content[: d.error_event_after], script.error_event
    chunk_ms = d.chunk_delay_ms if d.chunk_delay_ms is not None else cfg.chunk_delay_ms

    resp = web.StreamResponse(
        status=200,
        headers={"Content-Type": _SSE_CT, "Cache-Control": "no-cache", fmt.id_header: new_id("req_")},
    )
    try:
        await resp.prepare(request)
    except ConnectionError:  # gone before the headers went out: not a started stream
        return resp
    state.streams_started += 1
    try:
        if chunk_ms <= 0:
            await resp.write(b"".join((script.head, *content, ending)))
        else:
            delay = chunk_ms / 1000
            await resp.write(script.head)
            for unit in content:
                if not await _wait(request, delay):
                    raise ConnectionResetError("client went away")
                await resp.write(unit)
            if ending:
                if not await _wait(request, delay):
                    raise ConnectionResetError("client went away")
                await resp.write(ending)
    except asyncio.CancelledError:
        state.streams_cancelled += 1
        raise
    except ConnectionError:
        state.streams_cancelled += 1
        return resp
    if drop:
        state.streams_dropped += 1
        tr = request.transport
        if tr is not None:
            tr.close()  # flushes what was written, then FIN: no terminating chunk, no [DONE]
        return resp
    state.streams_completed += 1
    if fmt.responses and script.final is not None and d.error_event_after is None:
        _remember(state, {**body, "background": False}, script.final)
    return resp


dumps = orjson.dumps


def _remember(state: MockState, body: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """Store a Responses answer (unless store: false); returns what the create call answers."""
    background = body.get("background") is True
    if body.get("store") is False:
        return final
    items = []
    for item in responses_format.input_items(body):
        if isinstance(item, dict):
            item = dict(item)
            if item.get("type", "message") == "message":
                item["type"] = "message"
                if isinstance(item.get("content"), str):
                    kind = "output_text" if item.get("role") == "assistant" else "input_text"
                    item["content"] = [{"type": kind, "text": item["content"]}]
                item.setdefault("status", "completed")
            item.setdefault("id", new_id("msg_"))
        items.append(item)
    stored = StoredResponse(final, items, background)
    state.responses[final["id"]] = stored
    while len(state.responses) > MAX_STORED:
        state.responses.popitem(last=False)
    return stored.view()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, _OPENAI)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _serve(request, _ANTHROPIC)


async def responses(request: web.Request) -> web.StreamResponse:
    return await _serve(request, _RESPONSES)


def _stored(request: web.Request) -> tuple[MockState, StoredResponse | None, web.Response | None]:
    """The stored response the path names, after recording the request and checking the key."""
    state = request.app[STATE]
    state.n_requests += 1
    state.requests.append({"path": request.path, "headers": _headers(request), "body": None,
                           "method": request.method})
    key = state.config.api_key
    if key is not None and not _OPENAI.authorized(request, key):
        return state, None, _OPENAI.error(401)
    rid = request.match_info["response_id"]
    stored = state.responses.get(rid)
    if stored is None:
        return state, None, _OPENAI.error(404, f"No response found with id '{rid}'.", "invalid_request_error",
                                          None, None)
    return state, stored, None


async def get_response(request: web.Request) -> web.Response:
    state, stored, err = _stored(request)
    if err is not None:
        return err
    if stored.step in (0, 1):
        stored.step += 1
    return _json(dumps(stored.view()))


async def delete_response(request: web.Request) -> web.Response:
    state, stored, err = _stored(request)
    if err is not None:
        return err
    rid = request.match_info["response_id"]
    del state.responses[rid]
    return _json(dumps({"id": rid, "object": "response", "deleted": True}))


async def cancel_response(request: web.Request) -> web.Response:
    state, stored, err = _stored(request)
    if err is not None:
        return err
    if stored.step not in (0, 1, -1):
        return _OPENAI.error(400, "Only a background response that has not finished can be cancelled.",
                             "invalid_request_error", None, None)
    stored.step = -1
    return _json(dumps(stored.view()))


async def list_input_items(request: web.Request) -> web.Response:
    state, stored, err = _stored(request)
    if err is not None:
        return err
    q = request.query
    order = q.get("order", "desc")
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        return _OPENAI.error(400, "limit must be an integer", "invalid_request_error", "limit", None)
    if order not in ("asc", "desc") or not 1 <= limit <= 100:
        return _OPENAI.error(400, "order is asc|desc and limit 1-100", "invalid_request_error", "order", None)
    items = list(stored.items) if order == "asc" else list(reversed(stored.items))
    after = q.get("after")
    if after:
        ids = [i.get("id") if isinstance(i, dict) else None for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    return _json(dumps({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                        "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}))


async def count_tokens(request: web.Request) -> web.Response:
    """POST /v1/messages/count_tokens: the prompt counted as /v1/messages counts it (``[mock
    prompt_tokens=N]`` wins; ``[mock status=N]`` and ``[mock delay_ms=N]`` apply)."""
    state = request.app[STATE]
    state.n_requests += 1
    raw = await request.read()
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    state.requests.append({"path": request.path, "headers": _headers(request), "body": body})
    fmt = _ANTHROPIC
    if state.config.api_key is not None and not fmt.authorized(request, state.config.api_key):
        return fmt.error(401)
    if "anthropic-version" not in request.headers:
        return fmt.error(400, "anthropic-version: header is required")
    if not isinstance(body, dict):
        return fmt.error(400, "We could not parse the JSON body of your request.")
    try:
        d = parse_directives(anthropic_format.read_count_request(body))
    except ValueError as e:
        return fmt.error(400, str(e), code="mock_directive" if isinstance(e, DirectiveError) else None)
    if d.delay_ms and not await _wait(request, d.delay_ms / 1000):
        return web.Response(status=499)
    if d.status is not None:
        return fmt.error(d.status, None, d.error_type, d.error_param, d.error_code)
    n = d.prompt_tokens if d.prompt_tokens is not None else anthropic_format.count_prompt(body)
    return _json(anthropic_format.count_answer(n), 200, {fmt.id_header: new_id("req_")})


async def models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.n_requests += 1
    state.requests.append({"path": request.path, "headers": _headers(request), "body": None})
    key = state.config.api_key
    if key is not None and not (_OPENAI.authorized(request, key) or _ANTHROPIC.authorized(request, key)):
        return _OPENAI.error(401)
    created = 1_700_000_000
    data = [{"id": m, "object": "model", "created": created, "owned_by": "reapi-mock"} for m in state.config.models]
    return _json(orjson.dumps({"object": "list", "data": data}))


# --------------------------------------------------------------------------------------
# Introspection
# --------------------------------------------------------------------------------------


async def get_requests(request: web.Request) -> web.Response:
    return _json(orjson.dumps(list(request.app[STATE].requests)))


async def clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].requests.clear()
    return _json(b'{"ok":true}')


async def get_stats(request: web.Request) -> web.Response:
    return _json(orjson.dumps(request.app[STATE].stats()))


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return _json(b'{"ok":true}')


# --------------------------------------------------------------------------------------
# App and runners
# --------------------------------------------------------------------------------------


def create_app(config: MockConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = MockState(config)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/responses/{response_id}", get_response)
    app.router.add_delete("/v1/responses/{response_id}", delete_response)
    app.router.add_post("/v1/responses/{response_id}/cancel", cancel_response)
    app.router.add_get("/v1/responses/{response_id}/input_items", list_input_items)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_get("/v1/models", models)
    images_format.add_routes(app, config.api_key)  # OpenAI Images (openai-images task channels)
    reapi_tasks_format.add_routes(app, config.api_key)  # reapi's task API (reapi-tasks task channels)
    app.router.add_get("/_mock/requests", get_requests)
    app.router.add_delete("/_mock/requests", clear_requests)
    app.router.add_get("/_mock/stats", get_stats)
    app.router.add_post("/_mock/reset", reset)
    ark_format.add_routes(app, config.api_key)  # the Ark task API (Seedance video tasks)
    return app


def _runner_kwargs() -> dict[str, Any]:
    return {"access_log": None, "handler_cancellation": True, "shutdown_timeout": 1.0}


async def start_mock(host: str, port: int, config: MockConfig) -> web.AppRunner:
    """Start the mock in the running loop; ``port=0`` picks a free port (see :func:`bound_port`).
    Stop it with ``await runner.cleanup()``."""
    # Load the tokenizer once per process (~1 s) before serving, off the event loop.
    await asyncio.get_running_loop().run_in_executor(None, warm_tokenizer)
    runner = web.AppRunner(create_app(config), **_runner_kwargs())
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on."""
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    raise RuntimeError("the mock upstream is not listening on a TCP port")


def run(host: str, port: int, config: MockConfig) -> None:
    """Serve until interrupted (blocking); for the CLI ``reapi mock-upstream``."""
    warm_tokenizer()
    web.run_app(create_app(config), host=host, port=port, **_runner_kwargs())
