"""The call path under hostile conditions (issue #10): a bounded call time, one output cap, clients that
leave before the answer, redirects, deep JSON, failed money writes and x-should-retry.

Everything runs through a real gateway (tests.harness.Gateway) against the scriptable hostile upstream
(tests.hostile); clients are raw sockets, aiohttp or the official SDKs.
"""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import aiohttp
import anthropic
import asyncpg
import openai
import orjson
import pytest
from aiohttp import web

from tests.harness import Gateway, gateway_settings
from tests.hostile import HOSTILE_KEY, chat_completion, json_answer, start_hostile

GPT = "gpt-5.5"
CLAUDE = "claude-sonnet-4-6"
CLAUDE_PRICE = {"input_usd_per_mtok": "3.00", "output_usd_per_mtok": "15.00", "context_window": 200_000,
                "max_output_tokens": 64_000}
HI = [{"role": "user", "content": "hi"}]
ROUTES = ["chat", "messages"]


# --------------------------------------------------------------------------- helpers

async def setup(gw: Gateway, up, route: str, **kw) -> dict:
    """A funded account whose key reaches the hostile upstream: an openai channel for the chat route,
    an anthropic one for /v1/messages."""
    if route == "messages":
        return await gw.setup(up, model=CLAUDE, price=CLAUDE_PRICE,
                              channel={"type": "anthropic", "base_url": up.url, "api_key": HOSTILE_KEY}, **kw)
    return await gw.setup(up, channel={"base_url": up.url + "/v1", "api_key": HOSTILE_KEY}, **kw)


def request_of(route: str, key: str, *, stream: bool = False, **extra) -> tuple[str, dict, dict]:
    """(path, body, headers) of one small call on `route`."""
    if route == "messages":
        body = {"model": CLAUDE, "max_tokens": 50, "messages": HI, **extra}
        headers = {"x-api-key": key}
    else:
        body = {"model": GPT, "messages": HI, **extra}
        headers = {"Authorization": f"Bearer {key}"}
    if stream:
        body["stream"] = True
    return ("/v1/messages" if route == "messages" else "/v1/chat/completions"), body, headers


async def post(gw: Gateway, route: str, key: str, *, stream: bool = False, **extra):
    path, body, headers = request_of(route, key, stream=stream, **extra)
    return await gw.raw("POST", path, data=orjson.dumps(body), headers={"content-type": "application/json",
                                                                         **headers})


async def settled(gw: Gateway, account_id: int) -> dict:
    """The account's single usage record once it is no longer pending (5 s at most)."""
    for _ in range(100):
        [rec] = await gw.usage(account_id)
        if rec["status"] != "pending":
            return rec
        await asyncio.sleep(0.05)
    return rec


def error_code(route: str, raw: bytes) -> str | None:
    obj = orjson.loads(raw)
    return obj["error"].get("code") if route == "chat" else obj["error"]["type"]


def answer(route: str) -> web.Response:
    if route == "messages":
        return json_answer({"id": "msg_1", "type": "message", "role": "assistant", "model": "x",
                            "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
                            "usage": {"input_tokens": 5, "output_tokens": 1}})
    return json_answer(chat_completion("hello", usage={"prompt_tokens": 5, "completion_tokens": 1}))


def first_events(route: str) -> bytes:
    """The start of a stream with some produced text, in the route's upstream format."""
    if route == "messages":
        start = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                      "model": "x", "content": [],
                                                      "usage": {"input_tokens": 5, "output_tokens": 0}}}
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        delta = {"type": "content_block_delta", "index": 0,
                 "delta": {"type": "text_delta", "text": "hello there, some words"}}
        return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
                        for e in (start, block, delta))
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "x",
             "choices": [{"index": 0, "delta": {"content": "hello there, some words"}, "finish_reason": None}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def keep_alive(route: str) -> bytes:
    return b'event: ping\ndata: {"type": "ping"}\n\n' if route == "messages" else b": keep-alive\n\n"


class Watched:
    """A hostile handler that notes when the gateway closes the upstream connection: it waits (polling the
    transport), optionally streaming `frames` then keep-alive bytes, and answers `final` if still connected."""

    def __init__(self, route: str, wait: float, *, stream_first: bytes | None = None) -> None:
        self.route = route
        self.wait = wait
        self.stream_first = stream_first
        self.closed_at: float | None = None
        self.started_at: float | None = None

    def _closed(self, request: web.Request) -> bool:
        tr = request.transport
        if tr is None or tr.is_closing():
            self.closed_at = time.monotonic()
            return True
        return False

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.started_at = time.monotonic()
        resp = None
        if self.stream_first is not None:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(self.stream_first)
        ticks = 0
        while time.monotonic() - self.started_at < self.wait:
            await asyncio.sleep(0.02)
            if self._closed(request):
                return resp or web.Response(status=499)
            ticks += 1
            if resp is not None and ticks % 10 == 0:
                try:
                    await resp.write(keep_alive(self.route))
                except Exception:
                    self.closed_at = time.monotonic()
                    return resp
        if resp is not None:
            await resp.write_eof()
            return resp
        return answer(self.route)


def reply(make) -> "object":
    """An async hostile handler from a plain function of the request."""
    async def handler(request: web.Request) -> web.StreamResponse:
        return make(request)
    return handler


@pytest.fixture
async def hostile():
    up = await start_hostile(reply(lambda request: answer("chat")))
    yield up
    await up.close()


async def short_gateway(url: str, seconds: int = 2) -> Gateway:
    return await Gateway(gateway_settings(url, max_request_seconds=seconds)).start()


# --------------------------------------------------------------------------- 4: every call is bounded

@pytest.mark.parametrize("route", ROUTES)
async def test_stream_is_cut_at_max_request_seconds_and_charged_for_what_it_delivered(sqlite_url, hostile, route):
    gw = await short_gateway(sqlite_url)
    try:
        s = await setup(gw, hostile, route)
        before = await gw.balance(s["account_id"])
        hostile.handler = watched = Watched(route, 30, stream_first=first_events(route))
        t0 = time.monotonic()
        status, _, raw = await post(gw, route, s["key"], stream=True)
        took = time.monotonic() - t0
        assert status == 200 and 1.8 < took < 4, took  # keep-alive bytes no longer keep it open
        last = raw.strip().split(b"\n\n")[-1]
        assert (b"request_too_long" if route == "chat" else b"timeout_error") in last and b"[DONE]" not in raw and b"message_stop" not in raw
        assert b"hello there" in raw  # the output before the cut was delivered
        rec = await settled(gw, s["account_id"])
        assert rec["status"] == "too_long" and rec["completion_tokens"] > 0
        assert Decimal(rec["cost_usd"]) > 0  # charged for what was delivered
        assert Decimal(await gw.balance(s["account_id"])) == Decimal(before) - Decimal(rec["cost_usd"])
        for _ in range(50):
            if watched.closed_at:
                break
            await asyncio.sleep(0.02)
        assert watched.closed_at is not None and watched.closed_at - t0 < 4  # the upstream was closed
        assert await gw.verify() == []
    finally:
        await gw.stop()


@pytest.mark.parametrize("route", ["chat"])  # Anthropic pings are relayed events: that stream has started
async def test_stream_of_keep_alives_only_is_cut_and_not_charged(sqlite_url, hostile, route):
    gw = await short_gateway(sqlite_url)
    try:
        s = await setup(gw, hostile, route)
        before = await gw.balance(s["account_id"])
        hostile.handler = Watched(route, 30, stream_first=keep_alive(route))
        t0 = time.monotonic()
        status, _, raw = await post(gw, route, s["key"], stream=True)
        assert status == 200 and time.monotonic() - t0 < 4
        assert b"request_too_long" in raw
        rec = await settled(gw, s["account_id"])
        assert rec["status"] == "failed" and rec["cost_usd"] == "0.00"
        assert await gw.balance(s["account_id"]) == before
        assert await gw.verify() == []
    finally:
        await gw.stop()


@pytest.mark.parametrize("route", ROUTES)
async def test_non_stream_past_max_request_seconds_is_504_and_not_charged(sqlite_url, hostile, route):
    gw = await short_gateway(sqlite_url)
    try:
        s = await setup(gw, hostile, route)
        before = await gw.balance(s["account_id"])
        hostile.handler = watched = Watched(route, 30)
        t0 = time.monotonic()
        status, headers, raw = await post(gw, route, s["key"])
        assert status == 504 and 1.8 < time.monotonic() - t0 < 4
        if route == "chat":
            assert error_code(route, raw) == "request_too_long"
        else:
            assert error_code(route, raw) == "timeout_error"
        rec = await settled(gw, s["account_id"])
        assert rec["status"] == "failed" and rec["cost_usd"] == "0.00"
        assert await gw.balance(s["account_id"]) == before
        await asyncio.sleep(0.1)
        assert watched.closed_at is not None  # the upstream request was cancelled
        assert await gw.verify() == []
    finally:
        await gw.stop()


# --------------------------------------------------------------------------- 5: one output cap

@pytest.mark.parametrize("caps,sent", [
    ({"max_completion_tokens": 16, "max_tokens": 100_000}, {"max_completion_tokens": 16}),
    ({"max_completion_tokens": 100_000, "max_tokens": 16}, {"max_completion_tokens": 16}),
    ({"max_tokens": 16}, {"max_tokens": 16}),
    ({"max_tokens": 16, "max_completion_tokens": None}, {"max_tokens": 16}),
    ({"max_completion_tokens": 16}, {"max_completion_tokens": 16}),
])
async def test_exactly_the_held_cap_is_forwarded(gateway, hostile, caps, sent):
    s = await setup(gateway, hostile, "chat")
    status, _, raw = await post(gateway, "chat", s["key"], **caps)
    assert status == 200, raw
    [req] = hostile.requests
    body = orjson.loads(req["body"])
    assert {k: body[k] for k in ("max_tokens", "max_completion_tokens") if k in body} == sent
    # the hold followed the same (smaller) cap: 5 $/M input, 30 $/M output, 16 tokens of output at most
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok"


# --------------------------------------------------------------------------- 6: the client leaves early

async def leave_after(gw: Gateway, path: str, body: dict, headers: dict, after: float) -> float:
    """Send one request on a raw socket, close it `after` seconds later; returns when it was closed."""
    port = int(gw.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = orjson.dumps(body)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
                 f"content-length: {len(data)}\r\n{head}\r\n".encode() + data)
    await writer.drain()
    await asyncio.sleep(after)
    writer.close()
    return time.monotonic()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("route", ROUTES)
async def test_client_gone_before_the_answer_cancels_upstream_and_charges_nothing(gateway, hostile, route, stream):
    await check_client_gone(gateway, hostile, route, stream)


@pytest.mark.parametrize("stream", [False, True])
async def test_client_gone_is_seen_under_another_asgi_server_too(sqlite_url, hostile, stream):
    """Under uvicorn's own protocol (no connection-lost hook) the call waits for http.disconnect."""
    gateway = await Gateway(gateway_settings(sqlite_url), http="httptools").start()
    try:
        await check_client_gone(gateway, hostile, "chat", stream)
    finally:
        await gateway.stop()


async def check_client_gone(gateway, hostile, route, stream):
    s = await setup(gateway, hostile, route)
    before = await gateway.balance(s["account_id"])
    hostile.handler = watched = Watched(route, 2.0)
    path, body, headers = request_of(route, s["key"], stream=stream)
    left = await leave_after(gateway, path, body, headers, 0.3)
    assert hostile.requests  # the hold was placed and the call went upstream
    for _ in range(60):
        if watched.closed_at:
            break
        await asyncio.sleep(0.02)
    assert watched.closed_at is not None and watched.closed_at - left < 1.0  # cancelled, not run out
    rec = await settled(gateway, s["account_id"])
    assert rec["status"] == "client_closed" and rec["cost_usd"] == "0.00"
    assert await gateway.balance(s["account_id"]) == before
    assert await gateway.verify() == []


# --------------------------------------------------------------------------- 9: redirects are not followed

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("route", ROUTES)
async def test_upstream_redirect_is_not_followed(gateway, hostile, route, stream):
    inside = await start_hostile(reply(lambda request: answer(route)))
    try:
        s = await setup(gateway, hostile, route)
        before = await gateway.balance(s["account_id"])
        hostile.handler = reply(lambda request: web.Response(status=302,
                                                             headers={"Location": inside.url + "/internal"}))
        status, headers, raw = await post(gateway, route, s["key"], stream=stream)
        assert status == 502, raw
        if route == "chat":
            assert error_code(route, raw) == "upstream_bad_response"
        assert inside.requests == []  # the second server was never reached, the key never went there
        assert inside.url not in raw.decode() and HOSTILE_KEY not in raw.decode()
        rec = await settled(gateway, s["account_id"])
        assert rec["status"] == "failed" and rec["cost_usd"] == "0.00"
        assert await gateway.balance(s["account_id"]) == before
    finally:
        await inside.close()


# --------------------------------------------------------------------------- 12: deep JSON

def nested(depth: int) -> bytes:
    """A JSON schema `depth` properties deep (2 levels each), as bytes: orjson cannot write past 254."""
    return b'{"type":"object","properties":{"x":' * depth + b'{"type":"string"}' + b"}}" * depth


DEEP = "__deep__"


@pytest.mark.parametrize("route,field,extra", [
    ("chat", "tools", {"tools": [{"type": "function", "function": {"name": "f", "parameters": DEEP}}]}),
    ("chat", "response_format", {"response_format": {"type": "json_schema", "json_schema": {"name": "s",
                                                                                            "schema": DEEP}}}),
    ("messages", "tools", {"tools": [{"name": "f", "input_schema": DEEP}]}),
    ("messages", "metadata", {"metadata": DEEP}),
])
@pytest.mark.parametrize("depth", [150, 500])  # 2 levels each: 300 and 1000 deep
async def test_json_nested_too_deep_is_400(gateway, hostile, route, field, extra, depth):
    s = await setup(gateway, hostile, route)
    path, body, headers = request_of(route, s["key"], **extra)
    data = orjson.dumps(body).replace(b'"' + DEEP.encode() + b'"', nested(depth))
    status, _, raw = await gateway.raw("POST", path, data=data, headers={"content-type": "application/json",
                                                                         **headers})
    assert status == 400, raw
    obj = orjson.loads(raw)
    if route == "chat":
        assert (obj["error"]["code"], obj["error"]["param"]) == ("invalid_value", field)
    else:
        assert obj["error"]["type"] == "invalid_request_error" and field in obj["error"]["message"]
    assert hostile.requests == [] and await gateway.usage(s["account_id"]) == []


async def test_json_nested_within_the_limit_passes(gateway, hostile):
    s = await setup(gateway, hostile, "chat")
    tools = [{"type": "function", "function": {"name": "f", "parameters": orjson.loads(nested(29))}}]
    status, _, raw = await post(gateway, "chat", s["key"], tools=tools)  # 4 + 58 + 1 = 63 levels
    assert status == 200, raw


def test_depth_scan_is_exact_on_strings_and_escapes():
    from reapi.api.validation import MAX_JSON_DEPTH, json_too_deep

    def deep(n: int) -> bytes:
        return b"[" * n + b"]" * n

    assert not json_too_deep(deep(MAX_JSON_DEPTH)) and json_too_deep(deep(MAX_JSON_DEPTH + 1))
    # brackets inside strings (with escaped quotes) do not count; mixed object/array nesting does
    tricky = orjson.dumps({"a": "[[[[" * 100 + '\\"{{{{' * 100, "b": [{"c": [{"d": []}]}]})
    assert not json_too_deep(tricky)
    mixed = b'{"a":' * 40 + b"[" * 30 + b"1" + b"]" * 30 + b"}" * 40
    assert json_too_deep(mixed) and orjson.loads(mixed)
    assert not json_too_deep(orjson.dumps([[1], [2], {"x": [3]}] * 10_000))


# --------------------------------------------------------------------------- 2: a failed close at call level

async def pg_constraint(url: str, check: str | None) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ALTER TABLE usage DROP CONSTRAINT IF EXISTS test_block")
        if check:
            await conn.execute(f"ALTER TABLE usage ADD CONSTRAINT test_block CHECK ({check}) NOT VALID")
    finally:
        await conn.close()


@pytest.fixture
async def pg_gateway():
    from tests.harness import create_pg_database, drop_pg_database

    url = await create_pg_database()
    gw = await Gateway(gateway_settings(url)).start()
    yield gw, url
    await gw.stop()
    await drop_pg_database(url)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("route", ROUTES)
async def test_failed_settlement_releases_the_hold(pg_gateway, hostile, route, stream):
    gw, url = pg_gateway
    s = await setup(gw, hostile, route)
    before = await gw.balance(s["account_id"])

    async def answer_then_block(request):
        await pg_constraint(url, "status <> 'ok'")  # the settlement write fails, a release still works
        if stream:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(first_events(route))
            if route == "messages":
                for e in ({"type": "content_block_stop", "index": 0},
                          {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}},
                          {"type": "message_stop"}):
                    await resp.write(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n")
            else:
                await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        return answer(route)

    hostile.handler = answer_then_block
    status, headers, raw = await post(gw, route, s["key"], stream=stream)
    # Either the writer released the hold in place of the settlement (the answer is free: cost 0) or
    # the call path did after the write failed (a 500 / last error event that says "not charged").
    if stream:
        assert status == 200
        assert b"not charged" in raw or b"[DONE]" in raw or b"message_stop" in raw, raw
    else:
        assert (status, b"not charged" in raw) == (500, True) or (status, headers["x-reapi-cost-usd"]) == (
            200, "0.00"), raw
    rec = await settled(gw, s["account_id"])
    assert rec["status"] == "failed" and rec["cost_usd"] == "0.00"
    await pg_constraint(url, None)
    assert await gw.balance(s["account_id"]) == before
    assert await gw.verify() == []


async def test_unrecordable_call_never_claims_not_charged(pg_gateway, hostile):
    gw, url = pg_gateway
    s = await setup(gw, hostile, "chat")

    async def answer_then_block(request):
        await pg_constraint(url, "status = 'pending'")  # neither a settlement nor a release can be written
        return answer("chat")

    hostile.handler = answer_then_block
    status, _, raw = await post(gw, "chat", s["key"])
    assert status == 500 and b"not charged" not in raw, raw
    await pg_constraint(url, None)
    assert await gw.verify() == []  # a pending hold, still consistent: the sweeper releases it


# --------------------------------------------------------------------------- x-should-retry

@pytest.mark.parametrize("route", ROUTES)
async def test_x_should_retry_false_on_errors_a_retry_cannot_fix(gateway, hostile, route):
    s = await setup(gateway, hostile, route, key={"models": [CLAUDE if route == "messages" else GPT]})
    path, body, headers = request_of(route, s["key"])
    json_headers = {"content-type": "application/json"}
    cases = {
        400: dict(data=b"{not json", headers={**headers, **json_headers}),
        401: dict(data=orjson.dumps(body), headers={"x-api-key" if route == "messages" else "Authorization":
                                                    "sk-wrong" if route == "messages" else "Bearer sk-wrong"}),
        403: dict(data=orjson.dumps({**body, "model": "some-other"}), headers={**headers, **json_headers}),
        413: dict(data=b"{" + b" " * (gateway.settings.max_body_bytes + 10) + b"}", headers=headers),
    }
    for want, kw in cases.items():
        status, h, raw = await gateway.raw("POST", path, **kw)
        assert status == want, raw
        assert h.get("x-should-retry") == "false", (want, h)
    # a model nobody serves: 404; an account without money: 402
    status, h, raw = await gateway.raw("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {s['key']}"},
                                       json={"model": "gpt-unknown", "messages": HI})
    assert status in (403, 404) and h.get("x-should-retry") == "false"
    status, h, _ = await gateway.raw("GET", "/v1/nothing-here")
    assert status == 404 and h.get("x-should-retry") == "false"
    # upstream errors: 4xx that pass through (409, 422) are final; 429 and 5xx may be retried
    kinds = {409: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error", 500: "api_error",
             503: "overloaded_error"}
    for upstream_status, kind in kinds.items():
        hostile.handler = reply(lambda request, st=upstream_status, k=kind: json_answer(
            {"type": "error", "error": {"type": k, "message": "no"}} if route == "messages"
            else {"error": {"message": "no", "type": k, "code": "conflict"}}, status=st))
        status, h, raw = await post(gateway, route, s["key"])
        final = 400 <= status < 500 and status != 429
        if upstream_status >= 500:
            assert status >= 500, raw
        else:  # Anthropic's 4xx map to its own types: 409/422 become 400 invalid_request_error
            assert status in (upstream_status, 400 if route == "messages" else upstream_status), raw
        assert h.get("x-should-retry") == ("false" if final else None), (upstream_status, status, h)


async def test_x_should_retry_on_402(gateway, hostile):
    s = await setup(gateway, hostile, "chat", balance="0")
    status, h, _ = await post(gateway, "chat", s["key"])
    assert status == 402 and h["x-should-retry"] == "false"


async def test_sdk_does_not_retry_a_passed_through_409(gateway, hostile):
    s = await setup(gateway, hostile, "chat")
    hostile.handler = reply(lambda request: json_answer({"error": {"message": "busy", "type": "conflict"}},
                                                       status=409))
    client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=s["key"], max_retries=2)
    try:
        with pytest.raises(openai.ConflictError):
            await client.chat.completions.create(model=GPT, messages=HI)
    finally:
        await client.close()
    assert len(hostile.requests) == 1  # the SDK retries 409 by default, unless told not to
