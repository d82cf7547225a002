"""The chat route driven by the official openai SDK through the gateway to the demo upstream."""
import openai
import pytest

from tests.harness import UPSTREAM_KEY


async def test_non_stream_round_trip(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "Hello"}], extra_body={"group": "default"})
    resp = raw.parse()
    assert resp.model == "gpt-5.5"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert raw.headers["x-request-id"].startswith("req_")
    cost = raw.headers["x-reapi-cost-usd"]
    assert float(cost) > 0  # exact arithmetic is tested in billing tests
    # the upstream saw exactly one POST, with the channel's key and without our `group` field
    reqs = [r for r in await upstream.requests() if r["path"] == "/v1/chat/completions"]
    assert len(reqs) == 1
    assert reqs[0]["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "group" not in reqs[0]["body"]
    usage = await gateway.usage(s["account_id"])
    assert len(usage) == 1
    rec = usage[0]
    assert rec["request_id"] == raw.headers["x-request-id"]
    assert rec["status"] == "ok" and rec["cost_usd"] == cost
    assert rec["prompt_tokens"] == resp.usage.prompt_tokens
    assert rec["completion_tokens"] == resp.usage.completion_tokens
    assert await gateway.verify() == []


async def test_stream_round_trip(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    stream = await client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "Hello [mock words=5]"}], stream=True)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # we asked upstream for usage; the client did not
    assert all(c.model == "gpt-5.5" for c in chunks)
    up = (await upstream.requests())[-1]["body"]
    assert up["stream_options"] == {"include_usage": True}
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok" and rec["completion_tokens"] == 5 and rec["stream"] is True
    assert await gateway.verify() == []


async def test_stream_usage_when_client_asks(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    stream = await client.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "Hi [mock words=3]"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == 3


async def test_tool_call_round_trip(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    msgs = [{"role": "user", "content": "What's the weather in Tokyo?"}]
    first = await client.chat.completions.create(model="gpt-5.5", messages=msgs, tools=tools, tool_choice="auto")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and '"Tokyo"' in call.function.arguments
    msgs += [first.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "sunny, 22C"}]
    second = await client.chat.completions.create(model="gpt-5.5", messages=msgs, tools=tools)
    assert second.choices[0].message.content.startswith("Tool result received:")
    # streamed tool call deltas pass through
    stream = await client.chat.completions.create(model="gpt-5.5", messages=msgs[:1], tools=tools, stream=True)
    args = ""
    names = []
    async for c in stream:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            names.append(tc.function.name) if tc.function.name else None
            args += tc.function.arguments or ""
    assert names == ["get_weather"] and '"Tokyo"' in args


async def test_logprobs_pass_through(gateway, upstream):
    s = await gateway.setup(upstream)
    resp = await gateway.client(s["key"]).chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi [mock words=2]"}], logprobs=True, top_logprobs=2)
    lp = resp.choices[0].logprobs.content
    assert len(lp) == 2 and len(lp[0].top_logprobs) == 2


async def test_model_map_echoes_public_name(gateway, upstream):
    s = await gateway.setup(upstream, channel={"model_map": {"gpt-5.5": "upstream-name-x"}})
    client = gateway.client(s["key"])
    resp = await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert resp.model == "gpt-5.5"
    assert (await upstream.requests())[-1]["body"]["model"] == "upstream-name-x"
    stream = await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}],
                                                  stream=True)
    assert {c.model async for c in stream} == {"gpt-5.5"}


async def test_models_list(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    models = await client.models.list()
    assert [m.id for m in models.data] == ["gpt-5.5"]
    assert (await client.models.retrieve("gpt-5.5")).id == "gpt-5.5"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nope")
