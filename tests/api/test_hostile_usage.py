"""Hostile usage reports (issue #10, defects 1 and 3), end to end through the gateway.

An upstream's token counts are trusted only when each is an int in [0, 2**31-1]; otherwise (negative,
float, string, bool, huge, or no prompt/completion counts at all) the call is billed exactly as if the
upstream had reported no usage: on the gateway's own count. Never a credit, never a 500.

Each case runs one reference call whose upstream reports no usage, then the hostile call with the same
prompt and answer, and checks that both were billed the same (a positive amount), that the balance went
down by exactly that, and that the books verify. Routes: /v1/chat/completions to an openai channel and
to an anthropic channel, and /v1/messages; stream and not.
"""
from __future__ import annotations

import json
import logging
from decimal import Decimal

import orjson
import pytest
from aiohttp import web

from tests.harness import Gateway
from tests.hostile import HOSTILE_KEY, chat_completion, json_answer, sse_answer, start_hostile

GPT = "gpt-5.5"
CLAUDE = "claude-sonnet-4-6"
CLAUDE_PRICE = {"input_usd_per_mtok": "3.00", "output_usd_per_mtok": "15.00", "cached_input_usd_per_mtok": "0.30",
                "cache_write_usd_per_mtok": "3.75", "context_window": 200_000, "max_output_tokens": 64_000}
HI = [{"role": "user", "content": "hi"}]
TEXT = "four words of answer"

NO_USAGE = object()  # the reference: the upstream reports no usage at all
INCOMPLETE = [{}, {"total_tokens": 14}, {"prompt_tokens": 10}, {"output_tokens": 4}]  # "no usage": no warning

OPENAI_BAD = [
    {"prompt_tokens": 10, "completion_tokens": -1_000_000, "total_tokens": -999_990},
    {"prompt_tokens": -5_000_000, "completion_tokens": 4},
    {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": -10**9}},
    {"prompt_tokens": 10.5, "completion_tokens": 4},
    {"prompt_tokens": "10", "completion_tokens": 4},
    {"prompt_tokens": True, "completion_tokens": 4},
    {"prompt_tokens": 10, "completion_tokens": 2**31},
    {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": "x"}},
    {},
    {"total_tokens": 14},
    {"prompt_tokens": 10},
]
ANTHROPIC_BAD = [
    {"input_tokens": 10, "output_tokens": -1_000_000},
    {"input_tokens": -10_000_000, "output_tokens": 4},
    {"input_tokens": 10, "output_tokens": 4, "cache_creation_input_tokens": -10**9},
    {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": -10**9},
    {"input_tokens": 10, "output_tokens": 4.0},
    {"input_tokens": 10, "output_tokens": False},
    {"input_tokens": 2**31 - 1, "output_tokens": 4, "cache_read_input_tokens": 2**31 - 1},  # sum overflows
    {},
    {"output_tokens": 4},
]


# --------------------------------------------------------------------------- hostile answers

def openai_handler(usage: object, stream: bool):
    async def handle(request: web.Request) -> web.StreamResponse:
        if not stream:
            return json_answer(chat_completion(TEXT, None if usage is NO_USAGE else usage))
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "upstream-model"}
        frames = [b"data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                                  "content": TEXT}}]}).encode()
                  + b"\n\n",
                  b"data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {},
                                                               "finish_reason": "stop"}]}).encode() + b"\n\n"]
        if usage is not NO_USAGE:
            frames.append(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
        frames.append(b"data: [DONE]\n\n")
        return await sse_answer(request, frames)
    return handle


def anthropic_handler(usage: object, stream: bool):
    """Usage goes into the message (non-stream) or message_delta (stream; message_start carries none)."""
    async def handle(request: web.Request) -> web.StreamResponse:
        msg = {"id": "msg_1", "type": "message", "role": "assistant", "model": "upstream-claude",
               "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn", "stop_sequence": None}
        if not stream:
            if usage is not NO_USAGE:
                msg["usage"] = usage
            return json_answer(msg)
        delta: dict = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
        if usage is not NO_USAGE:
            delta["usage"] = usage
        events = [("message_start", {"type": "message_start", "message": {**msg, "content": []}}),
                  ("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}}),
                  ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": TEXT}}),
                  ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                  ("message_delta", delta),
                  ("message_stop", {"type": "message_stop"})]
        return await sse_answer(request, [f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in events])
    return handle


# --------------------------------------------------------------------------- one call

async def setup(gw: Gateway, up, kind: str) -> dict:
    if kind == "openai":
        return await gw.setup(up, channel={"base_url": up.url + "/v1", "api_key": HOSTILE_KEY})
    return await gw.setup(up, model=CLAUDE, price=CLAUDE_PRICE,
                          channel={"type": "anthropic", "base_url": up.url, "api_key": HOSTILE_KEY})


async def call(gw: Gateway, key: str, route: str, stream: bool) -> tuple[int, bytes]:
    if route == "messages":
        body: dict = {"model": CLAUDE, "max_tokens": 50, "messages": HI}
        headers = {"x-api-key": key, "content-type": "application/json"}
        path = "/v1/messages"
    else:
        body = {"model": CLAUDE if route == "chat-claude" else GPT, "messages": HI}
        headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
        path = "/v1/chat/completions"
    if stream:
        body["stream"] = True
    status, _, raw = await gw.raw("POST", path, data=orjson.dumps(body), headers=headers)
    return status, raw


CASES = ([("chat", u) for u in OPENAI_BAD] + [("chat-claude", u) for u in ANTHROPIC_BAD]
         + [("messages", u) for u in ANTHROPIC_BAD])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("route, usage", CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(CASES)])
async def test_bad_usage_is_billed_on_our_count(gateway, route, usage, stream, caplog):
    caplog.set_level(logging.DEBUG, logger="reapi")
    kind = "openai" if route == "chat" else "anthropic"
    handler = (openai_handler if kind == "openai" else anthropic_handler)
    up = await start_hostile(handler(NO_USAGE, stream))
    try:
        s = await setup(gateway, up, kind)
        acc = s["account_id"]
        status, raw = await call(gateway, s["key"], route, stream)
        assert status == 200, raw
        before = Decimal(await gateway.balance(acc))
        up.handler = handler(usage, stream)
        status, raw = await call(gateway, s["key"], route, stream)
        assert status == 200, raw
        if stream:
            assert b'"error"' not in raw, raw
        after = Decimal(await gateway.balance(acc))
        hostile, reference = await gateway.usage(acc)  # newest first
        assert hostile["status"] == reference["status"] == "ok"
        cost = Decimal(hostile["cost_usd"])
        assert cost > 0 and before - after == cost  # never a credit
        for field in ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "cost_usd"):
            assert hostile[field] == reference[field], (field, hostile, reference)
        assert await gateway.verify() == []
        out = raw.decode()
        assert "-1000000" not in out and "-10000000" not in out  # the discarded numbers do not reach the client
        if usage not in INCOMPLETE:
            assert any("malformed usage" in r.getMessage() for r in caplog.records), caplog.text
        assert HOSTILE_KEY not in caplog.text and up.url not in caplog.text
    finally:
        await up.close()


async def test_cached_count_above_the_prompt_is_clamped(gateway):
    """OpenAI's cached_tokens larger than prompt_tokens is clamped to it: a valid report, billed on it.
    (Anthropic's cache parts are added to its prompt count, so they cannot exceed it.)"""
    usage = {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 5000}}
    up = await start_hostile(openai_handler(usage, False))
    try:
        s = await setup(gateway, up, "openai")
        status, raw = await call(gateway, s["key"], "chat", False)
        assert status == 200, raw
        [rec] = await gateway.usage(s["account_id"])
        assert (rec["prompt_tokens"], rec["completion_tokens"], rec["cached_tokens"]) == (1000, 10, 1000)
        # 1000 cached at 0.50 + 10 output at 30.00 per 1M tokens
        assert rec["cost_usd"] == "0.0008" and await gateway.verify() == []
    finally:
        await up.close()
