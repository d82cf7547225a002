"""POST /v1/responses on an `anthropic` channel: the official openai SDK through the real gateway, translated to
Claude's Messages API at the demo upstream and back; what reached the upstream is read from its request log and
billing from the usage records and the ledger, exact to the nano-USD."""
from __future__ import annotations

from decimal import Decimal

import aiohttp
import openai
import orjson
import pytest

from reapi.billing import tokens
from reapi.mock_upstream.directives import THINKING_SIGNATURE, THINKING_TOKENS
from reapi.relay.anthropic.responses import CLAUDE_ID_PREFIX
from tests.api.test_messages_route import CACHE_CASES, MODEL, PRICE, eventually
from tests.harness import UPSTREAM_KEY, Gateway, gateway_settings

MAX_OUT = PRICE["max_output_tokens"]
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": True,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                         "additionalProperties": False}}]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
THINKING = "".join(THINKING_TOKENS)


@pytest.fixture
async def gw(store_url):
    """A gateway on SQLite and on PostgreSQL, for the money tests."""
    g = await Gateway(gateway_settings(store_url)).start()
    yield g
    await g.stop()


async def setup(gateway, upstream, price=None, **kw):
    return await gateway.setup(upstream, model=MODEL, price=price or PRICE,
                               channel={"type": "anthropic", "base_url": upstream.url}, **kw)


async def sent(upstream) -> list[dict]:
    return [r for r in await upstream.requests() if r["path"] == "/v1/messages"]


def nano(usd: str) -> int:
    return int(Decimal(usd) * 10**9)


def parse_sse(raw: bytes) -> list[tuple[str, dict]]:
    """(event: name, data) of every event, checking each has both lines and the names agree."""
    out = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        name, data = lines[0][7:], orjson.loads(lines[1][6:])
        assert data["type"] == name
        out.append((name, data))
    return out


async def raw_stream(gateway, key: str, body: dict) -> tuple[int, bytes]:
    status, _, raw = await gateway.raw("POST", "/v1/responses", json={**body, "stream": True},
                                       headers={"Authorization": f"Bearer {key}"})
    return status, raw


async def test_create_translates_and_answers_a_response(gateway, upstream):
    s = await setup(gateway, upstream)
    raw = await gateway.client(s["key"]).responses.with_raw_response.create(
        model=MODEL, instructions="Be brief.", input=[
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
            {"role": "user", "content": "Again [mock words=5]"}],
        temperature=0.5, top_p=0.9, store=True, metadata={"a": "b"}, safety_identifier="user-42",
        extra_body={"group": "default"})
    r = raw.parse()
    assert r.id.startswith(CLAUDE_ID_PREFIX) and r.object == "response" and r.model == MODEL
    assert r.status == "completed" and r.incomplete_details is None and len(r.output_text.split()) == 5
    assert r.store is False and r.metadata == {"a": "b"} and r.instructions == "Be brief."
    [msg] = r.output
    assert msg.type == "message" and msg.role == "assistant" and msg.content[0].type == "output_text"
    [up] = await sent(upstream)
    assert up["headers"]["x-api-key"] == UPSTREAM_KEY and "authorization" not in up["headers"]
    body = up["body"]
    assert body["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in English."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
        {"role": "user", "content": [{"type": "text", "text": "Again [mock words=5]"}]}]
    assert body["max_tokens"] == MAX_OUT  # no max_output_tokens: the model's cap (Claude requires one)
    assert body["temperature"] == 0.5 and body["top_p"] == 0.9 and body["metadata"] == {"user_id": "user-42"}
    assert not {"stream", "group", "store", "instructions", "input", "thinking"} & set(body)
    assert r.usage.output_tokens == 5 and r.usage.output_tokens_details.reasoning_tokens == 0
    assert r.usage.total_tokens == r.usage.input_tokens + 5
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok" and rec["request_id"] == raw.headers["x-request-id"]
    assert rec["cost_usd"] == raw.headers["x-reapi-cost-usd"]
    assert (rec["prompt_tokens"], rec["completion_tokens"]) == (r.usage.input_tokens, 5)
    assert await gateway.verify() == []


@pytest.mark.parametrize("price,expected", CACHE_CASES)
@pytest.mark.parametrize("stream", [False, True])
async def test_billing_with_cache_read_and_write_is_exact(gw, upstream, price, expected, stream):
    gateway = gw
    s = await setup(gateway, upstream, price=price)
    text = "Hello [mock prompt_tokens=1234] [mock cached_tokens=5000] [mock cache_write_tokens=777] [mock words=9]"
    client = gateway.client(s["key"])
    if stream:
        async with client.responses.stream(model=MODEL, input=text) as st:
            r = await st.get_final_response()
    else:
        raw = await client.responses.with_raw_response.create(model=MODEL, input=text)
        r = raw.parse()
        assert raw.headers["x-reapi-cost-usd"] == expected
    # input_tokens counts every input token: Claude's input + cache read + cache write
    assert r.usage.input_tokens == 1234 + 5000 + 777 and r.usage.input_tokens_details.cached_tokens == 5000
    assert r.usage.output_tokens == 9 and r.usage.total_tokens == 7011 + 9
    [rec] = await gateway.usage(s["account_id"])
    assert (rec["prompt_tokens"], rec["cached_tokens"], rec["cache_write_tokens"], rec["completion_tokens"]) == (
        7011, 5000, 777, 9)
    assert rec["cost_usd"] == expected and rec["status"] == "ok"
    assert nano(await gateway.balance(s["account_id"])) == 10 * 10**9 - nano(expected)
    assert await gateway.verify() == []


async def test_stream_event_sequence_and_numbers(gateway, upstream):
    s = await setup(gateway, upstream)
    status, raw = await raw_stream(gateway, s["key"], {"model": MODEL, "input": "Hi [mock words=4]",
                                                        "reasoning": {"effort": "low"}})
    assert status == 200 and b"[DONE]" not in raw
    events = parse_sse(raw)
    names = [n for n, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[2:5] == ["response.output_item.added", "response.reasoning_summary_part.added",
                          "response.reasoning_summary_text.delta"]
    assert names[-1] == "response.completed"
    assert names.count("response.output_text.delta") == 4
    assert names.count("response.reasoning_summary_text.delta") == len(THINKING_TOKENS)
    tail = ["response.output_text.done", "response.content_part.done", "response.output_item.done",
            "response.completed"]
    assert names[-4:] == tail
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    final = events[-1][1]["response"]
    assert final["status"] == "completed" and final["id"].startswith(CLAUDE_ID_PREFIX)
    assert final["id"] == events[0][1]["response"]["id"]
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["summary"] == [{"type": "summary_text", "text": THINKING}]
    assert "encrypted_content" not in final["output"][0]  # not asked for
    assert final["output"][1]["content"][0]["text"].split() == ["the", "quick", "brown", "fox"]
    assert final["usage"]["output_tokens"] == 4 + len(THINKING_TOKENS)
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "ok" and rec["completion_tokens"] == 4 + len(THINKING_TOKENS)
    # the SDK reads the same stream
    async with gateway.client(s["key"]).responses.stream(model=MODEL, input="Hi [mock words=3]") as st:
        kinds = [ev.type async for ev in st]
        r = await st.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed" and len(r.output_text.split()) == 3
    assert await gateway.verify() == []


@pytest.mark.parametrize("stream", [False, True])
async def test_function_tool_round_trip(gw, upstream, stream):
    gateway = gw
    s = await setup(gateway, upstream)
    client = gateway.client(s["key"])
    args = dict(model=MODEL, input="Weather in Paris?", tools=TOOLS, tool_choice="required",
                parallel_tool_calls=False)
    if stream:
        async with client.responses.stream(**args) as st:
            kinds = [ev.type async for ev in st]
            first = await st.get_final_response()
        assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    else:
        first = await client.responses.create(**args)
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("toolu_")
    assert isinstance(orjson.loads(call.arguments), dict)
    up = (await sent(upstream))[-1]["body"]
    assert up["tools"] == [{"name": "get_weather", "description": "Weather for a city", "strict": True,
                            "input_schema": TOOLS[0]["parameters"]}]
    assert up["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    second = await client.responses.create(model=MODEL, tools=TOOLS, input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny [mock words=3]"}])
    assert second.output[0].type == "message" and second.output_text.startswith("Tool result received:")
    msgs = (await sent(upstream))[-1]["body"]["messages"]
    assert msgs[1] == {"role": "assistant", "content": [{"type": "tool_use", "id": call.call_id,
                                                         "name": "get_weather", "input": orjson.loads(call.arguments)}]}
    assert msgs[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.call_id, "content": [
        {"type": "text", "text": "18C and sunny [mock words=3]"}]}]}
    recs = await gateway.usage(s["account_id"])
    assert len(recs) == 2 and all(r["status"] == "ok" for r in recs)
    assert await gateway.verify() == []


NAMESPACE = [{"type": "namespace", "name": "crm", "description": "Customer records", "tools": [
    {"type": "function", "name": "lookup", "description": "Find a customer",
     "parameters": {"type": "object", "properties": {"email": {"type": "string"}}}}]}]


async def test_namespace_tools_are_flattened_and_named_back(gateway, upstream):
    s = await setup(gateway, upstream)
    client = gateway.client(s["key"])
    first = await client.responses.create(model=MODEL, input="Find ann@example.com", tools=NAMESPACE,
                                          tool_choice="required")
    up = (await sent(upstream))[-1]["body"]
    assert [t["name"] for t in up["tools"]] == ["crm__lookup"]
    [call] = first.output
    assert (call.type, call.namespace, call.name) == ("function_call", "crm", "lookup")
    status, raw = await raw_stream(gateway, s["key"], {"model": MODEL, "input": "Find ann", "tools": NAMESPACE,
                                                        "tool_choice": "required"})
    added = [d for n, d in parse_sse(raw) if n == "response.output_item.added"]
    assert added[0]["item"]["namespace"] == "crm" and added[0]["item"]["name"] == "lookup"
    await client.responses.create(model=MODEL, tools=NAMESPACE, input=[
        {"role": "user", "content": "Find ann@example.com"},
        {"type": "function_call", "call_id": call.call_id, "namespace": "crm", "name": "lookup",
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Ann"}])
    assert (await sent(upstream))[-1]["body"]["messages"][1]["content"][0]["name"] == "crm__lookup"


@pytest.mark.parametrize("effort,cap,budget", [
    ("minimal", None, 1024), ("low", None, 2048), ("medium", None, 8192), ("high", None, 16384),
    ("xhigh", None, 32000), ("high", 10_000, 5000), ("low", 1500, 1024)])
async def test_reasoning_effort_is_a_thinking_budget(gateway, upstream, effort, cap, budget):
    s = await setup(gateway, upstream)
    extra = {"max_output_tokens": cap} if cap else {}
    r = await gateway.client(s["key"]).responses.create(model=MODEL, input="Think [mock words=2]",
                                                        reasoning={"effort": effort, "summary": "auto"}, **extra)
    up = (await sent(upstream))[-1]["body"]
    assert up["thinking"] == {"type": "enabled", "budget_tokens": budget} and up["max_tokens"] == (cap or MAX_OUT)
    assert r.output[0].type == "reasoning" and r.output[0].summary[0].text == THINKING
    assert r.reasoning.effort == effort


async def test_thinking_goes_back_to_claude_through_encrypted_content(gateway, upstream):
    s = await setup(gateway, upstream)
    client = gateway.client(s["key"])
    first = await client.responses.create(model=MODEL, input="Weather?", tools=TOOLS, reasoning={"effort": "low"},
                                          include=["reasoning.encrypted_content"])
    reasoning, call = first.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content and call.type == "function_call"
    await client.responses.create(model=MODEL, tools=TOOLS, reasoning={"effort": "low"}, input=[
        {"role": "user", "content": "Weather?"}, reasoning.model_dump(exclude_none=True),
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "rain [mock words=2]"}])
    assistant = (await sent(upstream))[-1]["body"]["messages"][1]
    assert assistant["content"][0] == {"type": "thinking", "thinking": THINKING, "signature": THINKING_SIGNATURE}
    assert assistant["content"][1]["type"] == "tool_use"


async def test_image_input_url_and_base64(gateway, upstream):
    s = await setup(gateway, upstream)
    await gateway.client(s["key"]).responses.create(model=MODEL, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is in these?"},
        {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]}])
    [up] = await sent(upstream)
    assert up["body"]["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]


PDF = "JVBERi0xLjQKJeLjz9MK"


async def test_pdf_input_as_data_raw_base64_and_url(gateway, upstream):
    s = await setup(gateway, upstream)
    await gateway.client(s["key"]).responses.create(model=MODEL, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Summarise"},
        {"type": "input_file", "filename": "a.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
        {"type": "input_file", "filename": "b.pdf", "file_data": PDF},
        {"type": "input_file", "file_url": "https://example.com/c.pdf"}]}])
    [up] = await sent(upstream)
    doc = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    assert up["body"]["messages"][0]["content"][1:] == [
        {"type": "document", "source": doc, "title": "a.pdf"}, {"type": "document", "source": doc, "title": "b.pdf"},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/c.pdf"}}]


async def test_text_format_json_schema_is_claudes_structured_output(gateway, upstream):
    s = await setup(gateway, upstream)
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
              "additionalProperties": False}
    client = gateway.client(s["key"])
    await client.responses.create(model=MODEL, input="Give x",
                                  text={"format": {"type": "json_schema", "name": "X", "schema": schema}})
    assert (await sent(upstream))[-1]["body"]["output_config"] == {"format": {"type": "json_schema",
                                                                              "schema": schema}}
    await client.responses.create(model=MODEL, input="Give JSON", text={"format": {"type": "json_object"}})
    body = (await sent(upstream))[-1]["body"]
    assert "output_config" not in body and "JSON object" in body["system"][-1]["text"]


async def test_max_output_tokens_reached_is_incomplete(gateway, upstream):
    s = await setup(gateway, upstream)
    r = await gateway.client(s["key"]).responses.create(model=MODEL, input="Hi [mock words=40]",
                                                        max_output_tokens=16)
    assert (await sent(upstream))[-1]["body"]["max_tokens"] == 16
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    status, raw = await raw_stream(gateway, s["key"], {"model": MODEL, "input": "Hi [mock words=40]",
                                                        "max_output_tokens": 16})
    events = parse_sse(raw)
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))


BAD = [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
    ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0].type"),
    ({"tools": [{"type": "computer_use_preview", "display_width": 1, "display_height": 1,
                 "environment": "linux"}]}, "tools[0].type"),
    ({"tools": [{"type": "tool_search"}]}, "tools[0].type"),
    ({"tools": [{**TOOLS[0], "defer_loading": True}]}, "tools[0].defer_loading"),
    ({"tools": [{**NAMESPACE[0], "tools": [{"type": "custom", "name": "patch"}]}]}, "tools[0].tools[0].type"),
    ({"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}, "tools": TOOLS}, "tool_choice"),
    ({"previous_response_id": "resp_abc"}, "previous_response_id"),
    ({"conversation": "conv_abc"}, "conversation"),
    ({"background": True}, "background"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"include": ["file_search_call.results"]}, "include[0]"),
    ({"truncation": "auto"}, "truncation"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"max_tool_calls": 3}, "max_tool_calls"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
     "input[0].content[0].file_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "input[0].content[0].type"),
    ({"reasoning": {"effort": "low"}, "max_output_tokens": 1000}, "reasoning.effort"),
    ({"reasoning": {"effort": "low"}, "tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
    ({"reasoning": {"effort": "low"}, "temperature": 0.3}, "temperature"),
    ({"temperature": 1.5}, "temperature"),
    ({"text": {"format": {"type": "grammar"}}}, "text.format.type"),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("extra,param", BAD)
async def test_what_claude_cannot_honour_is_400_naming_the_param(gateway, upstream, extra, param, stream):
    s = await setup(gateway, upstream)
    before = await gateway.balance(s["account_id"])
    body = {"model": MODEL, "input": "hi", "stream": stream, **extra}
    status, headers, raw = await gateway.raw("POST", "/v1/responses", json=body,
                                             headers={"Authorization": f"Bearer {s['key']}"})
    err = orjson.loads(raw)["error"]
    assert status == 400 and headers["content-type"].startswith("application/json"), raw
    assert err["param"] == param and err["code"] in ("unsupported_parameter", "invalid_value", "invalid_type"), err
    assert err["type"] == "invalid_request_error" and UPSTREAM_KEY not in raw.decode()
    assert await sent(upstream) == []
    assert await gateway.balance(s["account_id"]) == before
    assert all(r["status"] != "pending" for r in await gateway.usage(s["account_id"]))
    assert await gateway.verify() == []


async def test_sdk_raises_bad_request_for_a_hosted_tool(gateway, upstream):
    s = await setup(gateway, upstream)
    with pytest.raises(openai.BadRequestError) as ei:
        await gateway.client(s["key"]).responses.create(model=MODEL, input="hi", tools=[{"type": "web_search"}])
    assert ei.value.code == "unsupported_parameter" and ei.value.param == "tools[0].type"


async def test_claude_responses_are_not_stored(gateway, upstream):
    s = await setup(gateway, upstream)
    client = gateway.client(s["key"])
    r = await client.responses.create(model=MODEL, input="hi [mock words=2]", store=True)
    for call in (lambda: client.responses.retrieve(r.id), lambda: client.responses.delete(r.id),
                 lambda: client.responses.cancel(r.id), lambda: client.responses.input_items.list(r.id)):
        with pytest.raises(openai.NotFoundError) as ei:
            await call()
        assert ei.value.code == "response_not_stored" and "Claude" in ei.value.message
    with pytest.raises(openai.NotFoundError) as ei:
        await client.responses.retrieve("resp_unknown")
    assert ei.value.code == "response_not_found"
    assert len(await sent(upstream)) == 1  # only the create reached the upstream


async def test_hold_counts_the_prompt_with_claudes_margin(gateway, upstream):
    s = await setup(gateway, upstream)
    body = {"model": MODEL, "input": "A prompt to count [mock words=2]", "max_output_tokens": 100}
    await gateway.client(s["key"]).responses.create(**body)
    [rec] = await gateway.usage(s["account_id"])
    assert tokens.count_responses_prompt(body) < await tokens.count_responses_prompt_async(body, "claude")
    assert rec["status"] == "ok"


@pytest.mark.parametrize("directive", ["error_event_after=3", "drop_after=3"])
async def test_upstream_error_mid_stream_is_our_error_event_numbered_next_and_free(gateway, upstream, directive):
    s = await setup(gateway, upstream)
    before = await gateway.balance(s["account_id"])
    status, raw = await raw_stream(gateway, s["key"], {"model": MODEL,
                                                        "input": f"Hi [mock words=8 {directive}]"})
    events = parse_sse(raw)
    assert status == 200 and events[-1][0] == "error"
    assert events[-1][1]["code"] and events[-1][1]["error"]["code"] == events[-1][1]["code"]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert UPSTREAM_KEY not in raw.decode() and upstream.url not in raw.decode()
    assert await gateway.balance(s["account_id"]) == before
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] != "ok" and rec["cost_usd"] in ("0", "0.00", "0.000000000")
    with pytest.raises(openai.APIError):
        async with gateway.client(s["key"]).responses.stream(
                model=MODEL, input=f"Hi [mock words=8 {directive}]") as st:
            async for _ in st:
                pass
    assert await gateway.verify() == []


async def test_upstream_http_error_maps_and_charges_nothing(gateway, upstream):
    s = await setup(gateway, upstream)
    before = await gateway.balance(s["account_id"])
    with pytest.raises(openai.APIStatusError) as ei:
        await gateway.client(s["key"]).responses.create(model=MODEL, input="Hi [mock status=529]")
    assert ei.value.status_code >= 500 and UPSTREAM_KEY not in str(ei.value.body)
    assert await gateway.balance(s["account_id"]) == before
    assert await gateway.verify() == []


async def test_client_disconnect_charges_claudes_prompt_count_and_what_was_produced(gw, upstream):
    gateway = gw
    s = await setup(gateway, upstream)
    body = {"model": MODEL, "stream": True,
            "input": "x [mock words=60 chunk_delay_ms=50 prompt_tokens=100 cached_tokens=40 cache_write_tokens=10]"}
    n, got = 5, 0
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/responses", json=body,
                                headers={"Authorization": f"Bearer {s['key']}"}) as r:
            async for line in r.content:
                if line.startswith(b"data: ") and b'"response.output_text.delta"' in line:
                    got += 1
                    if got == n:
                        break
            r.connection.transport.abort() if r.connection else None
    [rec] = await eventually(lambda: gateway.usage(s["account_id"]), lambda recs: recs[0]["status"] != "pending")
    stats = await eventually(upstream.stats, lambda st: st["streams_cancelled"] == 1)
    assert stats["streams_cancelled"] == 1
    # the prompt as Claude counted it in message_start (input + cache read + cache write), not our estimate
    assert rec["status"] == "client_closed" and (rec["prompt_tokens"], rec["cached_tokens"]) == (150, 40)
    assert rec["cache_write_tokens"] == 10 and n <= rec["completion_tokens"] <= n + 1
    # $3 input, $0.30 cached, $3.75 cache write, $15 output per 1M tokens
    expected = -(-(100 * 3_000_000_000 + 40 * 300_000_000 + 10 * 3_750_000_000
                   + rec["completion_tokens"] * 15_000_000_000) // 1_000_000)
    assert nano(rec["cost_usd"]) == expected
    assert await gateway.verify() == []


def _sse(*events: dict) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


_START = {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3, "output_tokens": 1}}}


@pytest.mark.parametrize("frames", [
    [b"not json"],
    [b"[1, 2]"],
    _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    _sse(_START, {"type": "content_block_delta", "index": 9, "delta": {"type": "text_delta", "text": "x"}}),
    _sse(_START, {"type": "content_block_start", "index": "0", "content_block": {"type": "text"}}),
    _sse(_START, {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
         {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}}),
    _sse(_START, {"type": "content_block_start", "index": 0,
                  "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}},
         {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "[1"}},
         {"type": "content_block_stop", "index": 0}),
    _sse(_START, _START),
    _sse(_START, {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
         {"type": "content_block_stop", "index": 0}, {"type": "content_block_stop", "index": 0}),
])
def test_a_malformed_claude_stream_is_refused(frames):
    from reapi.errors import GatewayError
    from reapi.relay.anthropic.responses_stream import ClaudeResponsesStream

    conv = ClaudeResponsesStream(MODEL, None, {"model": MODEL, "input": "x"})
    with pytest.raises(GatewayError) as ei:
        for f in frames:
            conv.feed(f)
    assert ei.value.status == 502
    # the error event is numbered after the last event sent
    assert orjson.loads(conv.error_event(ei.value, "r").split(b"data: ")[1])["sequence_number"] == conv.seq


def test_a_claude_error_event_is_scrubbed_and_raised():
    from reapi.catalog import Channel
    from reapi.errors import GatewayError
    from reapi.relay.anthropic.responses_stream import ClaudeResponsesStream

    channel = Channel(id=1, name="c", type="anthropic", base_url="http://10.1.2.3:9", api_key="sk-ant-secret",
                      models=(MODEL,), groups=("default",))
    conv = ClaudeResponsesStream(MODEL, channel, {"model": MODEL, "input": "x"})
    assert len(conv.feed(orjson.dumps(_START))) == 2
    with pytest.raises(GatewayError) as ei:
        conv.feed(orjson.dumps({"type": "error", "error": {"type": "overloaded_error",
                                                           "message": "key sk-ant-secret at http://10.1.2.3:9"}}))
    assert "sk-ant-secret" not in ei.value.message and "10.1.2.3" not in ei.value.message


@pytest.mark.parametrize("raw", [
    b"nope", b"[]", b'{"type": "message"}', b'{"type": "message", "content": [{"type": "text", "text": 1}]}',
    b'{"type": "message", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}',
    b'{"type": "error", "error": {"type": "api_error", "message": "boom"}}',
])
def test_a_malformed_claude_answer_is_refused(raw):
    from reapi.errors import GatewayError
    from reapi.relay.anthropic.responses import parse_message

    with pytest.raises(GatewayError) as ei:
        parse_message(raw, MODEL, {"model": MODEL, "input": "x"})
    assert ei.value.status >= 500


def test_malformed_usage_is_dropped_from_the_answer():
    from reapi.relay.anthropic.responses import parse_message

    whole = parse_message(orjson.dumps({"type": "message", "content": [{"type": "text", "text": "hi"}],
                                        "stop_reason": "end_turn", "usage": {"input_tokens": -5, "output_tokens": 2}}),
                          MODEL, {"model": MODEL, "input": "x"})
    assert whole.usage is None and orjson.loads(whole.body)["usage"] is None and whole.text == "hi"


def test_sealed_thinking_round_trips_and_foreign_content_is_dropped():
    from reapi.relay.anthropic.responses import seal, unseal

    block = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
    assert unseal(seal(block)) == block
    assert unseal(seal({"type": "redacted_thinking", "data": "abc"})) == {"type": "redacted_thinking", "data": "abc"}
    for foreign in ("gAAAA-openai-blob", "rcl1.!!!", "rcl1." + "e30=", None, 5):
        assert unseal(foreign) is None


async def test_streamed_thinking_carries_its_signature_when_asked(gateway, upstream):
    from reapi.relay.anthropic.responses import unseal

    s = await setup(gateway, upstream)
    status, raw = await raw_stream(gateway, s["key"], {"model": MODEL, "input": "Hi [mock words=2]",
                                                        "reasoning": {"effort": "low"},
                                                        "include": ["reasoning.encrypted_content"]})
    done = [d["item"] for n, d in parse_sse(raw) if n == "response.output_item.done"]
    assert done[0]["type"] == "reasoning" and done[0]["summary"] == [{"type": "summary_text", "text": THINKING}]
    assert unseal(done[0]["encrypted_content"]) == {"type": "thinking", "thinking": THINKING,
                                                    "signature": THINKING_SIGNATURE}
