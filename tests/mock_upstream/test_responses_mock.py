"""The demo upstream's Responses API, driven in-process with the official openai SDK and raw HTTP."""
from __future__ import annotations

import aiohttp
import openai
import orjson
import pytest

from reapi.mock_upstream import MockConfig, bound_port, start_mock
from reapi.mock_upstream.directives import THINKING_TOKENS, count_tokens
from reapi.mock_upstream.responses_format import ENCRYPTED_PREFIX

KEY = "sk-mock-test"
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture
async def mock():
    runner = await start_mock("127.0.0.1", 0, MockConfig(api_key=KEY))
    url = f"http://127.0.0.1:{bound_port(runner)}"
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    yield url, client
    await client.close()
    await runner.cleanup()


def parse_sse(raw: bytes) -> list[tuple[str, dict]]:
    """(event name, data) of each SSE event; checks the event name equals data.type."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        name, data = lines[0][7:], orjson.loads(lines[1][6:])
        assert data["type"] == name
        out.append((name, data))
    return out


async def test_non_stream_usage_reasoning_and_encrypted_content(mock):
    _, client = mock
    text = "Hello there [mock words=4 cached_tokens=2]"
    r = await client.responses.create(model="gpt-5.5", input=text, instructions="Be brief.",
                                      reasoning={"effort": "low"}, include=["reasoning.encrypted_content"])
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text == " the quick brown fox"
    reasoning = r.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content.startswith(ENCRYPTED_PREFIX)
    u = r.usage
    assert u.input_tokens == count_tokens(text) + count_tokens("Be brief.")
    assert u.input_tokens_details.cached_tokens == 2
    assert u.output_tokens_details.reasoning_tokens == len(THINKING_TOKENS)
    assert u.output_tokens == 4 + len(THINKING_TOKENS) and u.total_tokens == u.input_tokens + u.output_tokens
    # without include there is no encrypted content; without reasoning no reasoning item
    r2 = await client.responses.create(model="gpt-5.5", input="hi", reasoning={"effort": "low"})
    assert r2.output[0].encrypted_content is None
    r3 = await client.responses.create(model="gpt-5.5", input="hi [mock words=2]")
    assert [o.type for o in r3.output] == ["message"] and r3.usage.output_tokens_details.reasoning_tokens == 0


async def test_stream_event_sequence(mock):
    url, _ = mock
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/responses", headers={"Authorization": f"Bearer {KEY}"},
                                                    json={"model": "m", "input": "x [mock words=3]", "stream": True,
                                                          "reasoning": {"effort": "high"}}) as r:
        events = parse_sse(await r.read())
    names = [n for n, _ in events]
    assert names == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.output_item.done", "response.output_item.added", "response.content_part.added",
                     *["response.output_text.delta"] * 3, "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert b"[DONE]" not in orjson.dumps([d for _, d in events])
    final = events[-1][1]["response"]
    assert final["usage"]["output_tokens"] == 3 + len(THINKING_TOKENS)
    assert events[0][1]["response"]["usage"] is None and events[0][1]["response"]["status"] == "in_progress"


async def test_sdk_stream_helper_and_function_call(mock):
    _, client = mock
    async with client.responses.stream(model="gpt-5.5", input="What is the weather?", tools=TOOLS) as stream:
        kinds = [e.type async for e in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and kinds[-1] == "response.completed"
    call = final.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == '{"city":"Tokyo"}'
    # the tool result turn answers with text
    follow = await client.responses.create(model="gpt-5.5", tools=TOOLS, input=[
        {"role": "user", "content": "What is the weather?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert follow.output_text.startswith("Tool result received:")


async def test_stored_responses_background_cancel_delete_and_items(mock):
    _, client = mock
    r = await client.responses.create(model="gpt-5.5", input=[{"role": "user", "content": "one"},
                                                               {"role": "assistant", "content": "two"},
                                                               {"role": "user", "content": "three"}])
    got = await client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    items = await client.responses.input_items.list(r.id)
    assert [i.content[0].text for i in items.data] == ["three", "two", "one"]  # newest first by default
    asc = await client.responses.input_items.list(r.id, order="asc", limit=2)
    assert [i.content[0].text for i in asc.data] == ["one", "two"] and asc.has_more
    chained = await client.responses.create(model="gpt-5.5", input="four", previous_response_id=r.id)
    assert chained.previous_response_id == r.id
    await client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as err:
        await client.responses.create(model="gpt-5.5", input="x", previous_response_id=r.id)
    assert err.value.body["param"] == "previous_response_id"
    # store: false is not kept
    unstored = await client.responses.create(model="gpt-5.5", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)
    # background: queued -> in_progress -> completed with usage, one step per retrieve
    bg = await client.responses.create(model="gpt-5.5", input="bg [mock words=5]", background=True)
    assert bg.status == "queued" and bg.usage is None and bg.output == []
    assert (await client.responses.retrieve(bg.id)).status == "in_progress"
    done = await client.responses.retrieve(bg.id)
    assert done.status == "completed" and done.usage.output_tokens == 5
    with pytest.raises(openai.BadRequestError):
        await client.responses.cancel(bg.id)
    bg2 = await client.responses.create(model="gpt-5.5", input="bg", background=True)
    cancelled = await client.responses.cancel(bg2.id)
    assert cancelled.status == "cancelled" and cancelled.usage is None
    assert (await client.responses.retrieve(bg2.id)).status == "cancelled"


async def test_statuses_and_directives(mock):
    url, client = mock
    r = await client.responses.create(model="gpt-5.5", input="x [mock words=50]", max_output_tokens=16)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 16
    failed = await client.responses.create(model="gpt-5.5", input="x [mock finish=failed]")
    assert failed.status == "failed" and failed.error.code == "server_error"
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(model="gpt-5.5", input="x [mock status=503]")
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="gpt-5.5", input="x [mock nope]")
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as s:
        body = {"model": "m", "input": "x [mock words=4 error_event_after=2]", "stream": True}
        async with s.post(url + "/v1/responses", headers=headers, json=body) as resp:
            events = parse_sse(await resp.read())
        assert [n for n, _ in events][-3:] == ["response.output_text.delta", "response.output_text.delta", "error"]
        assert events[-1][1]["sequence_number"] == len(events) - 1
        body["input"] = "x [mock words=4 drop_after=1]"
        async with s.post(url + "/v1/responses", headers=headers, json=body) as resp:
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        async with s.get(url + "/v1/responses/resp_x", headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
