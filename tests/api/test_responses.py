"""POST /v1/responses on an openai channel: the official openai SDK through the real gateway to the demo
upstream; billing read from the usage records and the ledger, exact to the nano-USD."""
from __future__ import annotations

import asyncio

import openai
import orjson
import pytest

from reapi.billing.tokens import count_responses_prompt
from reapi.mock_upstream.directives import THINKING_TOKENS
from tests.harness import UPSTREAM_KEY

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
# the harness's gpt-5.5 rate card: $5 / $30 / $0.50 cached per 1M tokens; 2x / 1.5x above 272,000 input


def cost(prompt: int, completion: int, cached: int = 0, long: bool = False) -> int:
    """The expected charge in nano-USD, rounded up once (micro-USD per 1M tokens x tokens / 1e6)."""
    i, o = (2000, 1500) if long else (1000, 1000)
    numer = ((prompt - cached) * 5_000_000 + cached * 500_000) * i + completion * 30_000_000 * o
    return -(-numer // 1_000_000)


def usd(nano: int) -> str:
    from reapi.billing.money import format_usd
    return format_usd(nano)


async def responses_requests(upstream) -> list[dict]:
    return [r for r in await upstream.requests() if r["path"].startswith("/v1/responses")]


async def test_non_stream_round_trip_bills_cached_and_reasoning_tokens(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    raw = await client.responses.with_raw_response.create(
        model="gpt-5.5", input="Hello [mock words=7 prompt_tokens=1000 cached_tokens=400]",
        instructions="Be brief.", reasoning={"effort": "low"}, include=["reasoning.encrypted_content"],
        extra_body={"group": "default"}, metadata={"a": "b"}, prompt_cache_key="k1", store=True)
    r = raw.parse()
    assert r.model == "gpt-5.5" and r.status == "completed" and r.output_text.split() == [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy"]
    assert r.output[0].type == "reasoning" and r.output[0].encrypted_content
    assert r.usage.input_tokens == 1000 and r.usage.input_tokens_details.cached_tokens == 400
    assert r.usage.output_tokens == 7 + len(THINKING_TOKENS)
    assert r.usage.output_tokens_details.reasoning_tokens == len(THINKING_TOKENS)
    expected = cost(1000, 7 + len(THINKING_TOKENS), cached=400)
    assert raw.headers["x-reapi-cost-usd"] == usd(expected)
    assert raw.headers["x-request-id"].startswith("req_") and "x-reapi-balance-usd" in raw.headers
    [up] = await responses_requests(upstream)
    assert up["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    sent = dict(up["body"])
    assert "group" not in sent and sent["store"] is True and sent["metadata"] == {"a": "b"}
    assert sent["include"] == ["reasoning.encrypted_content"] and sent["prompt_cache_key"] == "k1"
    assert "max_output_tokens" not in sent  # the client set none: nothing forced
    [rec] = await gateway.usage(s["account_id"])
    assert rec["request_id"] == raw.headers["x-request-id"] and rec["status"] == "ok"
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["cached_tokens"]) == (1000, 13, 400)
    assert rec["cost_usd"] == usd(expected)
    assert await gateway.balance(s["account_id"]) == usd(10 * 10**9 - expected)
    assert await gateway.verify() == []


async def test_store_is_never_forced(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    await client.responses.create(model="gpt-5.5", input="hi [mock words=2]")
    await client.responses.create(model="gpt-5.5", input="hi [mock words=2]", store=False)
    first, second = [r["body"] for r in await responses_requests(upstream)]
    assert "store" not in first and second["store"] is False


async def test_stream_passes_events_through_and_bills_the_terminal_usage(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    stream = await client.responses.create(model="gpt-5.5", input="Hi [mock words=5 cached_tokens=3]", stream=True,
                                           reasoning={"effort": "medium"})
    events = [e async for e in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    final = events[-1].response
    assert final.model == "gpt-5.5" and final.usage.output_tokens == 5 + len(THINKING_TOKENS)
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok" and rec["stream"] is True
    assert rec["prompt_tokens"] == final.usage.input_tokens and rec["cached_tokens"] == 3
    assert rec["completion_tokens"] == 5 + len(THINKING_TOKENS)
    assert rec["cost_usd"] == usd(cost(final.usage.input_tokens, 5 + len(THINKING_TOKENS), cached=3))
    assert await gateway.verify() == []


async def test_raw_stream_bytes_are_the_upstreams_with_no_done(gateway, upstream):
    s = await gateway.setup(upstream)
    status, headers, body = await gateway.raw("POST", "/v1/responses", json={
        "model": "gpt-5.5", "input": "x [mock words=3]", "stream": True},
        headers={"Authorization": f"Bearer {s['key']}"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert headers["x-request-id"].startswith("req_") and "x-reapi-balance-usd" in headers
    assert b"[DONE]" not in body
    blocks = [b for b in body.decode().split("\n\n") if b.strip()]
    names = [b.split("\n")[0] for b in blocks]
    assert names[0] == "event: response.created" and names[-1] == "event: response.completed"
    for b in blocks:
        name, data = b.split("\n")
        assert orjson.loads(data[6:])["type"] == name[7:]


async def test_sdk_stream_helper_and_tool_call_round_trip(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    async with client.responses.stream(model="gpt-5.5", input="Weather in Tokyo?", tools=TOOLS) as stream:
        async for _ in stream:
            pass
        first = await stream.get_final_response()
    call = first.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == '{"city":"Tokyo"}'
    second = await client.responses.create(model="gpt-5.5", tools=TOOLS, input=[
        {"role": "user", "content": "Weather in Tokyo?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text.startswith("Tool result received:")
    recs = await gateway.usage(s["account_id"])
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert await gateway.verify() == []


async def test_hold_is_the_counted_prompt_plus_max_output_tokens(gateway, upstream):
    s = await gateway.setup(upstream, balance="0.01")
    client = gateway.client(s["key"])
    body = {"model": "gpt-5.5", "input": "hello there [mock words=3]", "instructions": "terse",
            "max_output_tokens": 200}
    raw = await client.responses.with_raw_response.create(**body)
    prompt = count_responses_prompt(body)
    held = cost(prompt, 200)
    # the balance header is the balance after the hold
    assert raw.headers["x-reapi-balance-usd"] == usd(10**7 - held)
    [up] = await responses_requests(upstream)
    assert up["body"]["max_output_tokens"] == 200
    # without max_output_tokens the model's cap is held; a balance that cannot pay it lowers the cap sent
    raw = await client.responses.with_raw_response.create(model="gpt-5.5", input="hi [mock words=2]")
    cap = int(raw.headers["x-reapi-output-cap"])
    assert 16 <= cap < 128_000
    assert (await responses_requests(upstream))[-1]["body"]["max_output_tokens"] == cap
    assert await gateway.verify() == []


async def test_long_context_tier(gateway, upstream):
    s = await gateway.setup(upstream, balance="50.00")
    client = gateway.client(s["key"])
    raw = await client.responses.with_raw_response.create(
        model="gpt-5.5", input="x [mock words=4 prompt_tokens=272001 cached_tokens=1]")
    assert raw.headers["x-reapi-cost-usd"] == usd(cost(272_001, 4, cached=1, long=True))
    raw = await client.responses.with_raw_response.create(model="gpt-5.5", input="x [mock words=4 prompt_tokens=272000]")
    assert raw.headers["x-reapi-cost-usd"] == usd(cost(272_000, 4))


async def test_model_map_is_applied_and_the_public_name_echoed(gateway, upstream):
    s = await gateway.setup(upstream, channel={"model_map": {"gpt-5.5": "mock-model"}})
    client = gateway.client(s["key"])
    r = await client.responses.create(model="gpt-5.5", input="x [mock words=2]")
    assert r.model == "gpt-5.5"
    stream = await client.responses.create(model="gpt-5.5", input="x [mock words=2]", stream=True)
    events = [e async for e in stream]
    assert {e.response.model for e in events if hasattr(e, "response")} == {"gpt-5.5"}
    assert {r["body"]["model"] for r in await responses_requests(upstream)} == {"mock-model"}


async def test_key_restrictions_and_spend_limit(gateway, upstream):
    s = await gateway.setup(upstream, key={"models": ["other"]})
    client = gateway.client(s["key"])
    with pytest.raises(openai.PermissionDeniedError) as err:
        await client.responses.create(model="gpt-5.5", input="x")
    assert err.value.code == "model_not_allowed"
    k = await gateway.admin("POST", f"/admin/accounts/{s['account_id']}/keys",
                            {"name": "g", "groups": ["vip"]}, expect=201)
    await gateway.admin("PUT", "/admin/groups/vip", {"rpm": None}, expect=200)
    with pytest.raises(openai.PermissionDeniedError) as err:
        await gateway.client(k["key"]).responses.create(model="gpt-5.5", input="x")
    assert err.value.code == "group_not_allowed"
    k = await gateway.admin("POST", f"/admin/accounts/{s['account_id']}/keys",
                            {"name": "l", "spend_limit_usd": "0.000001"}, expect=201)
    with pytest.raises(openai.APIStatusError) as err:
        await gateway.client(k["key"]).responses.create(model="gpt-5.5", input="x")
    assert err.value.status_code == 402 and err.value.code == "key_spend_limit_reached"
    assert await responses_requests(upstream) == []


async def test_rate_limit_applies(gateway, upstream):
    s = await gateway.setup(upstream)
    await gateway.admin("PUT", "/admin/groups/default", {"rpm": 1}, expect=200)
    await asyncio.sleep(0.5)  # the config poll
    client = gateway.client(s["key"])
    await client.responses.create(model="gpt-5.5", input="x [mock words=2]")
    with pytest.raises(openai.RateLimitError) as err:
        await client.responses.create(model="gpt-5.5", input="x [mock words=2]")
    assert err.value.code == "rate_limit_exceeded"
    assert len(await responses_requests(upstream)) == 1
