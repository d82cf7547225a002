"""The mock upstream, driven in-process with the official openai and anthropic SDKs."""
from __future__ import annotations

import asyncio
import binascii
import functools
import gzip
import os
import ssl
import time

import aiohttp
import anthropic
import openai
import orjson
import pytest
import tiktoken

from reapi.mock_upstream import MockConfig, VOCAB, bound_port, parse_directives, start_mock
from reapi.mock_upstream.directives import (
    NO_DIRECTIVES,
    THINKING_TOKENS,
    TOOL_RESULT_PREFIX,
    DirectiveError,
    build_arguments,
    count_tokens,
    reply_words,
)

KEY = "sk-mock-test"


@functools.cache
def _reference_encoding() -> tiktoken.Encoding:
    """tiktoken's o200k_base, built offline from the rank file bundled with bpe_openai
    (tiktoken would download it), so counts are checked by a second implementation."""
    import bpe_openai
    import tiktoken_ext.openai_public as op

    path = os.path.join(os.path.dirname(bpe_openai.__file__), "data", "o200k_base.tiktoken.gz")
    with gzip.open(path) as f:
        lines = f.read().splitlines()
    ranks = {binascii.a2b_base64(tok): int(rank) for tok, rank in map(bytes.split, lines)}
    original = op.load_tiktoken_bpe
    op.load_tiktoken_bpe = lambda *a, **k: ranks
    try:
        spec = op.o200k_base()
    finally:
        op.load_tiktoken_bpe = original
    return tiktoken.Encoding(**spec)


class _Enc:
    def encode(self, text: str, **kw):
        return _reference_encoding().encode(text, **kw)


ENC = _Enc()
WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
                "note": {"type": "string"},
            },
            "required": ["city", "days", "metric"],
        },
    },
}
TIME_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": WEATHER_TOOL_OPENAI["function"]["parameters"],
}
TIME_TOOL_ANTHROPIC = {"name": "get_time", "input_schema": TIME_TOOL_OPENAI["function"]["parameters"]}


_SSL = ssl.create_default_context()  # shared: building one per SDK client costs ~50 ms


def oai_client(base: str, key: str = KEY, **kw) -> openai.AsyncOpenAI:
    kw.setdefault("timeout", 10)
    return openai.AsyncOpenAI(api_key=key, base_url=f"{base}/v1", max_retries=0,
                              http_client=openai.DefaultAsyncHttpxClient(verify=_SSL), **kw)


def ant_client(base: str, key: str = KEY, **kw) -> anthropic.AsyncAnthropic:
    kw.setdefault("timeout", 10)
    return anthropic.AsyncAnthropic(api_key=key, base_url=base, max_retries=0,
                                    http_client=anthropic.DefaultAsyncHttpxClient(verify=_SSL), **kw)


def words(n: int) -> str:
    return "".join(VOCAB[i % len(VOCAB)] for i in range(n))


def o200k(*texts: str) -> int:
    return sum(len(ENC.encode(t, disallowed_special=())) for t in texts)


@pytest.fixture
async def mock():
    runner = await start_mock("127.0.0.1", 0, MockConfig(api_key=KEY))
    base = f"http://127.0.0.1:{bound_port(runner)}"
    try:
        yield base
    finally:
        await runner.cleanup()


@pytest.fixture
async def oai(mock):
    client = oai_client(mock)
    yield client
    await client.close()


@pytest.fixture
async def ant(mock):
    client = ant_client(mock)
    yield client
    await client.close()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str):
    async with http.get(url) as r:
        return await r.json()


async def wait_stats(http, base, pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        stats = await get_json(http, f"{base}/_mock/stats")
        if pred(stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------------------
# Pure helpers
# ------------------------------------------------------------------------------------------


def test_vocabulary_is_one_token_per_word_and_prefixes_stay_exact():
    assert len(VOCAB) == len(set(VOCAB)) >= 50
    for w in VOCAB:
        assert w.startswith(" ") and len(ENC.encode(w)) == 1, w
    for t in TOOL_RESULT_PREFIX + THINKING_TOKENS:
        assert len(ENC.encode(t)) == 1, t
    for n in (1, 2, 12, len(VOCAB), len(VOCAB) + 7, 3 * len(VOCAB)):
        assert len(ENC.encode("".join(reply_words(n)))) == n
        assert len(ENC.encode("".join(TOOL_RESULT_PREFIX + reply_words(n)))) == n + 4
    assert len(reply_words(10_000)) == 10_000
    assert count_tokens("hello world <|endoftext|>") == o200k("hello world <|endoftext|>")


def test_parse_directives():
    assert parse_directives("plain text") is NO_DIRECTIVES
    d = parse_directives("hi [mock status=503] [mock words=3] [mock no_usage hang] [mock finish=length]")
    assert (d.status, d.words, d.no_usage, d.hang, d.finish, d.refusal) == (503, 3, True, True, "length", False)
    d = parse_directives("[mock error_type=overloaded_error error_code=x error_param=p drop_after=2 cached_tokens=9]")
    assert (d.error_type, d.error_code, d.error_param, d.drop_after, d.cached_tokens) == (
        "overloaded_error", "x", "p", 2, 9)
    for bad in ("[mock wordz=3]", "[mock words=x]", "[mock status=42]", "[mock hang=1]", "[mock words=-1]"):
        with pytest.raises(DirectiveError):
            parse_directives(bad)


def test_build_arguments():
    schema = {
        "type": "object",
        "properties": {
            "s": {"type": "string"}, "n": {"type": "number"}, "i": {"type": "integer"}, "b": {"type": "boolean"},
            "e": {"type": "string", "enum": ["c", "f"]}, "opt": {"type": "string"},
            "o": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
        },
        "required": ["s", "n", "i", "b", "e", "o"],
    }
    assert build_arguments(schema) == {"s": "Tokyo", "n": 1, "i": 1, "b": True, "e": "c", "o": {"x": "Tokyo"}}
    assert build_arguments({"type": "object"}) == {}


# ------------------------------------------------------------------------------------------
# OpenAI
# ------------------------------------------------------------------------------------------

MSGS = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "text", "text": "Say hello"}, {"type": "text", "text": "please"}]},
]


async def test_openai_non_stream(oai):
    r = await oai.chat.completions.create(model="gpt-x-echo", messages=MSGS)
    assert r.object == "chat.completion" and r.model == "gpt-x-echo" and r.id.startswith("chatcmpl-")
    c = r.choices[0]
    assert c.message.role == "assistant" and c.message.content == words(12) and c.finish_reason == "stop"
    assert c.logprobs is None
    assert r.usage.completion_tokens == 12
    assert r.usage.prompt_tokens == o200k("You are terse.", "Say hello", "please")
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12
    assert r.usage.prompt_tokens_details.cached_tokens == 0


async def test_openai_stream_with_usage(oai):
    stream = await oai.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hi [mock words=5]"}],
        stream=True, stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert all(c.object == "chat.completion.chunk" and c.model == "m1" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    texts = [c.choices[0].delta.content for c in chunks[1:6]]
    assert texts == list(VOCAB[:5])
    assert chunks[6].choices[0].finish_reason == "stop" and chunks[6].choices[0].delta.content is None
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.prompt_tokens == o200k("hi [mock words=5]")
    assert len(chunks) == 8


async def test_openai_stream_raw_wire(mock, http):
    body = {"model": "m", "messages": [{"role": "user", "content": "x [mock words=2]"}], "stream": True}
    async with http.post(f"{mock}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        raw = (await r.read()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    parsed = [orjson.loads(e[6:]) for e in events[:-1]]
    assert len(parsed) == 4 and all("usage" not in p for p in parsed)  # no include_usage -> no usage key


async def test_openai_tool_call(oai):
    r = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL_OPENAI, TIME_TOOL_OPENAI]
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and c.message.content is None
    (call,) = c.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Tokyo", "days": 1, "metric": True}
    assert r.usage.completion_tokens == o200k("get_weather", call.function.arguments)

    # named tool_choice, streamed
    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "time?"}], tools=[WEATHER_TOOL_OPENAI, TIME_TOOL_OPENAI],
        tool_choice={"type": "function", "function": {"name": "get_time"}}, stream=True,
    )
    chunks = [c async for c in stream]
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    tc = first.tool_calls[0]
    assert (tc.index, tc.type, tc.function.name, tc.function.arguments) == (0, "function", "get_time", "")
    assert tc.id.startswith("call_")
    pieces = [c.choices[0].delta.tool_calls[0] for c in chunks[1:-1]]
    assert len(pieces) >= 2 and all(p.index == 0 and p.id is None for p in pieces)
    assert orjson.loads("".join(p.function.arguments for p in pieces)) == {"zone": "Tokyo"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # tool_choice none -> text
    r = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], tools=[WEATHER_TOOL_OPENAI], tool_choice="none"
    )
    assert r.choices[0].message.content == words(12) and r.choices[0].finish_reason == "stop"


async def test_openai_tool_result_reply(oai):
    args = '{"city":"Tokyo","days":1,"metric":true}'
    msgs = [
        {"role": "user", "content": "weather? [mock words=3]"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 25C"},
    ]
    r = await oai.chat.completions.create(model="m", messages=msgs, tools=[WEATHER_TOOL_OPENAI])
    assert r.choices[0].message.content == "Tool result received:" + words(3)
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 4 + 3
    assert r.usage.prompt_tokens == o200k("weather? [mock words=3]", args, "sunny, 25C")


async def test_openai_logprobs(oai):
    r = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock words=4]"}], logprobs=True, top_logprobs=3
    )
    content = r.choices[0].logprobs.content
    assert [e.token for e in content] == list(VOCAB[:4])
    for e in content:
        assert e.logprob < 0 and bytes(e.bytes).decode() == e.token
        assert len(e.top_logprobs) == 3 and e.top_logprobs[0].token == e.token
        assert len({t.token for t in e.top_logprobs}) == 3
    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock words=4]"}], logprobs=True, top_logprobs=2,
        stream=True,
    )
    chunks = [c async for c in stream]
    lps = [c.choices[0].logprobs.content for c in chunks if c.choices[0].delta.content]
    assert [lp[0].token for lp in lps] == list(VOCAB[:4])
    assert all(len(lp) == 1 and len(lp[0].top_logprobs) == 2 for lp in lps)


async def test_openai_length_cap(oai):
    r = await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], max_tokens=5)
    assert r.choices[0].message.content == words(5) and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    r = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], max_tokens=50, max_completion_tokens=3
    )
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"
    r = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock words=4]"}], max_completion_tokens=4
    )
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens == 4


async def test_openai_usage_directives(oai):
    r = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock prompt_tokens=1000] [mock cached_tokens=600]"}]
    )
    assert r.usage.prompt_tokens == 1000 and r.usage.prompt_tokens_details.cached_tokens == 600
    r = await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x [mock no_usage]"}])
    assert r.usage is None and r.choices[0].message.content == words(12)
    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock no_usage words=2]"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert len(chunks) == 4 and all(c.usage is None and c.choices for c in chunks)
    r = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock finish=content_filter words=2]"}]
    )
    assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content == words(2)
    r = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock finish=length]"}]
    )
    assert r.choices[0].finish_reason == "length"


async def test_openai_delays(oai):
    t0 = time.perf_counter()
    await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x [mock delay_ms=200]"}])
    assert time.perf_counter() - t0 >= 0.19
    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock chunk_delay_ms=40 words=4]"}], stream=True
    )
    stamps = []
    async for _ in stream:
        stamps.append(time.perf_counter())
    assert len(stamps) == 6
    # Chunk i is sent no earlier than i x 40 ms after the first (a late chunk shortens the next gap the
    # client sees, so single gaps say less than the running total).
    since_first = [t - stamps[0] for t in stamps[1:]]
    assert all(s >= 0.04 * (i + 1) - 0.008 for i, s in enumerate(since_first)), since_first


async def test_openai_drop_after(oai, mock, http):
    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock drop_after=3]"}], stream=True
    )
    got = []
    with pytest.raises(openai.APIConnectionError):
        async for c in stream:
            got.append(c.choices[0].delta.content)
    assert got == ["", *VOCAB[:3]]
    stats = await wait_stats(http, mock, lambda s: s["streams_dropped"] == 1)
    assert stats["streams_dropped"] == 1 and stats["streams_completed"] == 0 and stats["streams_cancelled"] == 0


async def test_openai_error_event_after(oai):
    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock error_event_after=2] [mock error_code=boom]"}],
        stream=True,
    )
    got = []
    with pytest.raises(openai.APIError) as ei:
        async for c in stream:
            got.append(c.choices[0].delta.content)
    assert got == ["", *VOCAB[:2]]
    assert ei.value.type == "server_error" and ei.value.code == "boom"


@pytest.mark.parametrize(
    "status,exc,etype",
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "authentication_error"),
        (403, openai.PermissionDeniedError, "permission_error"),
        (404, openai.NotFoundError, "not_found_error"),
        (429, openai.RateLimitError, "rate_limit_error"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
async def test_openai_error_statuses(oai, status, exc, etype):
    with pytest.raises(exc) as ei:
        await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": f"x [mock status={status}]"}])
    assert ei.value.status_code == status and ei.value.type == etype
    assert isinstance(ei.value.body, dict) and ei.value.body["message"]


async def test_openai_error_overrides_and_stream_status(oai):
    with pytest.raises(openai.RateLimitError) as ei:
        await oai.chat.completions.create(
            model="m", stream=True,
            messages=[{"role": "user", "content": "x [mock status=429 error_type=insufficient_quota "
                                                  "error_code=insufficient_quota error_param=model]"}],
        )
    assert (ei.value.type, ei.value.code, ei.value.param) == ("insufficient_quota", "insufficient_quota", "model")


async def test_openai_bad_requests(oai, mock):
    with pytest.raises(openai.BadRequestError) as ei:
        await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x [mock wordz=1]"}])
    assert "wordz" in ei.value.message
    with pytest.raises(openai.BadRequestError):
        await oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], tools=[WEATHER_TOOL_OPENAI],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    bad = oai_client(mock, "sk-wrong")
    with pytest.raises(openai.AuthenticationError) as ei:
        await bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 401 and ei.value.code == "invalid_api_key"
    await bad.close()


async def test_openai_hang_until_client_leaves(mock):
    client = oai_client(mock, timeout=0.3)
    t0 = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x [mock hang]"}])
    assert 0.25 <= time.perf_counter() - t0 < 2
    await client.close()


async def test_models_list(oai):
    page = await oai.models.list()
    ids = [m.id for m in page.data]
    assert "gpt-4o-mini" in ids and all(m.object == "model" for m in page.data)


# ------------------------------------------------------------------------------------------
# Anthropic
# ------------------------------------------------------------------------------------------


async def test_anthropic_non_stream(ant):
    r = await ant.messages.create(
        model="claude-echo", max_tokens=100, system="Be brief.",
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
    )
    assert r.type == "message" and r.role == "assistant" and r.model == "claude-echo" and r.id.startswith("msg_")
    assert [b.type for b in r.content] == ["text"] and r.content[0].text == words(12)
    assert r.stop_reason == "end_turn" and r.stop_sequence is None
    assert r.usage.input_tokens == o200k("Be brief.", "Hello there") and r.usage.output_tokens == 12
    assert r.usage.cache_read_input_tokens == 0 and r.usage.cache_creation_input_tokens == 0


async def test_anthropic_stream_helper_and_event_order(ant):
    async with ant.messages.stream(
        model="c", max_tokens=100, messages=[{"role": "user", "content": "hi [mock words=4]"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == words(4) and final.content[0].text == words(4)
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 4
    assert final.usage.input_tokens == o200k("hi [mock words=4]")

    raw = await ant.messages.create(
        model="c", max_tokens=100, messages=[{"role": "user", "content": "hi [mock words=2]"}], stream=True
    )
    types = [e.type async for e in raw]
    assert types == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # ping is consumed by the SDK


async def test_anthropic_raw_wire(mock, http):
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body = {"model": "c", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "x [mock words=1]"}]}
    async with http.post(f"{mock}/v1/messages", json=body, headers=headers) as r:
        assert r.status == 200 and "request-id" in r.headers  # x-api-key accepted
        raw = (await r.read()).decode()
    async with http.post(f"{mock}/v1/messages", json=body, headers={**headers, "x-api-key": "wrong"}) as r:
        assert r.status == 401
        assert (await r.json())["error"]["type"] == "authentication_error"
    events = [e.split("\n") for e in raw.split("\n\n") if e]
    names = [e[0].removeprefix("event: ") for e in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    for name, data in ((e[0][7:], orjson.loads(e[1][6:])) for e in events):
        assert data["type"] == name
    # no_usage: usage omitted everywhere
    body["messages"][0]["content"] = "x [mock no_usage]"
    async with http.post(f"{mock}/v1/messages", json=body, headers=headers) as r:
        raw = (await r.read()).decode()
    assert "usage" not in raw and "message_stop" in raw
    body["stream"] = False
    async with http.post(f"{mock}/v1/messages", json=body, headers=headers) as r:
        assert "usage" not in await r.json()


async def test_anthropic_thinking(ant):
    r = await ant.messages.create(
        model="c", max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think [mock words=3]"}],
    )
    assert [b.type for b in r.content] == ["thinking", "text"]
    assert r.content[0].thinking == "".join(THINKING_TOKENS) and r.content[0].signature
    assert r.usage.output_tokens == len(THINKING_TOKENS) + 3
    async with ant.messages.stream(
        model="c", max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think [mock words=3]"}],
    ) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "".join(THINKING_TOKENS) and final.content[0].signature == r.content[0].signature
    assert final.content[1].text == words(3) and final.usage.output_tokens == len(THINKING_TOKENS) + 3


async def test_anthropic_tool_use(ant):
    r = await ant.messages.create(
        model="c", max_tokens=200, tools=[WEATHER_TOOL_ANTHROPIC, TIME_TOOL_ANTHROPIC],
        messages=[{"role": "user", "content": "weather?"}],
    )
    assert r.stop_reason == "tool_use"
    (block,) = r.content
    assert block.type == "tool_use" and block.id.startswith("toolu_") and block.name == "get_weather"
    assert block.input == {"city": "Tokyo", "days": 1, "metric": True}

    async with ant.messages.stream(
        model="c", max_tokens=200, tools=[WEATHER_TOOL_ANTHROPIC, TIME_TOOL_ANTHROPIC],
        tool_choice={"type": "tool", "name": "get_time"}, messages=[{"role": "user", "content": "time?"}],
    ) as stream:
        json_deltas = [e async for e in stream if e.type == "content_block_delta"]
        final = await stream.get_final_message()
    assert len([e for e in json_deltas if e.delta.partial_json]) >= 2
    assert final.content[0].name == "get_time" and final.content[0].input == {"zone": "Tokyo"}
    assert final.stop_reason == "tool_use"

    r = await ant.messages.create(
        model="c", max_tokens=200, tools=[WEATHER_TOOL_ANTHROPIC], tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "x"}],
    )
    assert r.content[0].type == "text" and r.stop_reason == "end_turn"


async def test_anthropic_tool_result_reply(ant):
    r = await ant.messages.create(
        model="c", max_tokens=200, tools=[WEATHER_TOOL_ANTHROPIC],
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Tokyo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": "sunny [mock words=2]"}]},
        ],
    )
    assert r.content[0].text == "Tool result received:" + words(2) and r.stop_reason == "end_turn"
    assert r.usage.output_tokens == 6
    assert r.usage.input_tokens == o200k("weather?", '{"city":"Tokyo"}', "sunny [mock words=2]")


async def test_anthropic_cap_refusal_and_cache_usage(ant):
    r = await ant.messages.create(model="c", max_tokens=3, messages=[{"role": "user", "content": "x"}])
    assert r.stop_reason == "max_tokens" and r.content[0].text == words(3) and r.usage.output_tokens == 3
    r = await ant.messages.create(model="c", max_tokens=50, messages=[{"role": "user", "content": "x [mock refusal]"}])
    assert r.stop_reason == "refusal"
    r = await ant.messages.create(
        model="c", max_tokens=50,
        messages=[{"role": "user", "content": "x [mock prompt_tokens=10 cached_tokens=700 cache_write_tokens=300]"}],
    )
    u = r.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (10, 700, 300)
    async with ant.messages.stream(
        model="c", max_tokens=50,
        messages=[{"role": "user", "content": "x [mock prompt_tokens=10 cached_tokens=700 cache_write_tokens=300]"}],
    ) as stream:
        f = await stream.get_final_message()
    assert (f.usage.input_tokens, f.usage.cache_read_input_tokens, f.usage.cache_creation_input_tokens) == (10, 700, 300)
    r = await ant.messages.create(
        model="c", max_tokens=50, messages=[{"role": "user", "content": "x [mock finish=length]"}]
    )
    assert r.stop_reason == "max_tokens"


@pytest.mark.parametrize(
    "status,exc,etype",
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.InternalServerError, "overloaded_error"),
    ],
)
async def test_anthropic_error_statuses(ant, status, exc, etype):
    with pytest.raises(exc) as ei:
        await ant.messages.create(model="c", max_tokens=10, messages=[{"role": "user", "content": f"[mock status={status}]"}])
    assert ei.value.status_code == status
    body = ei.value.body
    assert body["type"] == "error" and body["error"]["type"] == etype and body["error"]["message"]


async def test_anthropic_auth_version_and_validation(ant, mock, http):
    bad = ant_client(mock, "sk-wrong")
    with pytest.raises(anthropic.AuthenticationError) as ei:
        await bad.messages.create(model="c", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert ei.value.body["error"]["type"] == "authentication_error"
    await bad.close()
    body = {"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    async with http.post(f"{mock}/v1/messages", json=body, headers={"x-api-key": KEY}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError) as ei:
        await ant.messages.create(model="c", max_tokens=10, messages=[{"role": "user", "content": "[mock status=nope]"}])
    assert "status" in ei.value.body["error"]["message"]
    del body["max_tokens"]
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    async with http.post(f"{mock}/v1/messages", json=body, headers=headers) as r:
        assert r.status == 400
        err = await r.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in err["error"]["message"]


async def test_anthropic_stream_error_and_drop(ant):
    raw = await ant.messages.create(
        model="c", max_tokens=100, stream=True,
        messages=[{"role": "user", "content": "x [mock error_event_after=2]"}],
    )
    seen = []
    with pytest.raises(anthropic.APIStatusError) as ei:
        async for e in raw:
            seen.append(e.type)
    assert seen.count("content_block_delta") == 2
    assert ei.value.body["type"] == "error" and ei.value.body["error"]["type"] == "overloaded_error"

    raw = await ant.messages.create(
        model="c", max_tokens=100, stream=True, messages=[{"role": "user", "content": "x [mock drop_after=1]"}]
    )
    seen = []
    with pytest.raises(Exception) as ei:  # the SDK lets the transport's error through unwrapped
        async for e in raw:
            seen.append(e.type)
    assert isinstance(ei.value, anthropic.APIConnectionError) or type(ei.value).__name__ == "RemoteProtocolError"
    assert seen == ["message_start", "content_block_start", "content_block_delta"]


# ------------------------------------------------------------------------------------------
# Introspection and stats
# ------------------------------------------------------------------------------------------


async def test_stats_count_cancelled_stream_once(oai, mock, http):
    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock words=200 chunk_delay_ms=30]"}], stream=True
    )
    n = 0
    async for _ in stream:
        n += 1
        if n == 3:
            break
    await stream.close()
    stats = await wait_stats(http, mock, lambda s: s["streams_cancelled"] >= 1)
    assert stats["streams_started"] == 1 and stats["streams_cancelled"] == 1 and stats["streams_completed"] == 0
    await asyncio.sleep(0.15)
    stats = await get_json(http, f"{mock}/_mock/stats")
    assert stats["streams_cancelled"] == 1 and stats["requests"] == 1

    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock words=2]"}], stream=True
    )
    assert len([c async for c in stream]) == 4
    stats = await wait_stats(http, mock, lambda s: s["streams_completed"] == 1)
    assert stats == {"requests": 2, "streams_started": 2, "streams_completed": 1, "streams_cancelled": 1,
                     "streams_dropped": 0}


async def test_cancel_during_long_delay_is_noticed(oai, mock, http):
    # client leaves while the mock waits between chunks: counted once, without a write attempt
    stream = await oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x [mock words=3 chunk_delay_ms=5000]"}], stream=True
    )
    async for _ in stream:
        break
    await stream.close()
    stats = await wait_stats(http, mock, lambda s: s["streams_cancelled"] == 1, timeout=2)
    assert stats["streams_cancelled"] == 1 and stats["streams_completed"] == 0


async def test_recorded_requests_and_reset(oai, ant, mock, http):
    await oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "one"}])
    await ant.messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "two"}])
    reqs = await get_json(http, f"{mock}/_mock/requests")
    assert [r["path"] for r in reqs] == ["/v1/chat/completions", "/v1/messages"]
    assert reqs[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert reqs[1]["headers"]["authorization"] == f"Bearer {KEY}" and reqs[1]["headers"]["anthropic-version"]
    assert reqs[0]["body"]["messages"][0]["content"] == "one" and reqs[1]["body"]["max_tokens"] == 5
    async with http.delete(f"{mock}/_mock/requests") as r:
        assert r.status == 200
    assert await get_json(http, f"{mock}/_mock/requests") == []
    assert (await get_json(http, f"{mock}/_mock/stats"))["requests"] == 2

    headers = {"Authorization": f"Bearer {KEY}"}
    for i in range(205):
        body = {"model": "m", "messages": [{"role": "user", "content": f"{i} [mock prompt_tokens=1 words=1]"}]}
        async with http.post(f"{mock}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 200
            await r.read()
    reqs = await get_json(http, f"{mock}/_mock/requests")
    assert len(reqs) == 200 and reqs[-1]["body"]["messages"][0]["content"].startswith("204 ")
    assert reqs[0]["body"]["messages"][0]["content"].startswith("5 ")
    async with http.post(f"{mock}/_mock/reset") as r:
        assert r.status == 200
    assert await get_json(http, f"{mock}/_mock/requests") == []
    assert await get_json(http, f"{mock}/_mock/stats") == {
        "requests": 0, "streams_started": 0, "streams_completed": 0, "streams_cancelled": 0, "streams_dropped": 0}


async def test_config_defaults_without_key():
    runner = await start_mock("127.0.0.1", 0, MockConfig(words=3, latency_ms=100))
    base = f"http://127.0.0.1:{bound_port(runner)}"
    try:
        client = oai_client(base, "anything")
        t0 = time.perf_counter()
        r = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert time.perf_counter() - t0 >= 0.09
        assert r.choices[0].message.content == words(3)
        await client.close()
    finally:
        await runner.cleanup()
