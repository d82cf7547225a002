"""POST /v1/messages: Anthropic-SDK clients through the gateway to the demo upstream's Anthropic endpoint."""
import asyncio
import json
import re
from decimal import Decimal

import aiohttp
import anthropic
import orjson
import pytest

from tests.harness import UPSTREAM_KEY

MODEL = "claude-sonnet-4-6"
PRICE = {"input_usd_per_mtok": "3.00", "output_usd_per_mtok": "15.00", "cached_input_usd_per_mtok": "0.30",
         "cache_write_usd_per_mtok": "3.75", "context_window": 200_000, "max_output_tokens": 64_000}
TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


async def setup(gateway, upstream, price=None, channel=None, **kw):
    return await gateway.setup(upstream, model=MODEL, price=price or PRICE,
                               channel={"type": "anthropic", "base_url": upstream.url, **(channel or {})}, **kw)


# Shared with test_claude.py (the same billing through /v1/chat/completions).
# Rates with six decimals make the per-token amounts fractional nano-USD, so the rounding shows.
ODD_PRICE = {**PRICE, "input_usd_per_mtok": "2.500001", "output_usd_per_mtok": "12.000003",
             "cached_input_usd_per_mtok": "0.250001", "cache_write_usd_per_mtok": "3.125001"}
# 1234 uncached input, 5000 cache-read, 777 cache-write and 9 output tokens cost, in nano-USD:
#   Sonnet list prices (1 USD per 1M tokens = 1,000 nano-USD per token):
#     1234 x 3,000 + 5000 x 300 + 777 x 3,750 + 9 x 15,000 = 8,250,750 = 0.00825075 USD (exact)
#   Odd rates:
#     1234 x 2,500.001 + 5000 x 250.001 + 777 x 3,125.001 + 9 x 12,000.003
#     = 6,871,132.038 -> rounded UP to 6,871,133 nano = 0.006871133 USD
CACHE_CASES = [(PRICE, "0.00825075"), (ODD_PRICE, "0.006871133")]


def client(gateway, key):
    return anthropic.AsyncAnthropic(base_url=gateway.url, api_key=key, max_retries=0)


def user(text):
    return [{"role": "user", "content": text}]


async def post(gateway, body, headers):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return await gateway.raw("POST", "/v1/messages", data=data,
                             headers={"content-type": "application/json", **headers})


def error_of(raw: bytes) -> dict:
    obj = orjson.loads(raw)
    assert obj["type"] == "error" and set(obj["error"]) == {"type", "message"}, obj
    assert obj["request_id"].startswith("req_")
    return obj["error"]


async def upstream_bodies(upstream):
    return [r for r in await upstream.requests() if r["path"] == "/v1/messages"]


async def eventually(probe, done):
    """Await probe() until done(result) holds, every 50 ms for 5 s at most; returns the last result."""
    for _ in range(100):
        got = await probe()
        if done(got):
            break
        await asyncio.sleep(0.05)
    return got


async def disconnected(gateway, upstream, account_id) -> dict:
    """After a client left a stream: the call's usage record once settled, and the upstream call cancelled."""
    [rec] = await eventually(lambda: gateway.usage(account_id), lambda recs: recs[0]["status"] != "pending")
    stats = await eventually(upstream.stats, lambda st: st["streams_cancelled"] == 1)
    assert stats["streams_cancelled"] == 1  # the upstream call was cancelled, not run out
    return rec


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            out.append((lines["event"], json.loads(lines["data"])))
    return out


async def test_non_stream(gateway, upstream):
    s = await setup(gateway, upstream)
    raw = await client(gateway, s["key"]).messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=user("Hello [mock words=5]"), system="Be brief.",
        extra_body={"temperature": 0.5})  # this SDK version has no `temperature` argument
    msg = await raw.parse()
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert msg.stop_reason == "end_turn"
    assert len(msg.content[0].text.split()) == 5 and msg.usage.output_tokens == 5
    assert raw.headers["x-request-id"].startswith("req_")
    assert "x-reapi-balance-usd" in raw.headers and "x-reapi-output-cap" not in raw.headers
    [up] = await upstream_bodies(upstream)
    # the body goes upstream as sent; the channel's key and the client's anthropic-version go with it
    assert up["body"] == {"model": MODEL, "max_tokens": 100, "messages": user("Hello [mock words=5]"),
                          "system": "Be brief.", "temperature": 0.5}
    assert up["headers"]["x-api-key"] == UPSTREAM_KEY and "authorization" not in up["headers"]
    assert up["headers"]["anthropic-version"] == anthropic._constants.ANTHROPIC_API_VERSION
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok" and rec["request_id"] == raw.headers["x-request-id"]
    assert rec["cost_usd"] == raw.headers["x-reapi-cost-usd"]
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (msg.usage.input_tokens, 5)
    assert rec["model"] == MODEL and rec["stream"] is False
    assert await gateway.verify() == []


async def test_stream_with_sdk_helper(gateway, upstream):
    s = await setup(gateway, upstream)
    async with client(gateway, s["key"]).messages.stream(
            model=MODEL, max_tokens=200, messages=user("Hello [mock words=7]")) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert len(text.split()) == 7 and final.content[0].text == text
    assert final.model == MODEL and final.stop_reason == "end_turn" and final.usage.output_tokens == 7
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok" and rec["stream"] is True and rec["completion_tokens"] == 7
    assert rec["prompt_tokens"] == final.usage.input_tokens
    assert await gateway.verify() == []


async def test_stream_is_relayed_byte_for_byte(gateway, upstream):
    s = await setup(gateway, upstream, channel={"model_map": {MODEL: "claude-upstream-x"}})
    body = {"model": MODEL, "max_tokens": 50, "stream": True, "messages": user("Hi [mock words=4]")}
    status, h, raw = await post(gateway, body, {"x-api-key": s["key"], "anthropic-version": "2023-06-01"})
    assert status == 200 and h["content-type"].startswith("text/event-stream")
    assert h["x-request-id"].startswith("req_") and "x-reapi-balance-usd" in h
    events = sse_events(raw)
    assert [e for e, _ in events] == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 4 \
        + ["content_block_stop", "message_delta", "message_stop"]
    assert all(e == d["type"] for e, d in events)
    assert events[0][1]["message"]["model"] == MODEL  # the public name, not the channel's
    # The same request straight to the upstream: identical bytes but for the message id and the model name.
    async with aiohttp.ClientSession() as http, http.post(
            upstream.url + "/v1/messages", json={**body, "model": "claude-upstream-x"},
            headers={"x-api-key": UPSTREAM_KEY, "anthropic-version": "2023-06-01"}) as r:
        direct = await r.read()
    norm = lambda b: re.sub(rb'"msg_[0-9a-f]+"', b'"msg_X"', b)  # noqa: E731
    assert norm(raw) == norm(direct).replace(b'"model":"claude-upstream-x"', b'"model":"' + MODEL.encode() + b'"')
    assert (await upstream_bodies(upstream))[0]["body"]["model"] == "claude-upstream-x"
    # non-stream: the model name is set back too
    msg = await client(gateway, s["key"]).messages.create(model=MODEL, max_tokens=50, messages=user("hi"))
    assert msg.model == MODEL
    assert {r["status"] for r in await gateway.usage(s["account_id"])} == {"ok"}
    assert await gateway.verify() == []


async def test_tool_use_round_trip(gateway, upstream):
    s = await setup(gateway, upstream)
    c = client(gateway, s["key"])
    msgs = user("What's the weather in Tokyo?")
    first = await c.messages.create(model=MODEL, max_tokens=300, messages=msgs, tools=TOOLS)
    assert first.stop_reason == "tool_use"
    [call] = first.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == {"city": "Tokyo"}
    assert (await upstream_bodies(upstream))[-1]["body"]["tools"] == TOOLS
    msgs += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
    second = await c.messages.create(model=MODEL, max_tokens=300, messages=msgs, tools=TOOLS)
    assert second.content[0].text.startswith("Tool result received:")
    # streamed tool use: input_json deltas reassemble
    async with c.messages.stream(model=MODEL, max_tokens=300, messages=msgs[:1], tools=TOOLS) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].input == {"city": "Tokyo"}
    recs = await gateway.usage(s["account_id"])
    assert len(recs) == 3 and {r["status"] for r in recs} == {"ok"}
    assert await gateway.verify() == []


async def test_auth_x_api_key_and_bearer(gateway, upstream):
    s = await setup(gateway, upstream)
    body = {"model": MODEL, "max_tokens": 20, "messages": user("hi [mock words=2]")}
    for headers in ({"x-api-key": s["key"]}, {"Authorization": f"Bearer {s['key']}"},
                    {"x-api-key": s["key"], "Authorization": "Bearer sk-other"}):
        status, h, raw = await post(gateway, body, headers)
        assert status == 200, raw
        assert orjson.loads(raw)["content"][0]["text"] and "x-reapi-cost-usd" in h
    # no anthropic-version from the client: the default goes upstream
    assert (await upstream_bodies(upstream))[-1]["headers"]["anthropic-version"] == "2023-06-01"
    for headers in ({}, {"x-api-key": "sk-wrong"}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "Basic x"}):
        status, h, raw = await post(gateway, body, headers)
        assert status == 401 and h["x-request-id"].startswith("req_")
        assert error_of(raw)["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError) as ei:
        await client(gateway, "sk-nope").messages.create(model=MODEL, max_tokens=5, messages=user("hi"))
    assert ei.value.body["error"]["type"] == "authentication_error"
    assert len(await upstream_bodies(upstream)) == 3


async def test_not_found_for_non_claude_and_unknown_models(gateway, upstream):
    s = await gateway.setup(upstream)  # gpt-5.5 on an OpenAI channel
    c = client(gateway, s["key"])
    for model in ("gpt-5.5", "claude-nope"):
        with pytest.raises(anthropic.NotFoundError) as ei:
            await c.messages.create(model=model, max_tokens=5, messages=user("hi"))
        assert ei.value.body["type"] == "error" and ei.value.body["error"]["type"] == "not_found_error"
    assert await upstream.requests() == [] and await gateway.usage(s["account_id"]) == []


@pytest.mark.parametrize("body,param", [
    (b"{not json", None),
    (b"[1, 2]", None),
    ({"messages": user("hi"), "max_tokens": 5}, "model"),
    ({"model": MODEL, "max_tokens": 5}, "messages"),
    ({"model": MODEL, "max_tokens": 5, "messages": []}, "messages"),
    ({"model": MODEL, "messages": user("hi")}, "max_tokens"),
    ({"model": MODEL, "messages": user("hi"), "max_tokens": 0}, "max_tokens"),
    ({"model": MODEL, "messages": user("hi"), "max_tokens": "5"}, "max_tokens"),
    ({"model": MODEL, "messages": user("hi"), "max_tokens": True}, "max_tokens"),
    ({"model": MODEL, "messages": user("hi"), "max_tokens": 5, "stream": "yes"}, "stream"),
])
async def test_bad_requests(gateway, upstream, body, param):
    s = await setup(gateway, upstream)
    status, h, raw = await post(gateway, body, {"x-api-key": s["key"]})
    assert status == 400, raw
    e = error_of(raw)
    assert e["type"] == "invalid_request_error"
    if param:
        assert e["message"].startswith(param)
    assert await upstream.requests() == [] and await gateway.usage(s["account_id"]) == []


async def test_missing_max_tokens_via_sdk(gateway, upstream):
    s = await setup(gateway, upstream)
    with pytest.raises(anthropic.BadRequestError) as ei:
        await client(gateway, s["key"]).messages.create(model=MODEL, messages=user("hi"), max_tokens=anthropic.omit,
                                                        timeout=30)
    assert ei.value.body["error"]["type"] == "invalid_request_error" and "max_tokens" in ei.value.message


async def test_zero_balance_is_402_billing_error(gateway, upstream):
    s = await setup(gateway, upstream, balance="0")
    with pytest.raises(anthropic.APIStatusError) as ei:
        await client(gateway, s["key"]).messages.create(model=MODEL, max_tokens=5, messages=user("hi"))
    assert ei.value.status_code == 402
    assert ei.value.body["error"]["type"] == "billing_error"
    assert ei.value.response.headers["x-should-retry"] == "false"
    assert await upstream.requests() == []


async def test_wrong_method_route_and_group(gateway, upstream):
    s = await setup(gateway, upstream)
    status, _, raw = await gateway.raw("GET", "/v1/messages", headers={"x-api-key": s["key"]})
    assert status == 405 and error_of(raw)["type"] == "invalid_request_error"
    status, _, raw = await gateway.raw("POST", "/v1/messages/batches", json={}, headers={"x-api-key": s["key"]})
    assert status == 404 and error_of(raw)["type"] == "not_found_error"
    body = {"model": MODEL, "max_tokens": 5, "messages": user("hi")}
    status, _, raw = await post(gateway, body, {"x-api-key": s["key"], "x-reapi-group": "nope"})
    assert status == 400 and "group" in error_of(raw)["message"]
    await gateway.admin("PUT", "/admin/groups/vip", {"rpm": None}, expect=200)
    status, _, raw = await post(gateway, body, {"x-api-key": s["key"], "x-reapi-group": "vip"})
    assert status == 404 and error_of(raw)["type"] == "not_found_error"  # no channel serves it in "vip"
    limited = await gateway.admin("POST", f"/admin/accounts/{s['account_id']}/keys",
                                  {"name": "r", "models": ["gpt-4o"]}, expect=201)
    status, _, raw = await post(gateway, body, {"x-api-key": limited["key"]})
    assert status == 403 and error_of(raw)["type"] == "permission_error"


@pytest.mark.parametrize("directive,status,etype", [
    ("[mock status=400]", 400, "invalid_request_error"),
    ("[mock status=401]", 502, "api_error"),  # the channel's key, not the client's: never a 401 to the client
    ("[mock status=429]", 429, "rate_limit_error"),
    ("[mock status=500]", 502, "api_error"),
    ("[mock status=529]", 503, "overloaded_error"),
])
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_not_charged(gateway, upstream, directive, status, etype, stream):
    s = await setup(gateway, upstream)
    before = await gateway.balance(s["account_id"])
    st, h, raw = await post(gateway, {"model": MODEL, "max_tokens": 20, "stream": stream,
                                      "messages": user(directive)}, {"x-api-key": s["key"]})
    assert st == status
    e = error_of(raw)
    assert e["type"] == etype
    if status == 400:
        assert e["message"] == "Invalid request (mock)."
    assert UPSTREAM_KEY not in raw.decode() and upstream.url not in raw.decode()
    assert "x-reapi-balance-usd" in h and h["x-request-id"].startswith("req_")
    assert await gateway.balance(s["account_id"]) == before
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "failed" and rec["cost_usd"] == "0.00"
    assert len(await upstream.requests()) == 1
    assert await gateway.verify() == []


@pytest.mark.parametrize("directive", ["[mock error_event_after=2]", "[mock drop_after=2]"])
async def test_broken_stream_ends_with_error_event_and_is_not_charged(gateway, upstream, directive):
    s = await setup(gateway, upstream)
    c = client(gateway, s["key"])
    got = []
    with pytest.raises(anthropic.APIStatusError) as ei:
        async with c.messages.stream(model=MODEL, max_tokens=50,
                                     messages=user(directive + " [mock words=6]")) as stream:
            async for ev in stream:
                got.append(ev.type)
    assert "message_start" in got and "message_stop" not in got
    assert ei.value.body["type"] == "error"
    assert ei.value.body["error"]["type"] in ("overloaded_error", "api_error")
    assert await gateway.balance(s["account_id"]) == "10.00"
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "failed"
    assert await gateway.verify() == []


async def test_client_disconnect_cancels_upstream_and_charges_what_was_produced(gateway, upstream):
    s = await setup(gateway, upstream)
    body = {"model": MODEL, "max_tokens": 500, "stream": True,
            "messages": user("Go [mock words=200] [mock chunk_delay_ms=30] [mock prompt_tokens=1000]")}
    deltas = 0
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + "/v1/messages", json=body, headers={"x-api-key": s["key"]}) as r:
            assert r.status == 200
            async for line in r.content:
                deltas += line.startswith(b"event: content_block_delta")
                if deltas == 5:
                    break
            r.close()
    rec = await disconnected(gateway, upstream, s["account_id"])
    assert rec["status"] == "client_closed"
    # the prompt is upstream's own count from message_start, the completion what was produced before the cancel
    assert rec["prompt_tokens"] == 1000
    assert 5 <= rec["completion_tokens"] < 200
    # 1000 input tokens at 3,000 nano-USD + each produced token at 15,000 nano-USD
    assert rec["cost_usd"] == _usd(1000 * 3000 + rec["completion_tokens"] * 15000)
    assert await gateway.verify() == []


async def test_low_balance_lowers_max_tokens(gateway, upstream):
    s = await setup(gateway, upstream, balance="0.01")
    raw = await client(gateway, s["key"]).messages.with_raw_response.create(
        model=MODEL, max_tokens=4000, messages=user("hi [mock words=3]"))
    cap = int(raw.headers["x-reapi-output-cap"])
    # 0.01 USD pays at most 10,000,000 / 15,000 = 666 output tokens (fewer once the prompt is paid)
    assert 16 <= cap < 667
    assert (await upstream_bodies(upstream))[-1]["body"]["max_tokens"] == cap
    assert (await raw.parse()).usage.output_tokens == 3
    assert await gateway.verify() == []


@pytest.mark.parametrize("price,expected", CACHE_CASES)
@pytest.mark.parametrize("stream", [False, True])
async def test_billing_includes_cache_tokens(gateway, upstream, price, expected, stream):
    s = await setup(gateway, upstream, price=price)
    # Anthropic's input_tokens excludes the cache: the demo upstream reports prompt_tokens=1234 as input_tokens,
    # cached_tokens as cache_read_input_tokens and cache_write_tokens as cache_creation_input_tokens.
    content = "Hi [mock prompt_tokens=1234] [mock cached_tokens=5000] [mock cache_write_tokens=777] [mock words=9]"
    c = client(gateway, s["key"])
    if stream:
        async with c.messages.stream(model=MODEL, max_tokens=100, messages=user(content)) as st:
            usage = (await st.get_final_message()).usage
    else:
        raw = await c.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=user(content))
        usage = (await raw.parse()).usage
        assert raw.headers["x-reapi-cost-usd"] == expected
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens,
            usage.output_tokens) == (1234, 5000, 777, 9)
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok"
    assert (rec["prompt_tokens"], rec["cached_tokens"], rec["cache_write_tokens"], rec["completion_tokens"]) == (
        1234 + 5000 + 777, 5000, 777, 9)
    assert rec["cost_usd"] == expected
    nano = int(Decimal(expected) * 10**9)
    assert await gateway.balance(s["account_id"]) == _usd(10 * 10**9 - nano)
    assert await gateway.verify() == []


def _usd(nano: int) -> str:
    whole, frac = divmod(nano, 10**9)
    return f"{whole}.{f'{frac:09d}'.rstrip('0').ljust(2, '0')}"
