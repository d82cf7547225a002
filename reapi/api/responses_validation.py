"""Validation of a parsed `POST /v1/responses` body, before anything goes upstream.

`validate_responses(body)` raises a 400 `GatewayError` (type `invalid_request_error`, the chat route's
vocabulary and envelope) on the first problem and returns None otherwise; it never mutates the body.
Unknown top-level fields are refused naming the param (OpenAI's wording). Values are checked at their
top (type, range, literal); `input` items and `tools` are checked to be objects with a string `type`
(items may omit it: a message), while their insides, `text.format` schemas, `prompt` and the other
objects go to the upstream as they are, which validates them.
"""
from __future__ import annotations

from typing import Callable

from reapi.api.validation import (_bool, _int_in, _list, _literal, _missing, _nonempty_str, _number_in, _obj, _str,
                                  _type_error, _value_error, check_object_fields)
from reapi.errors import bad_request

# Every top-level field of the Responses create params, plus our `group` and Codex's `client_metadata`.
# Source: openai-python `src/openai/types/responses/response_create_params.py`,
# `ResponseCreateParamsBase` + `stream`, as shipped in the SDK installed in this venv (openai 3.57.0);
# tests/api/test_responses_validation.py checks this set against the installed SDK so drift is caught.
# `client_metadata` (an object of strings) is sent by Codex CLI on every turn; OpenAI accepts it.
KNOWN_FIELDS: frozenset[str] = frozenset({
    "access_programs", "background", "background_options", "context_management", "conversation", "image",
    "include", "input", "instructions", "max_output_tokens", "max_tool_calls", "metadata", "model",
    "moderation", "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key",
    "prompt_cache_options", "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier",
    "store", "stream", "stream_options", "temperature", "text", "tool_choice", "tools", "top_logprobs",
    "top_p", "truncation", "user",
    "client_metadata",
    "group",  # reapi's own: which channel group serves the call (never forwarded)
})
SDK_FIELDS = KNOWN_FIELDS - {"client_metadata", "group"}

# Fields typed Optional[...] in the params file (null means absent), plus our group.
_NULLABLE: frozenset[str] = frozenset({
    "background", "context_management", "conversation", "include", "instructions", "max_output_tokens",
    "max_tool_calls", "metadata", "moderation", "parallel_tool_calls", "previous_response_id", "prompt",
    "prompt_cache_key", "prompt_cache_retention", "reasoning", "safety_identifier", "service_tier", "store",
    "stream", "stream_options", "temperature", "top_logprobs", "top_p", "truncation", "client_metadata",
    "group",
})

_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_SUMMARIES = frozenset({"auto", "concise", "detailed"})
_SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority", "fast"})
_TRUNCATIONS = frozenset({"auto", "disabled"})
_CACHE_RETENTIONS = frozenset({"in_memory", "in-memory", "24h"})
_TOOL_CHOICE_MODES = frozenset({"none", "auto", "required"})
_VERBOSITIES = frozenset({"low", "medium", "high"})
MIN_OUTPUT_TOKENS = 16  # OpenAI's minimum for max_output_tokens
_METADATA_MAX = 16


def _check_input(v: object) -> None:
    if isinstance(v, str):
        return
    items = _list("input", v) if isinstance(v, list) else _type_error("input", "a string or an array of items", v)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            _type_error(f"input[{i}]", "an object", item)
        kind = item.get("type")
        if kind is not None and not isinstance(kind, str):
            _type_error(f"input[{i}].type", "a string", kind)
        if kind in (None, "message"):
            if "role" in item:
                _str(f"input[{i}].role", item["role"])
            elif kind is None:
                _missing(f"input[{i}].role")
            content = item.get("content")
            if content is None and "content" not in item:
                _missing(f"input[{i}].content")
            if not isinstance(content, (str, list)):
                _type_error(f"input[{i}].content", "a string or an array of content parts", content)


def _check_tools(v: object) -> None:
    for i, tool in enumerate(_list("tools", v)):
        tool = _obj(f"tools[{i}]", tool)
        kind = tool.get("type")
        if kind is None:
            _missing(f"tools[{i}].type")
        _nonempty_str(f"tools[{i}].type", kind)
        if kind == "function":
            _nonempty_str(f"tools[{i}].name", tool.get("name"))


def _check_tool_choice(v: object) -> None:
    if isinstance(v, str):
        if v not in _TOOL_CHOICE_MODES:
            _literal("tool_choice", v, _TOOL_CHOICE_MODES)
        return
    v = _obj("tool_choice", v) if isinstance(v, dict) else _type_error("tool_choice", "a string or an object", v)
    if "type" not in v:
        _missing("tool_choice.type")
    _nonempty_str("tool_choice.type", v["type"])


def _check_reasoning(v: object) -> None:
    v = _obj("reasoning", v)
    for key, allowed in (("effort", _EFFORTS), ("summary", _SUMMARIES), ("generate_summary", _SUMMARIES)):
        if v.get(key) is not None:
            _literal(f"reasoning.{key}", v[key], allowed)


def _check_text(v: object) -> None:
    v = _obj("text", v)
    if v.get("format") is not None:
        fmt = _obj("text.format", v["format"])
        if "type" not in fmt:
            _missing("text.format.type")
        _nonempty_str("text.format.type", fmt["type"])
    if v.get("verbosity") is not None:
        _literal("text.verbosity", v["verbosity"], _VERBOSITIES)


def _check_strings(param: str, v: object) -> None:
    for i, s in enumerate(_list(param, v)):
        _str(f"{param}[{i}]", s)


def _check_metadata(param: str, v: object) -> None:
    v = _obj(param, v)
    if len(v) > _METADATA_MAX:
        raise bad_request(f"'{param}' takes at most {_METADATA_MAX} pairs, got {len(v)}.", param,
                          "object_above_max_properties")
    for key, value in v.items():
        if not isinstance(value, str):
            _type_error(f"{param}.{key}", "a string", value)


def _check_conversation(v: object) -> None:
    if isinstance(v, str):
        return
    _str("conversation.id", _obj("conversation", v).get("id"))


def _check_stream_options(v: object) -> None:
    v = _obj("stream_options", v)
    if v.get("include_obfuscation") is not None:
        _bool("stream_options.include_obfuscation", v["include_obfuscation"])


_CHECKS: dict[str, Callable[[object], None]] = {
    "access_programs": lambda v: _obj("access_programs", v),
    "background": lambda v: _bool("background", v),
    "background_options": lambda v: _obj("background_options", v),
    "context_management": lambda v: _list("context_management", v),
    "conversation": _check_conversation,
    "image": lambda v: _obj("image", v),
    "include": lambda v: _check_strings("include", v),
    "input": _check_input,
    "instructions": lambda v: _str("instructions", v),
    "max_output_tokens": lambda v: _int_in("max_output_tokens", v, MIN_OUTPUT_TOKENS, 2**31 - 1),
    "max_tool_calls": lambda v: _int_in("max_tool_calls", v, 1, None),
    "metadata": lambda v: _check_metadata("metadata", v),
    "model": lambda v: _nonempty_str("model", v),
    "moderation": lambda v: _obj("moderation", v),
    "parallel_tool_calls": lambda v: _bool("parallel_tool_calls", v),
    "previous_response_id": lambda v: _nonempty_str("previous_response_id", v),
    "prompt": lambda v: _obj("prompt", v),
    "prompt_cache_key": lambda v: _str("prompt_cache_key", v),
    "prompt_cache_options": lambda v: _obj("prompt_cache_options", v),
    "prompt_cache_retention": lambda v: _literal("prompt_cache_retention", v, _CACHE_RETENTIONS),
    "reasoning": _check_reasoning,
    "safety_identifier": lambda v: _str("safety_identifier", v),
    "service_tier": lambda v: _literal("service_tier", v, _SERVICE_TIERS),
    "store": lambda v: _bool("store", v),
    "stream": lambda v: _bool("stream", v),
    "stream_options": _check_stream_options,
    "temperature": lambda v: _number_in("temperature", v, 0, 2),
    "text": _check_text,
    "tool_choice": _check_tool_choice,
    "tools": _check_tools,
    "top_logprobs": lambda v: _int_in("top_logprobs", v, 0, 20),
    "top_p": lambda v: _number_in("top_p", v, 0, 1),
    "truncation": lambda v: _literal("truncation", v, _TRUNCATIONS),
    "user": lambda v: _str("user", v),
    "client_metadata": lambda v: _check_metadata("client_metadata", v),
    "group": lambda v: _nonempty_str("group", v),
}
assert _CHECKS.keys() == KNOWN_FIELDS, "every known field needs a check"
assert _NULLABLE <= KNOWN_FIELDS


def validate_responses(body: object) -> None:
    """Raise a 400 GatewayError naming the first problem in a Responses create body.

    Order: body type, unknown fields (first in body order), missing `model`, each field in body order,
    then the cross-field rule (`stream_options` needs `stream: true`)."""
    check_object_fields(body, KNOWN_FIELDS)
    if "model" not in body:
        _missing("model")
    for key, value in body.items():
        if value is None and key in _NULLABLE:
            continue
        _CHECKS[key](value)
    if body.get("stream_options") is not None and body.get("stream") is not True:
        _value_error("stream_options", "it is only allowed when 'stream' is true.")
