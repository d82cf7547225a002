"""Claude models behind the OpenAI format, end to end.

The official openai SDK talks to the gateway; the gateway's `anthropic` channel
talks to the demo upstream's Anthropic Messages endpoint (POST /v1/messages).
What reached the upstream is read back from the demo upstream's request log.
"""
import json
from decimal import Decimal

import aiohttp
import openai
import pytest

from reapi.billing import tokens
from reapi.mock_upstream.anthropic_format import count_prompt as anthropic_count_prompt
from tests.api.test_messages_route import CACHE_CASES, MODEL, PRICE, disconnected
from tests.harness import UPSTREAM_KEY

# MODEL and PRICE (Claude Sonnet's list prices) come from test_messages_route.py.
MAX_OUT = PRICE["max_output_tokens"]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city", "days"]}}}]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


async def setup(gateway, upstream, price=None, **kw):
    return await gateway.setup(upstream, model=MODEL, price=price or PRICE,
                               channel={"type": "anthropic", "base_url": upstream.url}, **kw)


def user(text):
    return [{"role": "user", "content": text}]


async def last_upstream(upstream) -> dict:
    reqs = [r for r in await upstream.requests() if r["path"] == "/v1/messages"]
    assert reqs, "nothing reached the upstream"
    return reqs[-1]


async def test_non_stream_text(gateway, upstream):
    s = await setup(gateway, upstream)
    raw = await gateway.client(s["key"]).chat.completions.with_raw_response.create(
        model=MODEL, messages=user("Hello [mock words=6]"))
    resp = raw.parse()
    assert resp.object == "chat.completion" and resp.model == MODEL
    msg = resp.choices[0].message
    assert msg.role == "assistant" and len(msg.content.split()) == 6 and not msg.tool_calls
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens == 6 and resp.usage.prompt_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 6
    up = await last_upstream(upstream)
    assert up["headers"]["x-api-key"] == UPSTREAM_KEY
    assert up["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in up["headers"]
    body = up["body"]
    assert body["model"] == MODEL and body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Hello [mock words=6]"}]}]
    # no max_tokens in the request: the gateway sends the model's max_output_tokens (Anthropic requires one)
    assert body["max_tokens"] == MAX_OUT
    assert "stream" not in body and "group" not in body
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok" and rec["request_id"] == raw.headers["x-request-id"]
    assert rec["cost_usd"] == raw.headers["x-reapi-cost-usd"]
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (resp.usage.prompt_tokens, 6)
    assert await gateway.verify() == []


@pytest.mark.parametrize("field,value,sent", [
    ("max_tokens", 100, 100),
    ("max_completion_tokens", 77, 77),
    ("max_completion_tokens", 1_000_000, MAX_OUT),  # above the model's limit: lowered to it
])
async def test_upstream_max_tokens_is_the_gateways_cap(gateway, upstream, field, value, sent):
    s = await setup(gateway, upstream)
    await gateway.client(s["key"]).chat.completions.create(model=MODEL, messages=user("hi"), **{field: value})
    assert (await last_upstream(upstream))["body"]["max_tokens"] == sent
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok"


async def test_stream_text(gateway, upstream):
    s = await setup(gateway, upstream)
    client = gateway.client(s["key"])
    stream = await client.chat.completions.create(model=MODEL, messages=user("Hello [mock words=5]"), stream=True)
    chunks = [c async for c in stream]
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert all(c.usage is None for c in chunks)
    assert (await last_upstream(upstream))["body"]["stream"] is True
    # with include_usage the last chunk carries the usage, as from OpenAI
    stream = await client.chat.completions.create(model=MODEL, messages=user("Hi [mock words=3]"), stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    recs = await gateway.usage(s["account_id"])
    assert sorted(r["completion_tokens"] for r in recs) == [3, 5]
    assert all(r["status"] == "ok" and r["stream"] is True for r in recs)
    assert await gateway.verify() == []


async def test_tool_round_trip(gateway, upstream):
    s = await setup(gateway, upstream)
    client = gateway.client(s["key"])
    msgs = user("What's the weather in Tokyo?")
    first = await client.chat.completions.create(model=MODEL, messages=msgs, tools=TOOLS, tool_choice="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert json.loads(call.function.arguments) == {"city": "Tokyo", "days": 1}
    up = (await last_upstream(upstream))["body"]
    assert up["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                            "input_schema": TOOLS[0]["function"]["parameters"]}]
    assert up["tool_choice"] == {"type": "auto"}

    msgs += [choice.message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "sunny, 22C"}]
    second = await client.chat.completions.create(model=MODEL, messages=msgs, tools=TOOLS)
    assert second.choices[0].message.content.startswith("Tool result received:")
    assert second.choices[0].finish_reason == "stop"
    up = (await last_upstream(upstream))["body"]
    assert up["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"city": "Tokyo", "days": 1}}]}
    assert up["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 22C"}]}
    assert await gateway.verify() == []


async def test_tool_round_trip_streamed(gateway, upstream):
    s = await setup(gateway, upstream)
    client = gateway.client(s["key"])
    msgs = user("What's the weather in Tokyo?")
    stream = await client.chat.completions.create(model=MODEL, messages=msgs, tools=TOOLS, stream=True)
    calls: dict[int, dict] = {}
    finish = []
    async for c in stream:
        if not c.choices:
            continue
        if c.choices[0].finish_reason:
            finish.append(c.choices[0].finish_reason)
        for tc in c.choices[0].delta.tool_calls or ():
            slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            slot["id"] = slot["id"] or tc.id
            slot["name"] += tc.function.name or ""
            slot["arguments"] += tc.function.arguments or ""
    assert finish == ["tool_calls"]
    assert list(calls) == [0]
    call = calls[0]
    assert call["name"] == "get_weather" and call["id"]
    assert json.loads(call["arguments"]) == {"city": "Tokyo", "days": 1}  # the deltas reassemble to valid JSON

    msgs += [{"role": "assistant", "content": None, "tool_calls": [
                 {"id": call["id"], "type": "function",
                  "function": {"name": call["name"], "arguments": call["arguments"]}}]},
             {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    stream = await client.chat.completions.create(model=MODEL, messages=msgs, tools=TOOLS, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("Tool result received:")
    assert {r["status"] for r in await gateway.usage(s["account_id"])} == {"ok"}
    assert await gateway.verify() == []


async def test_images_become_anthropic_image_blocks(gateway, upstream):
    s = await setup(gateway, upstream)
    content = [{"type": "text", "text": "What is in these images?"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}]
    resp = await gateway.client(s["key"]).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content
    [turn] = (await last_upstream(upstream))["body"]["messages"]
    assert turn == {"role": "user", "content": [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]}


async def test_reasoning_effort_becomes_thinking(gateway, upstream):
    s = await setup(gateway, upstream)
    client = gateway.client(s["key"])
    resp = await client.chat.completions.create(model=MODEL, messages=user("Think [mock words=4]"),
                                                reasoning_effort="low")
    up = (await last_upstream(upstream))["body"]
    assert up["max_tokens"] == MAX_OUT
    assert up["thinking"] == {"type": "enabled", "budget_tokens": 2048}  # low: nominal 2048 < 64000 // 2
    msg = resp.choices[0].message
    assert msg.reasoning_content == "Let me think about this."
    assert len(msg.content.split()) == 4
    assert resp.usage.completion_tokens == 6 + 4  # thinking tokens are output tokens

    # the budget is capped at half the output cap
    await client.chat.completions.create(model=MODEL, messages=user("Think"), reasoning_effort="high",
                                         max_completion_tokens=5000)
    up = (await last_upstream(upstream))["body"]
    assert (up["max_tokens"], up["thinking"]["budget_tokens"]) == (5000, 2500)

    stream = await client.chat.completions.create(model=MODEL, messages=user("Think [mock words=2]"),
                                                  reasoning_effort="medium", stream=True)
    reasoning, text = "", ""
    async for c in stream:
        if c.choices:
            reasoning += getattr(c.choices[0].delta, "reasoning_content", None) or ""
            text += c.choices[0].delta.content or ""
    assert reasoning == "Let me think about this." and len(text.split()) == 2
    assert (await last_upstream(upstream))["body"]["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert await gateway.verify() == []


async def test_system_and_developer_messages_become_system(gateway, upstream):
    s = await setup(gateway, upstream)
    await gateway.client(s["key"]).chat.completions.create(model=MODEL, messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": "hi"}])
    up = (await last_upstream(upstream))["body"]
    assert up["system"] == [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in English."}]
    assert up["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


async def test_stop_becomes_stop_sequences(gateway, upstream):
    s = await setup(gateway, upstream)
    client = gateway.client(s["key"])
    await client.chat.completions.create(model=MODEL, messages=user("hi"), stop=["END", "###"])
    assert (await last_upstream(upstream))["body"]["stop_sequences"] == ["END", "###"]
    await client.chat.completions.create(model=MODEL, messages=user("hi"), stop="END")
    assert (await last_upstream(upstream))["body"]["stop_sequences"] == ["END"]


@pytest.mark.parametrize("content,extra,finish", [
    ("[mock words=50]", {"max_tokens": 5}, "length"),
    ("weather?", {"tools": TOOLS}, "tool_calls"),
    ("[mock refusal]", {}, "content_filter"),
    ("[mock words=3]", {}, "stop"),
])
@pytest.mark.parametrize("stream", [False, True])
async def test_finish_reason_mapping(gateway, upstream, content, extra, finish, stream):
    s = await setup(gateway, upstream)
    client = gateway.client(s["key"])
    if stream:
        chunks = [c async for c in await client.chat.completions.create(
            model=MODEL, messages=user(content), stream=True, **extra)]
        got = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert got == [finish]
    else:
        resp = await client.chat.completions.create(model=MODEL, messages=user(content), **extra)
        assert resp.choices[0].finish_reason == finish
        if finish == "length":
            assert resp.usage.completion_tokens == 5 and len(resp.choices[0].message.content.split()) == 5


@pytest.mark.parametrize("directive,exc,status,code", [
    ("[mock status=400]", openai.BadRequestError, 400, None),
    ("[mock status=401]", openai.InternalServerError, 502, "upstream_auth_failed"),
    ("[mock status=429]", openai.RateLimitError, 429, "upstream_rate_limited"),
    ("[mock status=500]", openai.InternalServerError, 502, "upstream_error"),
    ("[mock status=529]", openai.InternalServerError, 503, "upstream_overloaded"),
])
async def test_upstream_errors_are_mapped_and_not_charged(gateway, upstream, directive, exc, status, code):
    s = await setup(gateway, upstream)
    before = await gateway.balance(s["account_id"])
    with pytest.raises(exc) as ei:
        await gateway.client(s["key"]).chat.completions.create(model=MODEL, messages=user(directive))
    assert ei.value.status_code == status
    if code:
        assert ei.value.code == code
    if status == 400:
        assert ei.value.type == "invalid_request_error" and "Invalid request (mock)." in ei.value.message
    text = json.dumps(ei.value.body)
    assert UPSTREAM_KEY not in text and upstream.url not in text and "127.0.0.1" not in text
    assert await gateway.balance(s["account_id"]) == before
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "failed" and rec["cost_usd"] == "0.00"
    assert len(await upstream.requests()) == 1  # one upstream POST, no retry
    assert await gateway.verify() == []


@pytest.mark.parametrize("kwargs,param", [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"seed": 7}, "seed"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
])
async def test_unsupported_param_is_refused_before_upstream(gateway, upstream, kwargs, param):
    s = await setup(gateway, upstream)
    before = await gateway.balance(s["account_id"])
    with pytest.raises(openai.BadRequestError) as ei:
        await gateway.client(s["key"]).chat.completions.create(model=MODEL, messages=user("hi"), **kwargs)
    assert ei.value.status_code == 400 and ei.value.param == param
    assert ei.value.code == "unsupported_parameter"
    assert param in ei.value.message
    assert await upstream.requests() == []  # nothing was sent upstream
    assert await gateway.balance(s["account_id"]) == before  # and nothing was charged
    assert all(r["status"] != "pending" for r in await gateway.usage(s["account_id"]))
    assert await gateway.verify() == []


@pytest.mark.parametrize("price,expected", CACHE_CASES)
@pytest.mark.parametrize("stream", [False, True])
async def test_billing_includes_cache_tokens(gateway, upstream, price, expected, stream):
    s = await setup(gateway, upstream, price=price)
    # The demo upstream reports prompt_tokens as Anthropic's input_tokens (which EXCLUDES the cache), cached_tokens
    # as cache_read_input_tokens and cache_write_tokens as cache_creation_input_tokens.
    content = "Hello [mock prompt_tokens=1234] [mock cached_tokens=5000] [mock cache_write_tokens=777] [mock words=9]"
    client = gateway.client(s["key"])
    if stream:
        chunks = [c async for c in await client.chat.completions.create(
            model=MODEL, messages=user(content), stream=True, stream_options={"include_usage": True})]
        usage = chunks[-1].usage
    else:
        raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=user(content))
        usage = raw.parse().usage
        assert raw.headers["x-reapi-cost-usd"] == expected
    # OpenAI's convention: prompt_tokens counts every input token, cached ones included
    assert usage.prompt_tokens == 1234 + 5000 + 777 and usage.completion_tokens == 9
    assert usage.prompt_tokens_details.cached_tokens == 5000
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok"
    assert (rec["prompt_tokens"], rec["cached_tokens"], rec["cache_write_tokens"], rec["completion_tokens"]) == (
        7011, 5000, 777, 9)
    assert rec["cost_usd"] == expected
    nano = int(Decimal(expected) * 10**9)
    assert await gateway.balance(s["account_id"]) == _usd(10 * 10**9 - nano)
    assert await gateway.verify() == []


def _usd(nano: int) -> str:
    whole, frac = divmod(nano, 10**9)
    digits = f"{frac:09d}".rstrip("0").ljust(2, "0")
    return f"{whole}.{digits}"


async def test_client_disconnect_charges_upstreams_input_count(gateway, upstream):
    """A Claude stream the client leaves early is charged for the prompt as Anthropic counted it in message_start,
    not for the gateway's own estimate (o200k + CLAUDE_MARGIN_PERCENT) that sized the hold."""
    s = await setup(gateway, upstream)
    text = "Tell me a long story about the sea and the ships that sail on it, one port at a time. " * 20
    body = {"model": MODEL, "stream": True, "max_tokens": 500,
            "messages": user(text + "[mock words=200] [mock chunk_delay_ms=30]")}
    ours = tokens.count_prompt(body, "claude")
    got = 0
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + "/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {s['key']}"}) as r:
            assert r.status == 200
            async for line in r.content:
                got += line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line
                if got == 5:
                    break
            r.close()
    rec = await disconnected(gateway, upstream, s["account_id"])
    assert rec["status"] == "client_closed"
    # what the demo upstream reported as input_tokens in message_start (o200k of the text, no margin)
    theirs = anthropic_count_prompt((await last_upstream(upstream))["body"])
    assert 0 < theirs < ours
    assert rec["prompt_tokens"] == theirs
    assert 5 <= rec["completion_tokens"] < 200
    assert rec["cost_usd"] == _usd(theirs * 3000 + rec["completion_tokens"] * 15000)
    assert await gateway.verify() == []
