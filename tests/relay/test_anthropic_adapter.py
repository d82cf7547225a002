"""Unit tests of the `anthropic` channel adapter (pure transformations, no I/O)."""
from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from reapi.catalog import Channel
from reapi.errors import GatewayError
from reapi.relay import anthropic as mod
from reapi.relay.anthropic import ADAPTER, IGNORED_PARAMS, THINKING_BUDGETS, UNSUPPORTED_PARAMS
from reapi.relay.base import Usage

KEY = "sk-ant-api03-SECRETSECRETSECRET"
BASE = "https://claude.internal.example:8443"
CH = Channel(id=1, name="claude", type="anthropic", base_url=BASE, api_key=KEY,
             models=("claude",), groups=("default",))


def build(body: dict, *, stream: bool = False, max_tokens: int | None = 1000, channel: Channel = CH) -> dict:
    req = ADAPTER.build_request(channel, body, "claude-up", stream=stream, max_tokens=max_tokens)
    return orjson.loads(req.body)


def user(text="hi"):
    return {"role": "user", "content": text}


def rejects(body: dict, param: str, max_tokens: int | None = 1000) -> GatewayError:
    with pytest.raises(GatewayError) as ei:
        build(body, max_tokens=max_tokens)
    e = ei.value
    assert (e.status, e.type, e.param) == (400, "invalid_request_error", param), e
    return e


# ---------------------------------------------------------------- request basics

def test_url_headers_and_minimal_body():
    body = {"model": "claude", "messages": [user()]}
    req = ADAPTER.build_request(CH, body, "claude-up", stream=False, max_tokens=123)
    assert req.url == BASE + "/v1/messages"
    assert req.headers == {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    assert orjson.loads(req.body) == {
        "model": "claude-up", "max_tokens": 123,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


@pytest.mark.parametrize("base", ["https://api.anthropic.com", "https://api.anthropic.com/",
                                  "https://api.anthropic.com/v1", "https://api.anthropic.com/v1/"])
def test_url_strips_trailing_v1(base):
    ch = Channel(id=1, name="c", type="anthropic", base_url=base, api_key="k", models=(), groups=())
    req = ADAPTER.build_request(ch, {"messages": [user()]}, "m", stream=False, max_tokens=10)
    assert req.url == "https://api.anthropic.com/v1/messages"


def test_body_not_mutated():
    body = {"model": "claude", "messages": [{"role": "system", "content": "s"}, user(), user("again")],
            "tools": [{"type": "function", "function": {"name": "f"}}], "parallel_tool_calls": False,
            "stop": "x", "user": "u1"}
    before = copy.deepcopy(body)
    build(body)
    assert body == before


def test_max_tokens_resolution():
    assert build({"messages": [user()]}, max_tokens=77)["max_tokens"] == 77
    assert build({"messages": [user()], "max_completion_tokens": 55, "max_tokens": 66}, max_tokens=None)["max_tokens"] == 55
    assert build({"messages": [user()], "max_tokens": 66}, max_tokens=None)["max_tokens"] == 66
    assert build({"messages": [user()]}, max_tokens=None)["max_tokens"] == 4096
    # the billing decision wins over the client's value
    assert build({"messages": [user()], "max_completion_tokens": 5000}, max_tokens=300)["max_tokens"] == 300


def test_stream_flag():
    assert build({"messages": [user()]}, stream=True)["stream"] is True
    assert "stream" not in build({"messages": [user()], "stream": False})


# ---------------------------------------------------------------- messages

def test_system_and_developer_go_to_top_level_in_order():
    out = build({"messages": [
        {"role": "system", "content": "one"},
        {"role": "developer", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "three"}]},
        user("q"),
        {"role": "system", "content": "four"},
        {"role": "assistant", "content": "a"},
    ]})
    assert out["system"] == [{"type": "text", "text": t} for t in ("one", "two", "three", "four")]
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}]},
    ]


def test_no_system_field_without_system_messages():
    assert "system" not in build({"messages": [user()]})


def test_consecutive_same_role_turns_merge():
    out = build({"messages": [
        user("a"), {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"}, {"role": "assistant", "content": "d"},
        {"role": "system", "content": "sys in between"},
        {"role": "assistant", "content": "e"},
        user("f"),
    ]})
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": t} for t in "cde"]},
        {"role": "user", "content": [{"type": "text", "text": "f"}]},
    ]


def test_empty_text_parts_are_skipped():
    out = build({"messages": [user("q"), {"role": "assistant", "content": "",
                                          "tool_calls": [{"id": "t1", "type": "function",
                                                          "function": {"name": "f", "arguments": "{}"}}]}]})
    assert out["messages"][1] == {"role": "assistant",
                                  "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}


def test_tool_round_trip_history():
    out = build({"messages": [
        user("weather in Paris and Rome?"),
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "toolu_2", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Rome", "units": ["c"]}'}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "21C"}]},
        user("thanks"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_3", "type": "function", "function": {"name": "noargs", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "toolu_3", "content": ""},
    ]})
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris and Rome?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome", "units": ["c"]}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "21C"}]},
            {"type": "text", "text": "thanks"},
        ]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_3", "name": "noargs", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3"}]},
    ]


@pytest.mark.parametrize("args", ["{not json", "[1, 2]", "42", '"str"'])
def test_invalid_tool_call_arguments(args):
    rejects({"messages": [user(), {"role": "assistant", "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": args}}]}]},
        "messages[1].tool_calls")


def test_tool_message_needs_tool_call_id():
    rejects({"messages": [user(), {"role": "tool", "content": "x"}]}, "messages[1].tool_call_id")


def test_images_both_kinds():
    out = build({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}},
    ]}]})
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}},
    ]


@pytest.mark.parametrize("url", ["data:image/tiff;base64,AAAA", "data:image/png,rawnotbase64",
                                 "ftp://example.com/a.png", "file:///etc/passwd", ""])
def test_bad_images(url):
    rejects({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]},
            "messages[0].content")


def test_pdf_file_part_and_rejected_parts():
    out = build({"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}]}]})
    assert out["messages"][0]["content"] == [{"type": "document", "title": "a.pdf", "source": {
        "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]
    rejects({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
            "messages[0].content")
    rejects({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}, "messages[0].content")
    rejects({"messages": [{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}}]}, user()]}, "messages[0].content")


def test_rejected_message_shapes():
    rejects({"messages": [user(), {"role": "function", "name": "f", "content": "x"}]}, "messages[1].role")
    rejects({"messages": [user(), {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]},
            "messages[1].function_call")
    rejects({"messages": [user(), {"role": "assistant", "audio": {"id": "a1"}}]}, "messages[1].audio")
    rejects({"messages": [user(), {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "custom", "custom": {"name": "x", "input": "y"}}]}]}, "messages[1].tool_calls")


# ---------------------------------------------------------------- tools

TOOLS = [
    {"type": "function", "function": {"name": "weather", "description": "Get weather",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "now", "strict": True}},
]


def test_tools_converted():
    out = build({"messages": [user()], "tools": TOOLS})
    assert out["tools"] == [
        {"name": "weather", "description": "Get weather",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}, "strict": True},
    ]
    assert "tool_choice" not in out


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "weather"}}, {"type": "tool", "name": "weather"}),
])
def test_tool_choice(choice, expected):
    assert build({"messages": [user()], "tools": TOOLS, "tool_choice": choice})["tool_choice"] == expected
    if expected["type"] != "none":
        got = build({"messages": [user()], "tools": TOOLS, "tool_choice": choice, "parallel_tool_calls": False})
        assert got["tool_choice"] == {**expected, "disable_parallel_tool_use": True}


def test_parallel_tool_calls():
    assert build({"messages": [user()], "tools": TOOLS, "parallel_tool_calls": False})["tool_choice"] == {
        "type": "auto", "disable_parallel_tool_use": True}
    assert "tool_choice" not in build({"messages": [user()], "tools": TOOLS, "parallel_tool_calls": True})
    assert "tool_choice" not in build({"messages": [user()], "parallel_tool_calls": False})
    assert build({"messages": [user()], "tools": TOOLS, "tool_choice": "none",
                  "parallel_tool_calls": False})["tool_choice"] == {"type": "none"}


def test_tool_errors():
    rejects({"messages": [user()], "tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type")
    rejects({"messages": [user()], "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name")
    rejects({"messages": [user()], "tool_choice": "required"}, "tool_choice")
    rejects({"messages": [user()], "tools": TOOLS,
             "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}},
            "tool_choice")
    # auto / none without tools are no-ops
    assert "tool_choice" not in build({"messages": [user()], "tool_choice": "none"})


# ---------------------------------------------------------------- sampling

def test_stop_temperature_top_p_user():
    out = build({"messages": [user()], "stop": "END", "temperature": 0.3, "top_p": 0.9, "user": "u-1"})
    assert out["stop_sequences"] == ["END"]
    assert out["temperature"] == 0.3 and out["top_p"] == 0.9
    assert out["metadata"] == {"user_id": "u-1"}
    assert build({"messages": [user()], "stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]
    assert "stop_sequences" not in build({"messages": [user()], "stop": []})
    assert build({"messages": [user()], "temperature": 0})["temperature"] == 0
    assert build({"messages": [user()], "top_p": 0})["top_p"] == 0


def test_neutral_sampling_values_not_sent():
    # OpenAI clients often send both defaults; recent Claude models reject temperature + top_p together.
    out = build({"messages": [user()], "temperature": 1, "top_p": 1})
    assert "temperature" not in out and "top_p" not in out
    out = build({"messages": [user()], "temperature": 1.0, "top_p": 0.5})
    assert "temperature" not in out and out["top_p"] == 0.5
    assert build({"messages": [user()], "safety_identifier": "h1"})["metadata"] == {"user_id": "h1"}
    assert build({"messages": [user()], "safety_identifier": "h1", "user": "u"})["metadata"] == {"user_id": "u"}


def test_temperature_above_one_rejected():
    e = rejects({"messages": [user()], "temperature": 1.5}, "temperature")
    assert "between 0 and 1" in e.message


# ---------------------------------------------------------------- thinking

@pytest.mark.parametrize("effort, max_tokens, budget", [
    ("minimal", 4096, 1024), ("low", 4096, 2048), ("medium", 4096, 2048), ("high", 4096, 2048),
    ("xhigh", 4096, 2048), ("max", 4096, 2048),
    ("minimal", 16384, 1024), ("low", 16384, 2048), ("medium", 16384, 8192), ("high", 16384, 8192),
    ("xhigh", 16384, 8192),
    ("minimal", 64000, 1024), ("low", 64000, 2048), ("medium", 64000, 8192), ("high", 64000, 16384),
    ("xhigh", 64000, 32000), ("max", 64000, 32000),
    ("high", 1025, 1024), ("high", 1500, 1024),
])
def test_thinking_budgets(effort, max_tokens, budget):
    out = build({"messages": [user()], "reasoning_effort": effort}, max_tokens=max_tokens)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert MIN_OK <= budget < max_tokens


MIN_OK = 1024


def test_thinking_budget_nominal_table():
    assert THINKING_BUDGETS == {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384,
                                "xhigh": 32768, "max": 65536}
    for effort, nominal in THINKING_BUDGETS.items():
        assert mod.thinking_budget(effort, 10 * nominal) == nominal


def test_thinking_default_max_tokens():
    out = build({"messages": [user()], "reasoning_effort": "high"}, max_tokens=None)
    assert out["max_tokens"] == 4096 and out["thinking"]["budget_tokens"] == 2048


def test_no_thinking():
    assert "thinking" not in build({"messages": [user()], "reasoning_effort": "none", "temperature": 0.2})
    assert "thinking" not in build({"messages": [user()]})


def test_thinking_needs_room():
    rejects({"messages": [user()], "reasoning_effort": "low"}, "reasoning_effort", max_tokens=1024)
    rejects({"messages": [user()], "reasoning_effort": "bogus"}, "reasoning_effort", max_tokens=8000)


def test_thinking_drops_neutral_sampling_and_rejects_the_rest():
    out = build({"messages": [user()], "reasoning_effort": "low", "temperature": 1, "top_p": 1}, max_tokens=8000)
    assert "temperature" not in out and "top_p" not in out and "thinking" in out
    rejects({"messages": [user()], "reasoning_effort": "low", "temperature": 0.2}, "temperature", max_tokens=8000)
    rejects({"messages": [user()], "reasoning_effort": "low", "top_p": 0.5}, "top_p", max_tokens=8000)


def test_thinking_with_forced_tool_rejected():
    rejects({"messages": [user()], "reasoning_effort": "low", "tools": TOOLS, "tool_choice": "required"},
            "tool_choice", max_tokens=8000)
    out = build({"messages": [user()], "reasoning_effort": "low", "tools": TOOLS, "tool_choice": "auto"},
                max_tokens=8000)
    assert out["tool_choice"] == {"type": "auto"}


# ---------------------------------------------------------------- parameter classification

REJECTED_VALUES = [
    ("n", 2), ("logprobs", True), ("top_logprobs", 3), ("logit_bias", {"50256": -100}),
    ("presence_penalty", 0.5), ("frequency_penalty", -0.5), ("seed", 7),
    ("audio", {"voice": "alloy", "format": "wav"}), ("modalities", ["text", "audio"]),
    ("prediction", {"type": "content", "content": "x"}),
    ("functions", [{"name": "f", "parameters": {}}]), ("function_call", "auto"),
    ("web_search_options", {}), ("moderation", {"model": "omni-moderation-latest"}),
]


@pytest.mark.parametrize("param, value", REJECTED_VALUES)
def test_rejected_params(param, value):
    e = rejects({"messages": [user()], param: value}, param)
    assert param in UNSUPPORTED_PARAMS
    assert "not supported" in e.message and e.code == "unsupported_parameter"


def test_every_unsupported_param_is_tested():
    assert {p for p, _ in REJECTED_VALUES} == UNSUPPORTED_PARAMS


@pytest.mark.parametrize("param, value", [
    ("n", 1), ("logprobs", False), ("top_logprobs", 0), ("logit_bias", {}), ("presence_penalty", 0),
    ("frequency_penalty", 0.0), ("response_format", {"type": "text"}), ("modalities", ["text"]),
    ("seed", None), ("audio", None), ("functions", None),
])
def test_neutral_values_of_rejectable_params_pass(param, value):
    assert build({"messages": [user()], param: value})["messages"]


def test_ignored_params_are_dropped():
    body = {"messages": [user()], "store": True, "metadata": {"k": "v"}, "service_tier": "auto",
            "stream_options": {"include_usage": True}, "parallel_tool_calls": True, "prompt_cache_key": "p",
            "verbosity": "low", "prompt_cache_options": {"mode": "implicit"}, "prompt_cache_retention": "24h",
            "group": "default"}
    assert set(body) - {"messages", "parallel_tool_calls"} == IGNORED_PARAMS
    assert build(body) == build({"messages": [user()]})


def test_unknown_param_rejected():
    e = rejects({"messages": [user()], "top_k": 5}, "top_k")
    assert e.code == "unknown_parameter" and e.message == "Unrecognized request argument supplied: top_k"
    assert build({"messages": [user()], "top_k": None})  # null means absent


def test_classification_is_disjoint_and_documented():
    groups = [mod.HONOURED_PARAMS, UNSUPPORTED_PARAMS, IGNORED_PARAMS]
    assert sum(len(g) for g in groups) == len(frozenset().union(*groups))
    doc = (Path(__file__).parents[2] / "docs" / "anthropic.md").read_text()  # the rules moved there
    for name in frozenset().union(*groups):
        assert name in doc, name


# ---------------------------------------------------------------- parse_response

def message(content, stop_reason="end_turn", usage=None):
    return orjson.dumps({
        "id": "msg_01ABC", "type": "message", "role": "assistant", "model": "claude-up",
        "content": content, "stop_reason": stop_reason, "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 5},
    })


def parse(raw):
    out, usage = ADAPTER.parse_response(raw, "claude")
    ChatCompletion.model_validate_json(out)
    return orjson.loads(out), usage


def test_parse_text():
    out, usage = parse(message([{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}]))
    assert out["id"] == "chatcmpl-msg_01ABC" and out["object"] == "chat.completion"
    assert out["model"] == "claude" and isinstance(out["created"], int)
    assert out["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": "Hello world", "refusal": None}}]
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                            "prompt_tokens_details": {"cached_tokens": 0}}
    assert usage == Usage(prompt_tokens=10, completion_tokens=5, cached_tokens=0, cache_write_tokens=0)


def test_parse_tool_use():
    out, _ = parse(message([
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
    ], "tool_use"))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
        {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
    assert orjson.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    parsed = ChatCompletion.model_validate_json(ADAPTER.parse_response(message([
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}], "tool_use"), "m")[0])
    assert parsed.choices[0].message.content == "Let me check."
    assert parsed.choices[0].message.tool_calls[0].function.name == "weather"


def test_parse_thinking():
    out, _ = parse(message([
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "42"},
    ]))
    msg = out["choices"][0]["message"]
    assert msg["content"] == "42" and msg["reasoning_content"] == "Let me think."


def test_parse_empty_content_is_empty_string():
    out, _ = parse(message([], "max_tokens"))
    assert out["choices"][0]["message"]["content"] == ""
    assert out["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("model_context_window_exceeded", "length"),
    (None, "stop"), ("something_new", "stop"),
])
def test_parse_stop_reasons(stop_reason, finish):
    out, _ = parse(message([{"type": "text", "text": "x"}], stop_reason))
    assert out["choices"][0]["finish_reason"] == finish


def test_parse_cache_usage_arithmetic():
    out, usage = parse(message([{"type": "text", "text": "x"}], usage={
        "input_tokens": 12, "cache_read_input_tokens": 3000, "cache_creation_input_tokens": 500,
        "output_tokens": 40, "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 0}}))
    assert usage == Usage(prompt_tokens=3512, completion_tokens=40, cached_tokens=3000, cache_write_tokens=500)
    assert out["usage"] == {"prompt_tokens": 3512, "completion_tokens": 40, "total_tokens": 3552,
                            "prompt_tokens_details": {"cached_tokens": 3000}}
    # null cache fields count as zero
    _, usage = parse(message([{"type": "text", "text": "x"}], usage={
        "input_tokens": 7, "cache_read_input_tokens": None, "cache_creation_input_tokens": None, "output_tokens": 1}))
    assert usage == Usage(7, 1, 0, 0)


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"id": "x"}'])
def test_parse_garbage_is_502(raw):
    with pytest.raises(GatewayError) as ei:
        ADAPTER.parse_response(raw, "m")
    assert ei.value.status == 502 and ei.value.type == "upstream_error"


# ---------------------------------------------------------------- stream

def ev(obj) -> bytes:
    return orjson.dumps(obj)


# A realistic recorded Anthropic stream: text, then a tool call streamed as input_json_delta pieces.
RECORDED = [
    {"type": "message_start", "message": {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5", "stop_sequence": None, "stop_reason": None, "content": [],
        "usage": {"input_tokens": 472, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000,
                  "output_tokens": 2}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Okay"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ", let me check."}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": " \"San Fra"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "ncisco\"}"}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 89}},
    {"type": "message_stop"},
]


def run(events, include_usage=True, model="claude"):
    conv = ADAPTER.stream_converter(model, "claude-up", include_usage)
    frames = []
    for e in events:
        frames.extend(conv.feed(ev(e)))
    for f in frames:
        assert f.startswith(b"data: ") and f.endswith(b"\n\n")
        ChatCompletionChunk.model_validate_json(f[6:-2])
    return conv, [orjson.loads(f[6:-2]) for f in frames]


def test_stream_recorded_sequence_exact_chunks():
    conv, chunks = run(RECORDED)
    created = chunks[0]["created"]
    assert isinstance(created, int)

    def chunk(delta, finish=None):
        return {"id": "chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U", "object": "chat.completion.chunk",
                "created": created, "model": "claude", "usage": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    tc = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Okay"}),
        chunk({"content": ", let me check."}),
        chunk({"tool_calls": [{"index": 0, "id": tc, "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " \"San Fra"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "ncisco\"}"}}]}),
        chunk({}, "tool_calls"),
        {"id": "chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U", "object": "chat.completion.chunk", "created": created,
         "model": "claude", "choices": [],
         "usage": {"prompt_tokens": 2572, "completion_tokens": 89, "total_tokens": 2661,
                   "prompt_tokens_details": {"cached_tokens": 2000}}},
    ]
    assert conv.finished is True
    assert conv.usage == Usage(prompt_tokens=2572, completion_tokens=89, cached_tokens=2000, cache_write_tokens=100)
    assert conv.produced_text() == 'Okay, let me check.{"location": "San Francisco"}'


def test_stream_reassembles_with_openai_sdk_semantics():
    _, chunks = run(RECORDED)
    content, args, name = "", "", None
    for c in chunks:
        parsed = ChatCompletionChunk.model_validate(c)
        for choice in parsed.choices:
            content += choice.delta.content or ""
            for t in choice.delta.tool_calls or ():
                name = t.function.name or name
                args += t.function.arguments or ""
    assert content == "Okay, let me check."
    assert name == "get_weather" and orjson.loads(args) == {"location": "San Francisco"}


def test_stream_without_include_usage():
    conv, chunks = run(RECORDED, include_usage=False)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert conv.finished and conv.usage.completion_tokens == 89


def test_stream_usage_set_at_message_delta_not_before():
    conv = ADAPTER.stream_converter("m", "u", False)
    conv.feed(ev(RECORDED[0]))
    assert conv.usage is None and conv.finished is False
    conv.feed(ev(RECORDED[-2]))
    assert conv.usage == Usage(2572, 89, 2000, 100) and conv.finished is False


def test_stream_thinking_multiple_tools_and_no_arg_tool():
    events = [
        {"type": "message_start", "message": {"id": "msg_2", "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_a", "name": "a", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"x\":1}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_b", "name": "b", "input": {}}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 30, "input_tokens": 5, "cache_read_input_tokens": None}},
        {"type": "message_stop"},
    ]
    conv, chunks = run(events, include_usage=False)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Hmm."},
        {"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "a", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{\"x\":1}"}}]},
        {"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "b", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert conv.produced_text() == 'Hmm.{"x":1}{}'
    assert conv.usage == Usage(5, 30, 0, 0)


@pytest.mark.parametrize("stop_reason, finish", [("end_turn", "stop"), ("max_tokens", "length"),
                                                 ("refusal", "content_filter"), ("stop_sequence", "stop")])
def test_stream_finish_reasons(stop_reason, finish):
    _, chunks = run([RECORDED[0], {"type": "message_delta", "delta": {"stop_reason": stop_reason},
                                   "usage": {"output_tokens": 3}}, {"type": "message_stop"}])
    assert chunks[1]["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("err_type, status, code", [
    ("overloaded_error", 503, "upstream_overloaded"), ("api_error", 502, "upstream_error"),
    ("rate_limit_error", 429, "upstream_rate_limited"), ("invalid_request_error", 400, None),
])
def test_stream_error_event(err_type, status, code):
    conv = ADAPTER.stream_converter("m", "u", True)
    conv.feed(ev(RECORDED[0]))
    with pytest.raises(GatewayError) as ei:
        conv.feed(ev({"type": "error", "error": {"type": err_type, "message": "Overloaded " + KEY}}))
    assert (ei.value.status, ei.value.code) == (status, code)
    assert KEY not in ei.value.message
    assert conv.finished is False


def test_stream_garbage_event_is_502():
    conv = ADAPTER.stream_converter("m", "u", True)
    with pytest.raises(GatewayError) as ei:
        conv.feed(b"{oops")
    assert ei.value.status == 502


def test_stream_unknown_events_ignored():
    conv = ADAPTER.stream_converter("m", "u", True)
    assert conv.feed(ev({"type": "ping"})) == []
    assert conv.feed(ev({"type": "something_new", "x": 1})) == []


# ---------------------------------------------------------------- errors

def err_body(err_type, message="upstream says no"):
    return orjson.dumps({"type": "error", "error": {"type": err_type, "message": message},
                         "request_id": "req_011"})


AUTH = ("upstream_error", "upstream_auth_failed")


@pytest.mark.parametrize("status, err_type, out_status, out_type, out_code", [
    (400, "invalid_request_error", 400, "invalid_request_error", None),
    (401, "authentication_error", 502, *AUTH),
    (403, "permission_error", 502, *AUTH),
    (402, "billing_error", 502, "upstream_error", "upstream_error"),
    (404, "not_found_error", 502, "upstream_error", "upstream_not_found"),
    (413, "request_too_large", 413, "invalid_request_error", "request_too_large"),
    (429, "rate_limit_error", 429, "upstream_error", "upstream_rate_limited"),
    (500, "api_error", 502, "upstream_error", "upstream_error"),
    (529, "overloaded_error", 503, "upstream_error", "upstream_overloaded"),
    # unknown type: fall back on the status
    (401, "brand_new_error", 502, *AUTH),
    (409, "conflict_error", 400, "invalid_request_error", None),
    (503, "brand_new_error", 502, "upstream_error", "upstream_error"),
])
def test_map_error_table(status, err_type, out_status, out_type, out_code):
    e = ADAPTER.map_error(status, err_body(err_type), CH)
    assert isinstance(e, GatewayError)
    assert (e.status, e.type, e.code) == (out_status, out_type, out_code)
    if out_type == "invalid_request_error" and out_code is None:
        assert e.message == "upstream says no"  # passed through
    else:
        assert "upstream says no" not in e.message  # generic


def test_map_error_auth_message_is_generic():
    e = ADAPTER.map_error(401, err_body("authentication_error", "invalid x-api-key"), CH)
    assert "x-api-key" not in e.message and "not a problem with your API key" in e.message


@pytest.mark.parametrize("status, raw, out_status", [
    (400, b"<html>bad gateway</html>", 502),
    (500, b"", 502),
    (400, b'{"type": "error"}', 502),
    (413, b"<html>413 Request Entity Too Large</html>", 413),  # Cloudflare answers 413 in HTML
    (429, b"Too Many Requests", 429),
    (529, b"", 503),
])
def test_map_error_unparseable(status, raw, out_status):
    e = ADAPTER.map_error(status, raw, CH)
    assert e.status == out_status and e.type in ("upstream_error", "invalid_request_error")


def test_map_error_scrubs_channel_secrets():
    msg = (f"key {KEY} is bad; also sk-ant-api03-other_key-123 and {BASE}/v1/messages, "
           f"host claude.internal.example:8443 and HTTPS://CLAUDE.INTERNAL.EXAMPLE:8443")
    e = ADAPTER.map_error(400, err_body("invalid_request_error", msg), CH)
    assert e.status == 400
    for secret in (KEY, "sk-ant-api03-other", BASE, "claude.internal.example", "CLAUDE.INTERNAL"):
        assert secret not in e.message
    assert e.message.startswith("key [redacted] is bad")
    env = orjson.loads(e.body())
    assert KEY not in e.body().decode() and env["error"]["type"] == "invalid_request_error"


def test_no_error_message_ever_contains_secrets():
    for status, t in [(400, "invalid_request_error"), (401, "authentication_error"), (404, "not_found_error"),
                      (500, "api_error"), (413, "request_too_large")]:
        e = ADAPTER.map_error(status, err_body(t, f"{KEY} {BASE}"), CH)
        assert KEY not in e.message and BASE not in e.message and "internal.example" not in e.message


# ---------------------------------------------------------------- fixtures and output against the anthropic SDK types

def test_built_bodies_match_anthropic_sdk_param_types():
    import typing

    import pydantic
    from anthropic.types import message_create_params as mcp

    ta = pydantic.TypeAdapter(mcp.MessageCreateParamsNonStreaming)
    # Recent SDKs no longer type temperature / top_p (newer models deprecate them); the API still takes them.
    known = set(typing.get_type_hints(mcp.MessageCreateParamsStreaming)) | {"temperature", "top_p"}
    bodies = [
        build({"messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "q"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                                         {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}},
                                         {"type": "file", "file": {"file_data": "data:application/pdf;base64,JV"}}]},
            {"role": "assistant", "content": "c", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "P"}'}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "18"}],
            "tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False, "stop": "x",
            "temperature": 0.5, "top_p": 0.9, "user": "u"}, max_tokens=5000),
        build({"messages": [user()], "reasoning_effort": "high", "tools": TOOLS, "tool_choice": "none"},
              max_tokens=5000),
    ]
    for body in bodies:
        ta.validate_python(body)
        assert set(body) <= known, set(body) - known
    assert "stream" in known


def test_fixtures_are_valid_anthropic_shapes():
    import pydantic
    from anthropic.types import Message, RawMessageStreamEvent

    ta = pydantic.TypeAdapter(RawMessageStreamEvent)
    for e in RECORDED:
        if e["type"] != "ping":  # ping is a keep-alive outside the SDK's event union
            ta.validate_python(e)
    Message.model_validate_json(message([{"type": "text", "text": "x"}]))
    Message.model_validate_json(message([{"type": "thinking", "thinking": "t", "signature": "s"},
                                         {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}], "tool_use"))


def test_every_openai_request_field_is_classified():
    import typing

    from openai.types.chat import completion_create_params as ccp

    fields = set(typing.get_type_hints(ccp.CompletionCreateParamsStreaming)) | {"group"}
    classified = mod.HONOURED_PARAMS | UNSUPPORTED_PARAMS | IGNORED_PARAMS
    assert fields == classified, (fields - classified, classified - fields)
