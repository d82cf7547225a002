"""Upstream secrets never leave the gateway (issue #10, defects 8 and 9-mapping), end to end.

A hostile upstream echoes the channel's key, base URL and host in every disguise (tests.hostile.secret_forms:
upper-case, URL-encoded, JSON-escaped, masked, host only) in every field of its errors: message, type,
param, code; in HTTP errors, in-stream errors (also in a chunk starting with {"id"), errors inside a 200,
and to the channel probe. For each path: the client-visible body, the admin usage record and the captured
logs contain none of those forms; the call is not charged; codes are plain identifiers.
"""
from __future__ import annotations

import json
import logging
import re

import orjson
import pytest
from aiohttp import web

from tests.harness import Gateway
from tests.hostile import HOSTILE_KEY, chat_completion, json_answer, sse_answer, start_hostile

GPT = "gpt-5.5"
CLAUDE = "claude-sonnet-4-6"
CLAUDE_PRICE = {"input_usd_per_mtok": "3.00", "output_usd_per_mtok": "15.00", "context_window": 200_000,
                "max_output_tokens": 64_000}
HI = [{"role": "user", "content": "hi"}]
CODE = re.compile(r"[a-z0-9_.\-]{1,64}")


def leaky(up) -> dict[str, object]:
    """An error object whose every field carries the upstream's secrets."""
    forms = up.secret_forms()
    host = up.url.split("://", 1)[1]
    return {"message": "upstream says: " + " | ".join(forms) + f" see {up.url}/v1/docs?key={HOSTILE_KEY}",
            "type": HOSTILE_KEY.lower(), "param": up.url + "/v1", "code": host.split(":")[0]}


def openai_chunk(delta: dict) -> bytes:
    return b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                   "choices": [{"index": 0, "delta": delta}]}).encode() + b"\n\n"


def anthropic_events(*events: tuple[str, dict]) -> list[bytes]:
    return [f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events]


MESSAGE_START = ("message_start", {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
    "usage": {"input_tokens": 5, "output_tokens": 1}}})
BLOCK_START = ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})
TEXT_DELTA = ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": "partial"}})


# Each path: (name, channel kind, route, stream, handler factory taking the Hostile)
def _openai_http(status):
    return lambda up: (lambda req: _answer(json_answer({"error": leaky(up)}, status=status)))


async def _answer(resp):
    return resp


def _openai_stream_error(with_id: bool):
    def make(up):
        async def handle(request):
            err = {"error": leaky(up)}
            if with_id:
                err = {"id": "c1", "object": "chat.completion.chunk", **err}
            return await sse_answer(request, [openai_chunk({"role": "assistant", "content": "partial"}),
                                              b"data: " + json.dumps(err).encode() + b"\n\n"])
        return handle
    return make


def _anthropic_http(status, err_type):
    def make(up):
        e = leaky(up)
        return lambda req: _answer(json_answer({"type": "error", "error": {**e, "type": err_type}}, status=status))
    return make


def _anthropic_stream_error(err_type):
    def make(up):
        async def handle(request):
            e = {**leaky(up), "type": err_type}
            return await sse_answer(request, anthropic_events(MESSAGE_START, BLOCK_START, TEXT_DELTA,
                                                              ("error", {"type": "error", "error": e})))
        return handle
    return make


def _redirect(up):
    async def handle(request):
        if request.path.endswith("/elsewhere"):
            return json_answer(chat_completion("followed"))
        return web.Response(status=307, headers={"Location": f"{up.url}/elsewhere?key={HOSTILE_KEY}"})
    return handle


def _openai_stream_frames(frame):
    def make(up):
        async def handle(request):
            return await sse_answer(request, [openai_chunk({"role": "assistant", "content": "partial"}), frame(up)])
        return handle
    return make


def _messages_raw_delta(up):
    async def handle(request):
        return await sse_answer(request, anthropic_events(MESSAGE_START, BLOCK_START) + [
            f"event: content_block_delta\ndata: {{not json {up.url} {HOSTILE_KEY}\n\n".encode()])
    return handle


def _message_without_blocks(up):
    return lambda req: _answer(json_answer({"id": "m", "type": "message", "role": "assistant", "model": "m",
                                            "content": f"{up.url} {HOSTILE_KEY}", "stop_reason": "end_turn"}))


PATHS = [
    ("openai-stream-not-json", "openai", "chat", True,
     _openai_stream_frames(lambda up: f"data: {{not json {up.url} {HOSTILE_KEY}\n\n".encode())),
    ("openai-stream-type-error", "openai", "chat", True,
     _openai_stream_frames(lambda up: b"data: " + json.dumps({**leaky(up), "type": "error"}).encode() + b"\n\n")),
    ("messages-stream-delta-not-json", "anthropic", "messages", True, _messages_raw_delta),
    ("messages-content-not-blocks", "anthropic", "messages", False, _message_without_blocks),
    ("openai-400", "openai", "chat", False, _openai_http(400)),
    ("openai-400-stream", "openai", "chat", True, _openai_http(400)),
    ("openai-404", "openai", "chat", False, _openai_http(404)),
    ("openai-stream-error", "openai", "chat", True, _openai_stream_error(False)),
    ("openai-stream-error-with-id", "openai", "chat", True, _openai_stream_error(True)),
    ("openai-redirect", "openai", "chat", False, lambda up: _redirect(up)),
    ("openai-redirect-stream", "openai", "chat", True, lambda up: _redirect(up)),
    ("claude-400", "anthropic", "chat", False, _anthropic_http(400, "invalid_request_error")),
    ("claude-400-stream", "anthropic", "chat", True, _anthropic_http(400, "invalid_request_error")),
    ("claude-200-error", "anthropic", "chat", False, _anthropic_http(200, "invalid_request_error")),
    ("claude-stream-error", "anthropic", "chat", True, _anthropic_stream_error("invalid_request_error")),
    ("claude-stream-api-error", "anthropic", "chat", True, _anthropic_stream_error("api_error")),
    ("claude-redirect", "anthropic", "chat", False, lambda up: _redirect(up)),
    ("messages-400", "anthropic", "messages", False, _anthropic_http(400, "invalid_request_error")),
    ("messages-400-stream", "anthropic", "messages", True, _anthropic_http(400, "invalid_request_error")),
    ("messages-200-error", "anthropic", "messages", False, _anthropic_http(200, "invalid_request_error")),
    ("messages-stream-error", "anthropic", "messages", True, _anthropic_stream_error("invalid_request_error")),
    ("messages-redirect", "anthropic", "messages", False, lambda up: _redirect(up)),
]


async def setup(gw: Gateway, up, kind: str) -> dict:
    if kind == "openai":
        return await gw.setup(up, channel={"base_url": up.url + "/v1", "api_key": HOSTILE_KEY})
    return await gw.setup(up, model=CLAUDE, price=CLAUDE_PRICE,
                          channel={"type": "anthropic", "base_url": up.url, "api_key": HOSTILE_KEY})


async def call(gw: Gateway, key: str, kind: str, route: str, stream: bool) -> tuple[int, bytes]:
    if route == "messages":
        body: dict = {"model": CLAUDE, "max_tokens": 50, "messages": HI}
        headers = {"x-api-key": key, "content-type": "application/json"}
    else:
        body = {"model": GPT if kind == "openai" else CLAUDE, "messages": HI}
        headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    if stream:
        body["stream"] = True
    path = "/v1/messages" if route == "messages" else "/v1/chat/completions"
    status, _, raw = await gw.raw("POST", path, data=orjson.dumps(body), headers=headers)
    return status, raw


def assert_clean(text: str, forms: list[str]) -> None:
    low = text.lower()
    for form in forms:
        assert form.lower() not in low, (form, text[:2000])


def error_of(raw: bytes, route: str, stream: bool) -> dict:
    """The error object the client got (the last SSE event of a stream)."""
    if stream and raw.startswith((b"data:", b"event:")):
        last = [ln for ln in raw.split(b"\n") if ln.startswith(b"data:")][-1]
        raw = last[5:].strip()
    obj = orjson.loads(raw)
    return obj["error"]


@pytest.mark.parametrize("name, kind, route, stream, make", PATHS, ids=[p[0] for p in PATHS])
async def test_no_secret_leaves_the_gateway(gateway, name, kind, route, stream, make, caplog):
    caplog.set_level(logging.DEBUG, logger="reapi")
    up = await start_hostile(lambda req: None)
    up.handler = make(up)
    forms = up.secret_forms()
    try:
        s = await setup(gateway, up, kind)
        caplog.clear()  # the call's lines, not the admin set-up's
        status, raw = await call(gateway, s["key"], kind, route, stream)
        assert status != 500 and status >= 400 or (stream and status == 200), (status, raw)
        assert b"internal_error" not in raw, raw
        assert_clean(raw.decode(), forms)
        err = error_of(raw, route, stream)
        if route != "messages":
            assert err["code"] is None or CODE.fullmatch(err["code"]), err
            assert CODE.fullmatch(err["type"]), err
        if "redirect" in name:
            assert status == 502 and err.get("code", "upstream_bad_response") == "upstream_bad_response"
            assert [r["path"] for r in up.requests] != [] and not any("elsewhere" in r["path"] for r in up.requests)
        assert len(up.requests) == 1  # one upstream POST; a redirect is not followed
        [rec] = await gateway.usage(s["account_id"])
        assert rec["status"] == "failed" and rec["cost_usd"] == "0.00"
        assert rec["error_code"] is None or CODE.fullmatch(rec["error_code"]), rec
        assert_clean(json.dumps(rec), forms)
        assert await gateway.balance(s["account_id"]) == "10.00"
        assert await gateway.verify() == []
        assert_clean(caplog.text, forms)
    finally:
        await up.close()


@pytest.mark.parametrize("code", [400, ["a", "b"], {"x": 1}, "x" * 65, "Bad Code!", True])
async def test_odd_codes_and_types_are_dropped(gateway, code, caplog):
    up = await start_hostile(lambda req: _answer(json_answer(
        {"error": {"message": "no", "type": code, "param": ["p"], "code": code}}, status=400)))
    try:
        s = await setup(gateway, up, "openai")
        status, raw = await call(gateway, s["key"], "openai", "chat", False)
        assert status == 400, raw
        err = orjson.loads(raw)["error"]
        assert err == {"message": "no", "type": "invalid_request_error", "param": None, "code": None}
        [rec] = await gateway.usage(s["account_id"])
        assert rec["error_code"] is None or CODE.fullmatch(rec["error_code"]), rec
    finally:
        await up.close()


async def test_plain_upstream_codes_still_pass_through(gateway):
    up = await start_hostile(lambda req: _answer(json_answer({"error": {
        "message": "too long", "type": "invalid_request_error", "param": "messages",
        "code": "context_length_exceeded"}}, status=400)))
    try:
        s = await setup(gateway, up, "openai")
        status, raw = await call(gateway, s["key"], "openai", "chat", False)
        assert status == 400
        assert orjson.loads(raw)["error"] == {"message": "too long", "type": "invalid_request_error",
                                              "param": "messages", "code": "context_length_exceeded"}
    finally:
        await up.close()


# --------------------------------------------------------------------------- POST /admin/channels/{id}/test

def _probe_answers(up):
    e = leaky(up)
    return {
        "400": lambda req: _answer(json_answer({"error": e}, status=400)),
        "not-json": lambda req: _answer(web.Response(status=200, body=f"<html>{up.url} {HOSTILE_KEY}</html>".encode(),
                                                     content_type="text/html")),
        "json-list": lambda req: _answer(json_answer([1, 2])),
        "json-no-choices": lambda req: _answer(json_answer({"choices": "nope", "model": HOSTILE_KEY})),
        "redirect": _redirect(up),
        "500": lambda req: _answer(web.Response(status=500, body=f"{up.url} {HOSTILE_KEY}".encode())),
    }


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("answer", ["400", "not-json", "json-list", "json-no-choices", "redirect", "500"])
async def test_channel_probe_scrubs_and_never_500s(gateway, kind, answer, caplog):
    caplog.set_level(logging.DEBUG, logger="reapi")
    up = await start_hostile(lambda req: None)
    up.handler = _probe_answers(up)[answer]
    try:
        s = await setup(gateway, up, kind)
        caplog.clear()
        status, _, raw = await gateway.raw("POST", f"/admin/channels/{s['channel_id']}/test",
                                           headers={"Authorization": "Bearer test-admin-key"})
        assert status == 200, raw
        out = orjson.loads(raw)
        assert out["ok"] is False and CODE.fullmatch(out["error"]["code"]), out
        assert_clean(raw.decode(), up.secret_forms())
        assert len(up.requests) == 1  # the redirect is not followed
        if answer == "redirect":
            assert out["error"]["code"] == "upstream_bad_response"
        assert_clean(caplog.text, up.secret_forms())
    finally:
        await up.close()


# --------------------------------------------------------------------------- usage and model, not compact JSON

async def test_spaced_usage_and_model_in_a_stream(gateway):
    """JSON with spaces (json.dumps' default): the usage chunk is found and billed on, not shown to a client
    that did not ask for it, and the upstream's model name never reaches the client."""
    async def handle(request):
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "secret-upstream-model"}
        frames = [json.dumps({**base, "choices": [{"index": 0, "delta": {"content": "hello"}}]}),
                  json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                  json.dumps({**base, "choices": [], "usage": {"prompt_tokens": 1234, "completion_tokens": 56}})]
        return await sse_answer(request, [b"data: " + f.encode() + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"])
    up = await start_hostile(handle)
    try:
        s = await setup(gateway, up, "openai")
        status, raw = await call(gateway, s["key"], "openai", "chat", True)
        assert status == 200 and raw.endswith(b"data: [DONE]\n\n"), raw
        assert b"secret-upstream-model" not in raw and raw.count(b'"model":"gpt-5.5"') == 2, raw
        assert b"1234" not in raw  # the usage chunk was the gateway's request, not the client's
        [rec] = await gateway.usage(s["account_id"])
        assert (rec["prompt_tokens"], rec["completion_tokens"]) == (1234, 56)
    finally:
        await up.close()


@pytest.mark.parametrize("kind,route,stream", [("openai", "chat", False), ("openai", "chat", True),
                                               ("anthropic", "chat", True), ("anthropic", "messages", False),
                                               ("anthropic", "messages", True)])
async def test_model_output_never_carries_the_key_or_host(gateway, kind, route, stream):
    """An upstream that makes the model 'say' the channel key (any case) and its host: both are taken out of
    every relayed byte, model output included; the rest of the text is untouched."""
    said = None

    async def handle(request):
        host = said.split(" ")[1]
        text = f"{said} and {HOSTILE_KEY.upper()} at http://{host}/v1 ok"
        if kind == "openai":
            if stream:
                return await sse_answer(request, [openai_chunk({"content": text}), b"data: [DONE]\n\n"])
            return json_answer(chat_completion(text, {"prompt_tokens": 3, "completion_tokens": 4}))
        if not stream:
            return json_answer({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                                "usage": {"input_tokens": 3, "output_tokens": 4}})
        return await sse_answer(request, anthropic_events(
            MESSAGE_START, BLOCK_START,
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": text}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                               "usage": {"output_tokens": 4}}),
            ("message_stop", {"type": "message_stop"})))
    up = await start_hostile(handle)
    try:
        said = f"{HOSTILE_KEY} {up.url.split('://', 1)[1]}"
        s = await setup(gateway, up, kind)
        status, raw = await call(gateway, s["key"], kind, route, stream)
        assert status == 200, raw
        low = raw.lower()
        assert HOSTILE_KEY.lower().encode() not in low and up.url.split("://", 1)[1].encode() not in raw, raw
        assert b"[redacted]" in raw and b" ok" in raw
    finally:
        await up.close()


async def test_claude_events_without_names_get_them(gateway):
    """An upstream stream of bare `data:` lines (no `event:`): the client gets each event named by its type,
    as the anthropic SDK needs; an `event: error` whose data is not a proper error still ends as an error."""
    async def handle(request):
        frames = [b"data: " + json.dumps(d).encode() + b"\n\n" for _, d in
                  (MESSAGE_START, BLOCK_START, TEXT_DELTA,
                   ("", {"type": "content_block_stop", "index": 0}),
                   ("", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
                   ("", {"type": "message_stop"}))]
        return await sse_answer(request, frames)
    up = await start_hostile(handle)
    try:
        s = await setup(gateway, up, "anthropic")
        status, raw = await call(gateway, s["key"], "anthropic", "messages", True)
        assert status == 200, raw
        events = [e for e in raw.split(b"\n\n") if e.strip()]
        assert [e.split(b"\n", 1)[0] for e in events] == [
            b"event: message_start", b"event: content_block_start", b"event: content_block_delta",
            b"event: content_block_stop", b"event: message_delta", b"event: message_stop"], raw

        async def bad_error(request):
            return await sse_answer(request, [b"event: message_start\ndata: " + json.dumps(MESSAGE_START[1]).encode()
                                              + b"\n\n", b'event: error\ndata: {"error": {}}\n\n'])
        up.handler = bad_error
        status, raw = await call(gateway, s["key"], "anthropic", "messages", True)
        last = [e for e in raw.split(b"\n\n") if e.strip()][-1]
        assert last.startswith(b"event: error\n"), raw
        err = orjson.loads(last.split(b"data: ", 1)[1])
        assert err["type"] == "error" and isinstance(err["error"]["message"], str) and err["error"]["type"]
        assert await gateway.verify() == []
    finally:
        await up.close()
