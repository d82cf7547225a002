"""Tests for reapi.api.validation: the pre-upstream check of a chat-completions body."""
from __future__ import annotations

import copy
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reapi.api import validation
from reapi.api.validation import KNOWN_FIELDS, validate_chat
from reapi.errors import GatewayError

# --------------------------------------------------------------------------- fixtures

USER = {"role": "user", "content": "Hello"}
MINIMAL = {"model": "gpt-4o", "messages": [USER]}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
IMAGE_PART = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}

# One valid value for every field of KNOWN_FIELDS.
EVERY_FIELD = {
    "model": "gpt-4o",
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "What is the weather in Paris?", "name": "alice"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    ],
    "audio": {"format": "mp3", "voice": "alloy"},
    "frequency_penalty": 0.5,
    "function_call": "auto",
    "functions": [{"name": "legacy_fn", "description": "old style", "parameters": {"type": "object"}}],
    "logit_bias": {"50256": -100, "1234": 5.5},
    "logprobs": True,
    "max_completion_tokens": 256,
    "max_tokens": 256,
    "metadata": {"trace": "abc", "team": "core"},
    "modalities": ["text", "audio"],
    "moderation": {"model": "omni-moderation-latest", "policy": {"input": {"mode": "score"}}},
    "n": 2,
    "parallel_tool_calls": False,
    "prediction": {"type": "content", "content": "predicted text"},
    "presence_penalty": -0.5,
    "prompt_cache_key": "tenant-42",
    "prompt_cache_options": {"mode": "implicit", "ttl": "30m"},
    "prompt_cache_retention": "24h",
    "reasoning_effort": "medium",
    "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}},
    "safety_identifier": "user-hash-1",
    "seed": 42,
    "service_tier": "auto",
    "stop": ["\n\n", "END"],
    "store": False,
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.7,
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "tools": [WEATHER_TOOL],
    "top_logprobs": 5,
    "top_p": 0.9,
    "user": "end-user-1",
    "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
    "group": "default",
}


def body(**fields) -> dict:
    """MINIMAL with top-level fields set (a value of `...` removes the field)."""
    out = copy.deepcopy(MINIMAL)
    for key, value in fields.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def msgs(*messages) -> dict:
    return body(messages=list(messages))


# --------------------------------------------------------------------------- valid bodies

VALID = [
    ("minimal", MINIMAL),
    ("every known field", EVERY_FIELD),
    ("full sampling parameter set", body(
        temperature=2, top_p=0, presence_penalty=-2, frequency_penalty=2, n=128, seed=-1,
        max_tokens=1, max_completion_tokens=100000, logprobs=True, top_logprobs=20,
        logit_bias={"1": 100, "2": -100}, stop="STOP", user="u", safety_identifier="s",
        prompt_cache_key="k", metadata={}, store=True, reasoning_effort="xhigh",
        service_tier="flex", verbosity="high", modalities=["text"],
    )),
    ("temperature and top_p as integers", body(temperature=0, top_p=1)),
    ("tool use", body(tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=True)),
    ("tool without description, parameters or strict",
     body(tools=[{"type": "function", "function": {"name": "ping"}}], tool_choice="auto")),
    ("tool strict null", body(tools=[{"type": "function", "function": {"name": "ping", "strict": None}}])),
    ("custom tool", body(tools=[{"type": "custom", "custom": {"name": "sql", "format": {"type": "text"}}}],
                         tool_choice={"type": "custom", "custom": {"name": "sql"}})),
    ("allowed_tools tool_choice", body(tools=[WEATHER_TOOL], tool_choice={
        "type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}})),
    ("empty tools list", body(tools=[])),
    ("multi-part content with image", msgs(
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE_PART]})),
    ("input_audio and file parts", msgs({"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_id": "file-abc"}},
        {"type": "text", "text": "x", "prompt_cache_breakpoint": {"mode": "explicit"}},
    ]})),
    ("assistant with tool_calls and null content", msgs(
        USER, {"role": "assistant", "content": None, "tool_calls": [CALL]})),
    ("assistant with tool_calls and no content key", msgs(USER, {"role": "assistant", "tool_calls": [CALL]})),
    ("assistant with custom tool call", msgs(USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "custom", "custom": {"name": "sql", "input": "select 1"}}]})),
    ("assistant with function_call and null content", msgs(
        USER, {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}})),
    ("assistant refusal only", msgs(USER, {"role": "assistant", "refusal": "I can't help with that."})),
    ("assistant audio only", msgs(USER, {"role": "assistant", "audio": {"id": "audio_1"}})),
    ("assistant text and refusal parts", msgs(USER, {"role": "assistant", "content": [
        {"type": "text", "text": "partial"}, {"type": "refusal", "refusal": "no"}]})),
    ("assistant null tool_calls with text", msgs(USER, {"role": "assistant", "content": "hi", "tool_calls": None})),
    ("assistant empty string content", msgs(USER, {"role": "assistant", "content": ""})),
    ("tool message", msgs(
        USER, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "call_1", "content": "18C"})),
    ("tool message with text parts", msgs(
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "18C"}]})),
    ("function message with null content", msgs({"role": "function", "name": "f", "content": None})),
    ("system and developer with text parts", msgs(
        {"role": "system", "content": [{"type": "text", "text": "a"}]},
        {"role": "developer", "content": "b", "name": "ops"}, USER)),
    ("unknown keys inside a message are left to upstream", msgs({"role": "user", "content": "x", "extra": 1})),
    ("nulls on nullable fields", body(**{f: None for f in validation._NULLABLE})),
    ("stream false without stream_options", body(stream=False)),
    ("stream_options with stream true", body(stream=True, stream_options={"include_usage": False, "include_obfuscation": True})),
    ("response_format text", body(response_format={"type": "text"})),
    ("response_format json_object", body(response_format={"type": "json_object"})),
    ("function_call object", body(functions=[{"name": "f"}], function_call={"name": "f"})),
    ("reasoning_effort max (in the current SDK)", body(reasoning_effort="max")),
    ("reasoning_effort none", body(reasoning_effort="none")),
    ("service_tier fast", body(service_tier="fast")),
    ("prompt_cache_retention older spelling", body(prompt_cache_retention="in-memory")),
    ("prompt_cache_retention current spelling", body(prompt_cache_retention="in_memory")),
    ("audio voice object", body(audio={"format": "wav", "voice": {"id": "voice_123"}})),
    ("prediction with text parts", body(prediction={"type": "content", "content": [{"type": "text", "text": "x"}]})),
    ("logprobs without top_logprobs", body(logprobs=True)),
    ("top_logprobs zero with logprobs", body(logprobs=True, top_logprobs=0)),
    ("stop list of four", body(stop=["a", "b", "c", "d"])),
    ("stop empty list", body(stop=[])),
    ("function name 64 chars", body(tools=[{"type": "function", "function": {"name": "a" * 64}}])),
]


@pytest.mark.parametrize("payload", [v[1] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_bodies_pass(payload):
    before = copy.deepcopy(payload)
    assert validate_chat(payload) is None
    assert payload == before  # never mutates


def test_every_field_fixture_covers_known_fields():
    assert set(EVERY_FIELD) == KNOWN_FIELDS


def test_thousand_message_body_validates():
    history = [{"role": "system", "content": "s"}]
    for i in range(999):
        history.append({"role": "user" if i % 2 else "assistant", "content": f"turn {i}"})
    assert validate_chat(body(messages=history)) is None


# --------------------------------------------------------------------------- invalid bodies

LONG_NAME = "a" * 65

INVALID = [
    # (id, body, param, code)
    ("body is a list", [MINIMAL], None, "invalid_type"),
    ("body is a string", "hello", None, "invalid_type"),
    ("body is null", None, None, "invalid_type"),
    ("unknown top-level field", body(foo=1), "foo", "unknown_parameter"),
    ("unknown field reported before other problems", {"model": 1, "bar": 2}, "bar", "unknown_parameter"),
    ("first unknown field in body order", {"zzz": 1, "model": "m", "aaa": 2}, "zzz", "unknown_parameter"),
    # model
    ("model missing", body(model=...), "model", "missing_required_parameter"),
    ("model empty", body(model=""), "model", "empty_string"),
    ("model not a string", body(model=4), "model", "invalid_type"),
    ("model null", body(model=None), "model", "invalid_type"),
    # messages
    ("messages missing", body(messages=...), "messages", "missing_required_parameter"),
    ("messages empty", body(messages=[]), "messages", "empty_array"),
    ("messages not a list", body(messages={"role": "user"}), "messages", "invalid_type"),
    ("messages null", body(messages=None), "messages", "invalid_type"),
    ("message not an object", msgs(USER, "hi"), "messages[1]", "invalid_type"),
    ("message role missing", msgs({"content": "x"}), "messages[0].role", "missing_required_parameter"),
    ("message role unknown", msgs(USER, USER, {"role": "bot", "content": "x"}), "messages[2].role", "invalid_value"),
    ("message role not a string", msgs({"role": ["user"], "content": "x"}), "messages[0].role", "invalid_type"),
    ("message name not a string", msgs({"role": "user", "content": "x", "name": 5}), "messages[0].name", "invalid_type"),
    ("user content missing", msgs(USER, {"role": "user"}), "messages[1].content", "missing_required_parameter"),
    ("user content null", msgs({"role": "user", "content": None}), "messages[0].content", "invalid_type"),
    ("system content null", msgs({"role": "system", "content": None}), "messages[0].content", "invalid_type"),
    ("content a number", msgs(USER, USER, {"role": "user", "content": 3}), "messages[2].content", "invalid_type"),
    ("content an object", msgs({"role": "user", "content": {"type": "text", "text": "x"}}), "messages[0].content", "invalid_type"),
    ("content empty list", msgs({"role": "user", "content": []}), "messages[0].content", "empty_array"),
    ("content part not an object", msgs({"role": "user", "content": ["x"]}), "messages[0].content[0]", "invalid_type"),
    ("content part type missing", msgs({"role": "user", "content": [{"text": "x"}]}),
     "messages[0].content[0].type", "missing_required_parameter"),
    ("content part type unknown", msgs({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "video"}]}),
     "messages[0].content[1].type", "invalid_value"),
    ("content part type not a string", msgs({"role": "user", "content": [{"type": 1}]}),
     "messages[0].content[0].type", "invalid_type"),
    ("text part without text", msgs({"role": "user", "content": [{"type": "text"}]}),
     "messages[0].content[0].text", "missing_required_parameter"),
    ("text part text not a string", msgs({"role": "user", "content": [{"type": "text", "text": 1}]}),
     "messages[0].content[0].text", "invalid_type"),
    ("image part without image_url", msgs({"role": "user", "content": [{"type": "image_url"}]}),
     "messages[0].content[0].image_url", "missing_required_parameter"),
    ("image part image_url a string", msgs({"role": "user", "content": [{"type": "image_url", "image_url": "https://x"}]}),
     "messages[0].content[0].image_url", "invalid_type"),
    ("image part without url", msgs({"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}),
     "messages[0].content[0].image_url.url", "missing_required_parameter"),
    ("image part url not a string", msgs({"role": "user", "content": [{"type": "image_url", "image_url": {"url": 1}}]}),
     "messages[0].content[0].image_url.url", "invalid_type"),
    ("input_audio part bad format", msgs({"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "x", "format": "ogg"}}]}),
     "messages[0].content[0].input_audio.format", "invalid_value"),
    ("input_audio part without data", msgs({"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"format": "wav"}}]}),
     "messages[0].content[0].input_audio.data", "missing_required_parameter"),
    ("file part file not an object", msgs({"role": "user", "content": [{"type": "file", "file": "file-1"}]}),
     "messages[0].content[0].file", "invalid_type"),
    ("refusal part refusal not a string", msgs(USER, {"role": "assistant", "content": [{"type": "refusal", "refusal": 1}]}),
     "messages[1].content[0].refusal", "invalid_type"),
    ("image part in a system message", msgs({"role": "system", "content": [IMAGE_PART]}),
     "messages[0].content[0].type", "invalid_value"),
    ("refusal part in a user message", msgs({"role": "user", "content": [{"type": "refusal", "refusal": "no"}]}),
     "messages[0].content[0].type", "invalid_value"),
    ("image part in an assistant message", msgs(USER, {"role": "assistant", "content": [IMAGE_PART]}),
     "messages[1].content[0].type", "invalid_value"),
    ("assistant with neither content nor tool_calls", msgs(USER, {"role": "assistant"}),
     "messages[1].content", "missing_required_parameter"),
    ("assistant null content and null tool_calls", msgs(USER, {"role": "assistant", "content": None, "tool_calls": None}),
     "messages[1].content", "missing_required_parameter"),
    ("assistant tool_calls empty", msgs(USER, {"role": "assistant", "tool_calls": []}),
     "messages[1].tool_calls", "empty_array"),
    ("assistant tool_calls not a list", msgs(USER, {"role": "assistant", "tool_calls": CALL}),
     "messages[1].tool_calls", "invalid_type"),
    ("tool call without id", msgs(USER, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
     "messages[1].tool_calls[0].id", "missing_required_parameter"),
    ("tool call bad type", msgs(USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "fn", "function": {"name": "f", "arguments": "{}"}}]}),
     "messages[1].tool_calls[0].type", "invalid_value"),
    ("tool call without function", msgs(USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}),
     "messages[1].tool_calls[0].function", "missing_required_parameter"),
    ("tool call function name missing", msgs(USER, {"role": "assistant", "tool_calls": [
        CALL, {"id": "c", "type": "function", "function": {"arguments": "{}"}}]}),
     "messages[1].tool_calls[1].function.name", "missing_required_parameter"),
    ("tool call arguments an object", msgs(USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"city": "Paris"}}}]}),
     "messages[1].tool_calls[0].function.arguments", "invalid_type"),
    ("assistant function_call without arguments", msgs(USER, {"role": "assistant", "function_call": {"name": "f"}}),
     "messages[1].function_call.arguments", "missing_required_parameter"),
    ("assistant refusal not a string", msgs(USER, {"role": "assistant", "content": "x", "refusal": 1}),
     "messages[1].refusal", "invalid_type"),
    ("tool message without tool_call_id", msgs({"role": "tool", "content": "x"}),
     "messages[0].tool_call_id", "missing_required_parameter"),
    ("tool message tool_call_id not a string", msgs({"role": "tool", "content": "x", "tool_call_id": 7}),
     "messages[0].tool_call_id", "invalid_type"),
    ("tool message without content", msgs({"role": "tool", "tool_call_id": "c"}),
     "messages[0].content", "missing_required_parameter"),
    ("function message without name", msgs({"role": "function", "content": "x"}),
     "messages[0].name", "missing_required_parameter"),
    ("function message without content key", msgs({"role": "function", "name": "f"}),
     "messages[0].content", "missing_required_parameter"),
    # numbers
    ("temperature above 2", body(temperature=2.5), "temperature", "decimal_above_max_value"),
    ("temperature below 0", body(temperature=-0.1), "temperature", "decimal_below_min_value"),
    ("temperature a boolean", body(temperature=True), "temperature", "invalid_type"),
    ("temperature a string", body(temperature="0.5"), "temperature", "invalid_type"),
    ("temperature NaN", body(temperature=float("nan")), "temperature", "decimal_below_min_value"),
    ("top_p above 1", body(top_p=1.01), "top_p", "decimal_above_max_value"),
    ("top_p a boolean", body(top_p=False), "top_p", "invalid_type"),
    ("presence_penalty below -2", body(presence_penalty=-2.1), "presence_penalty", "decimal_below_min_value"),
    ("frequency_penalty above 2", body(frequency_penalty=3), "frequency_penalty", "decimal_above_max_value"),
    ("frequency_penalty a boolean", body(frequency_penalty=True), "frequency_penalty", "invalid_type"),
    ("n zero", body(n=0), "n", "integer_below_min_value"),
    ("n above 128", body(n=129), "n", "integer_above_max_value"),
    ("n a decimal", body(n=1.0), "n", "invalid_type"),
    ("n a boolean", body(n=True), "n", "invalid_type"),
    ("max_tokens zero", body(max_tokens=0), "max_tokens", "integer_below_min_value"),
    ("max_tokens a string", body(max_tokens="100"), "max_tokens", "invalid_type"),
    ("max_tokens a boolean", body(max_tokens=True), "max_tokens", "invalid_type"),
    ("max_completion_tokens negative", body(max_completion_tokens=-5), "max_completion_tokens", "integer_below_min_value"),
    ("max_completion_tokens a decimal", body(max_completion_tokens=10.5), "max_completion_tokens", "invalid_type"),
    ("seed a decimal", body(seed=1.5), "seed", "invalid_type"),
    ("seed a boolean", body(seed=False), "seed", "invalid_type"),
    ("top_logprobs above 20", body(logprobs=True, top_logprobs=21), "top_logprobs", "integer_above_max_value"),
    ("top_logprobs negative", body(logprobs=True, top_logprobs=-1), "top_logprobs", "integer_below_min_value"),
    ("top_logprobs a boolean", body(logprobs=True, top_logprobs=True), "top_logprobs", "invalid_type"),
    ("top_logprobs without logprobs", body(top_logprobs=3), "top_logprobs", "invalid_value"),
    ("top_logprobs with logprobs false", body(logprobs=False, top_logprobs=3), "top_logprobs", "invalid_value"),
    ("logit_bias not an object", body(logit_bias=[1]), "logit_bias", "invalid_type"),
    ("logit_bias value above 100", body(logit_bias={"50256": 101}), "logit_bias.50256", "decimal_above_max_value"),
    ("logit_bias value below -100", body(logit_bias={"7": -100.5}), "logit_bias.7", "decimal_below_min_value"),
    ("logit_bias value a boolean", body(logit_bias={"7": True}), "logit_bias.7", "invalid_type"),
    ("logit_bias value a string", body(logit_bias={"7": "5"}), "logit_bias.7", "invalid_type"),
    # booleans
    ("stream a string", body(stream="true"), "stream", "invalid_type"),
    ("stream an integer", body(stream=1), "stream", "invalid_type"),
    ("logprobs an integer", body(logprobs=1), "logprobs", "invalid_type"),
    ("parallel_tool_calls a string", body(parallel_tool_calls="yes"), "parallel_tool_calls", "invalid_type"),
    ("store an integer", body(store=0), "store", "invalid_type"),
    # stream_options
    ("stream_options without stream", body(stream_options={"include_usage": True}), "stream_options", "invalid_value"),
    ("stream_options with stream false", body(stream=False, stream_options={"include_usage": True}),
     "stream_options", "invalid_value"),
    ("stream_options not an object", body(stream=True, stream_options=True), "stream_options", "invalid_type"),
    ("stream_options include_usage a string", body(stream=True, stream_options={"include_usage": "yes"}),
     "stream_options.include_usage", "invalid_type"),
    # stop
    ("stop five sequences", body(stop=["a", "b", "c", "d", "e"]), "stop", "array_above_max_length"),
    ("stop a number", body(stop=5), "stop", "invalid_type"),
    ("stop list with a number", body(stop=["a", 5]), "stop[1]", "invalid_type"),
    # tools
    ("tools not a list", body(tools=WEATHER_TOOL), "tools", "invalid_type"),
    ("tools null", body(tools=None), "tools", "invalid_type"),
    ("tool not an object", body(tools=["get_weather"]), "tools[0]", "invalid_type"),
    ("tool type missing", body(tools=[{"function": {"name": "f"}}]), "tools[0].type", "missing_required_parameter"),
    ("tool type unknown", body(tools=[WEATHER_TOOL, {"type": "retrieval"}]), "tools[1].type", "invalid_value"),
    ("tool function missing", body(tools=[{"type": "function"}]), "tools[0].function", "missing_required_parameter"),
    ("tool function name missing", body(tools=[{"type": "function", "function": {"description": "d"}}]),
     "tools[0].function.name", "missing_required_parameter"),
    ("tool function name with a space", body(tools=[{"type": "function", "function": {"name": "get weather"}}]),
     "tools[0].function.name", "invalid_value"),
    ("tool function name too long", body(tools=[{"type": "function", "function": {"name": LONG_NAME}}]),
     "tools[0].function.name", "invalid_value"),
    ("tool function name empty", body(tools=[{"type": "function", "function": {"name": ""}}]),
     "tools[0].function.name", "invalid_value"),
    ("tool function name with trailing newline", body(tools=[{"type": "function", "function": {"name": "f\n"}}]),
     "tools[0].function.name", "invalid_value"),
    ("tool function parameters a string", body(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
     "tools[0].function.parameters", "invalid_type"),
    ("tool function description a number", body(tools=[{"type": "function", "function": {"name": "f", "description": 1}}]),
     "tools[0].function.description", "invalid_type"),
    ("tool function strict a string", body(tools=[{"type": "function", "function": {"name": "f", "strict": "true"}}]),
     "tools[0].function.strict", "invalid_type"),
    ("custom tool without name", body(tools=[{"type": "custom", "custom": {}}]),
     "tools[0].custom.name", "missing_required_parameter"),
    ("functions entry bad name", body(functions=[{"name": "bad name"}]), "functions[0].name", "invalid_value"),
    # tool_choice / function_call
    ("tool_choice unknown string", body(tool_choice="any"), "tool_choice", "invalid_value"),
    ("tool_choice a number", body(tool_choice=1), "tool_choice", "invalid_type"),
    ("tool_choice object without type", body(tool_choice={"function": {"name": "f"}}),
     "tool_choice.type", "missing_required_parameter"),
    ("tool_choice object bad type", body(tool_choice={"type": "tool", "function": {"name": "f"}}),
     "tool_choice.type", "invalid_value"),
    ("tool_choice function without name", body(tool_choice={"type": "function", "function": {}}),
     "tool_choice.function.name", "missing_required_parameter"),
    ("tool_choice allowed_tools bad mode", body(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "none", "tools": []}}),
     "tool_choice.allowed_tools.mode", "invalid_value"),
    ("function_call unknown string", body(function_call="required"), "function_call", "invalid_value"),
    ("function_call object without name", body(function_call={}), "function_call.name", "missing_required_parameter"),
    # response_format
    ("response_format a string", body(response_format="json_object"), "response_format", "invalid_type"),
    ("response_format unknown type", body(response_format={"type": "xml"}), "response_format.type", "invalid_value"),
    ("response_format without type", body(response_format={}), "response_format.type", "missing_required_parameter"),
    ("json_schema without json_schema", body(response_format={"type": "json_schema"}),
     "response_format.json_schema", "missing_required_parameter"),
    ("json_schema without name", body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
     "response_format.json_schema.name", "missing_required_parameter"),
    ("json_schema name not a string", body(response_format={"type": "json_schema", "json_schema": {"name": 1}}),
     "response_format.json_schema.name", "invalid_type"),
    # literals
    ("reasoning_effort unknown", body(reasoning_effort="extreme"), "reasoning_effort", "invalid_value"),
    ("reasoning_effort a number", body(reasoning_effort=1), "reasoning_effort", "invalid_type"),
    ("service_tier unknown", body(service_tier="turbo"), "service_tier", "invalid_value"),
    ("verbosity unknown", body(verbosity="max"), "verbosity", "invalid_value"),
    ("modalities not a list", body(modalities="text"), "modalities", "invalid_type"),
    ("modalities unknown entry", body(modalities=["text", "image"]), "modalities[1]", "invalid_value"),
    ("prompt_cache_retention unknown", body(prompt_cache_retention="1h"), "prompt_cache_retention", "invalid_value"),
    # objects and strings
    ("metadata not an object", body(metadata="x"), "metadata", "invalid_type"),
    ("metadata value a number", body(metadata={"a": "b", "n": 1}), "metadata.n", "invalid_type"),
    ("user a number", body(user=1), "user", "invalid_type"),
    ("user null", body(user=None), "user", "invalid_type"),
    ("safety_identifier a number", body(safety_identifier=1), "safety_identifier", "invalid_type"),
    ("prompt_cache_key a list", body(prompt_cache_key=["k"]), "prompt_cache_key", "invalid_type"),
    ("group empty", body(group=""), "group", "empty_string"),
    ("group a number", body(group=1), "group", "invalid_type"),
    ("audio without voice", body(audio={"format": "mp3"}), "audio.voice", "missing_required_parameter"),
    ("audio bad format", body(audio={"format": "ogg", "voice": "alloy"}), "audio.format", "invalid_value"),
    ("prediction bad type", body(prediction={"type": "text", "content": "x"}), "prediction.type", "invalid_value"),
    ("prediction content a number", body(prediction={"type": "content", "content": 1}), "prediction.content", "invalid_type"),
    ("moderation without model", body(moderation={}), "moderation.model", "missing_required_parameter"),
    ("web_search_options a list", body(web_search_options=[]), "web_search_options", "invalid_type"),
    ("prompt_cache_options null", body(prompt_cache_options=None), "prompt_cache_options", "invalid_type"),
    ("response_format null", body(response_format=None), "response_format", "invalid_type"),
]


@pytest.mark.parametrize(
    ("payload", "param", "code"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_bodies_are_rejected(payload, param, code):
    with pytest.raises(GatewayError) as info:
        validate_chat(payload)
    err = info.value
    assert err.status == 400
    assert err.type == "invalid_request_error"
    assert err.param == param
    assert err.code == code
    assert err.message  # a human-readable sentence


def test_unknown_field_message_matches_openai_wording():
    # Client libraries look for this sentence to drop an unsupported argument and retry.
    with pytest.raises(GatewayError) as info:
        validate_chat(body(reasoning={"effort": "low"}))
    assert info.value.message == "Unrecognized request argument supplied: reasoning"


def test_error_names_the_first_bad_message():
    history = [USER] * 500 + [{"role": "user", "content": 1}] + [{"role": "user"}]
    with pytest.raises(GatewayError) as info:
        validate_chat(body(messages=history))
    assert info.value.param == "messages[500].content"


# --------------------------------------------------------------------------- drift against the SDK

def _sdk_params():
    from openai.types.chat import completion_create_params as params

    return params


def test_known_fields_match_installed_sdk():
    params = _sdk_params()
    sdk = set(params.CompletionCreateParamsBase.__annotations__)
    # `stream` is declared on the Streaming / NonStreaming subclasses, not on the base.
    assert "stream" in params.CompletionCreateParamsStreaming.__annotations__
    assert "stream" in params.CompletionCreateParamsNonStreaming.__annotations__
    assert KNOWN_FIELDS == sdk | {"stream", "group"}


def test_nullable_fields_match_installed_sdk():
    params = _sdk_params()
    hints = typing.get_type_hints(params.CompletionCreateParamsBase)
    hints["stream"] = typing.get_type_hints(params.CompletionCreateParamsNonStreaming)["stream"]
    sdk_nullable = {name for name, hint in hints.items() if type(None) in typing.get_args(hint)}
    # parallel_tool_calls: typed plain `bool` upstream, null accepted by our spec; group is ours.
    assert validation._NULLABLE == sdk_nullable | {"parallel_tool_calls", "group"}


def _literals(hint) -> set:
    if typing.get_origin(hint) is typing.Literal:
        return set(typing.get_args(hint))
    out: set = set()
    for arg in typing.get_args(hint):
        out |= _literals(arg)
    return out


@pytest.mark.parametrize(
    ("field", "ours"),
    [
        ("reasoning_effort", validation._REASONING_EFFORTS),
        ("service_tier", validation._SERVICE_TIERS),
        ("verbosity", validation._VERBOSITIES),
        ("modalities", validation._MODALITIES),
        ("prompt_cache_retention", validation._CACHE_RETENTIONS - {"in-memory"}),  # + the older spelling
    ],
)
def test_literals_match_installed_sdk(field, ours):
    hints = typing.get_type_hints(_sdk_params().CompletionCreateParamsBase)
    assert _literals(hints[field]) == ours


# --------------------------------------------------------------------------- properties

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
unknown_keys = st.text(max_size=20).filter(lambda k: k not in KNOWN_FIELDS)
any_keys = st.sampled_from(sorted(KNOWN_FIELDS)) | unknown_keys


@given(
    before=st.dictionaries(any_keys, json_values, max_size=6),
    unknown=unknown_keys,
    value=json_values,
    after=st.dictionaries(any_keys, json_values, max_size=6),
)
@settings(max_examples=300, deadline=None)
def test_any_dict_with_an_unknown_key_is_rejected_naming_it(before, unknown, value, after):
    payload = {**before, unknown: value, **{k: v for k, v in after.items() if k not in before and k != unknown}}
    first_unknown = next(k for k in payload if k not in KNOWN_FIELDS)
    with pytest.raises(GatewayError) as info:
        validate_chat(payload)
    assert info.value.status == 400
    assert info.value.type == "invalid_request_error"
    assert info.value.param == first_unknown
    assert info.value.code == "unknown_parameter"


message_keys = st.sampled_from(
    ["role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio", "x"]
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "bot"])
parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "file", "refusal", "video"])},
    optional={
        "text": json_scalars,
        "image_url": st.fixed_dictionaries({}, optional={"url": json_scalars}) | json_scalars,
        "refusal": json_scalars,
        "file": json_values,
    },
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {"id": st.just("c") | json_scalars, "type": st.sampled_from(["function", "custom", "x"])},
        optional={
            "function": st.fixed_dictionaries({}, optional={"name": st.just("f") | json_scalars,
                                                           "arguments": st.just("{}") | json_scalars}),
        },
    ),
    max_size=3,
)
messages = st.fixed_dictionaries(
    {"role": roles | json_scalars},
    optional={
        "content": st.text(max_size=5) | st.none() | st.lists(parts, max_size=3) | json_values,
        "name": st.text(max_size=5) | json_scalars,
        "tool_calls": tool_calls | json_values,
        "tool_call_id": st.text(max_size=5) | json_scalars,
        "x": json_values,
    },
)


@given(st.lists(messages, min_size=1, max_size=5), st.dictionaries(st.sampled_from(sorted(KNOWN_FIELDS)), json_values, max_size=6))
@settings(max_examples=500, deadline=None)
def test_arbitrary_input_only_ever_raises_a_400(history, extra):
    payload = {"model": "m", "messages": history, **extra}
    try:
        validate_chat(payload)
    except GatewayError as err:
        assert err.status == 400
        assert err.type == "invalid_request_error"
        assert err.param is None or isinstance(err.param, str)


@given(messages)
@settings(max_examples=1000, deadline=None)
def test_fast_message_path_never_accepts_what_the_full_check_rejects(message):
    if validation._message_ok(message):
        validation._check_message(0, message)  # must not raise


@given(st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "custom"]) | json_scalars},
    optional={"function": st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(["f", "get_weather", "bad name", "", LONG_NAME]) | json_scalars,
        "description": json_scalars, "parameters": json_values, "strict": json_scalars,
    }) | json_scalars},
))
@settings(max_examples=500, deadline=None)
def test_fast_tool_path_never_accepts_what_the_full_check_rejects(tool):
    if validation._function_tool_ok(tool):
        validation._check_tool(0, tool)  # must not raise
