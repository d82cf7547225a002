"""Validation of a parsed `POST /v1/chat/completions` body, before anything goes upstream.

`validate_chat(body)` raises a 400 `GatewayError` (type `invalid_request_error`) on the
first problem it finds and returns None otherwise. It never mutates the body.

Errors name the offending parameter the way OpenAI's API does: top-level fields by
name, nested ones as a path with `[i]` for array items and `.key` for object keys,
e.g. `messages[0].role`, `messages[2].content[1].image_url.url`, `tools[0].function.name`
(OpenAI returns e.g. param "messages[0].role" / "messages[2].content[0].type" /
"messages[18].tool_calls"). Error codes reuse OpenAI's vocabulary (`invalid_type`,
`invalid_value`, `missing_required_parameter`, `empty_array`, `integer_below_min_value`,
...), so client code that switches on `code` keeps working; the wording is our own,
except the unknown-field message, kept verbatim because client libraries match on it
to fall back (see `_UNKNOWN_MESSAGE`).

Hot path: this runs on every request. It is one pass over the top-level fields with a
dict dispatch, isinstance checks, and allocation-free fast paths for the common message
and tool shapes (the full, path-naming checks run only when a fast path says no). Free-form
values are type-checked at their top only: tool-call arguments are not parsed, JSON
schemas / function parameters / web_search_options / prompt_cache_options are not walked.
"""
from __future__ import annotations

import re
from typing import Callable, NoReturn

from reapi.errors import bad_request

# Every top-level field of the OpenAI Chat Completions create params, plus our `group`.
# Source: openai-python `src/openai/types/chat/completion_create_params.py`,
# `CompletionCreateParamsBase` + `stream` (declared on the Streaming/NonStreaming
# subclasses), as shipped in openai 3.57.0 (the SDK installed in this venv), read on
# 2026-11-27. The copies of that file in the search index (commits 0444895..., f1fbc9c...)
# are older: they lack prompt_cache_key, prompt_cache_retention, prompt_cache_options,
# safety_identifier, verbosity and moderation. tests/api/test_validation.py checks this
# set against the installed SDK so drift is caught on upgrade.
KNOWN_FIELDS: frozenset[str] = frozenset({
    "messages",
    "model",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "moderation",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
    # reapi's own extension: which channel group serves the call (stripped before upstream).
    "group",
})

# Fields where a JSON null is accepted and means "absent": those typed Optional[...] in the
# params file, plus `parallel_tool_calls` (typed plain `bool` there, but null is accepted
# by our spec) and our own `group`. A null anywhere else is a type error, as upstream.
_NULLABLE: frozenset[str] = frozenset({
    "audio", "frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens",
    "max_tokens", "metadata", "modalities", "moderation", "n", "prediction",
    "presence_penalty", "prompt_cache_key", "prompt_cache_retention", "reasoning_effort",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options",
    "temperature", "top_logprobs", "top_p", "verbosity",
    "parallel_tool_calls", "group",
})

# Literals, from the same SDK version.
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_REASONING_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority", "fast"})
_VERBOSITIES = frozenset({"low", "medium", "high"})
_MODALITIES = frozenset({"text", "audio"})
# The SDK's current literal is "in_memory"; earlier releases (and older clients) spell it
# "in-memory". Both are let through: the gateway must not reject what a client was told works.
_CACHE_RETENTIONS = frozenset({"in_memory", "in-memory", "24h"})
_AUDIO_FORMATS = frozenset({"wav", "aac", "mp3", "flac", "opus", "pcm16"})
_INPUT_AUDIO_FORMATS = frozenset({"wav", "mp3"})
_RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
_TOOL_CHOICE_MODES = frozenset({"none", "auto", "required"})
_ALLOWED_TOOLS_MODES = frozenset({"auto", "required"})
_FUNCTION_CALL_MODES = frozenset({"none", "auto"})

# Content-part types each role may use (ChatCompletion*MessageParam in the SDK).
_TEXT_ONLY = frozenset({"text"})
_PART_TYPES_BY_ROLE = {
    "system": _TEXT_ONLY,
    "developer": _TEXT_ONLY,
    "tool": _TEXT_ONLY,
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
}
_ALL_PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")
# Roles whose message is fully checked by the fast path when it is exactly {role, content: str}.
_PLAIN_ROLES = ("user", "assistant", "system", "developer")

_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # used with fullmatch

_N_MAX = 128
_TOP_LOGPROBS_MAX = 20
_STOP_MAX = 4

_UNKNOWN_MESSAGE = "Unrecognized request argument supplied: "  # OpenAI's wording, kept verbatim


# --------------------------------------------------------------------------- errors

def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _type_error(param: str, expected: str, value: object) -> NoReturn:
    raise bad_request(f"'{param}' must be {expected}, not {_json_type(value)}.", param, "invalid_type")


def _value_error(param: str, detail: str) -> NoReturn:
    raise bad_request(f"'{param}' has an invalid value: {detail}", param, "invalid_value")


def _missing(param: str) -> NoReturn:
    raise bad_request(f"'{param}' is required but was not supplied.", param, "missing_required_parameter")


def _empty_array(param: str) -> NoReturn:
    raise bad_request(f"'{param}' must be a non-empty array.", param, "empty_array")


def _empty_string(param: str) -> NoReturn:
    raise bad_request(f"'{param}' must be a non-empty string.", param, "empty_string")


def _one_of(options) -> str:
    return ", ".join(f"'{o}'" for o in sorted(options))


def _literal(param: str, value: object, allowed) -> None:
    if not isinstance(value, str):
        _type_error(param, "a string", value)
    if value not in allowed:
        _value_error(param, f"'{value}' is not one of {_one_of(allowed)}.")


# --------------------------------------------------------------------------- scalars

def _is_number(v: object) -> bool:
    # bool is an int subclass: a JSON true must not pass as 1.
    return (isinstance(v, (int, float))) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number_in(param: str, v: object, lo: float, hi: float) -> None:
    if not _is_number(v):
        _type_error(param, "a number", v)
    # Written so that NaN fails both comparisons.
    if not v >= lo:
        raise bad_request(f"'{param}' must be >= {lo:g}, got {v!r}.", param, "decimal_below_min_value")
    if not v <= hi:
        raise bad_request(f"'{param}' must be <= {hi:g}, got {v!r}.", param, "decimal_above_max_value")


def _int_in(param: str, v: object, lo: int | None, hi: int | None) -> None:
    if not _is_int(v):
        _type_error(param, "an integer", v)
    if lo is not None and v < lo:
        raise bad_request(f"'{param}' must be >= {lo}, got {v}.", param, "integer_below_min_value")
    if hi is not None and v > hi:
        raise bad_request(f"'{param}' must be <= {hi}, got {v}.", param, "integer_above_max_value")


def _bool(param: str, v: object) -> None:
    if not isinstance(v, bool):
        _type_error(param, "a boolean", v)


def _str(param: str, v: object) -> None:
    if not isinstance(v, str):
        _type_error(param, "a string", v)


def _nonempty_str(param: str, v: object) -> None:
    if not isinstance(v, str):
        _type_error(param, "a string", v)
    if not v:
        _empty_string(param)


def _obj(param: str, v: object) -> dict:
    if not isinstance(v, dict):
        _type_error(param, "an object", v)
    return v


def _list(param: str, v: object) -> list:
    if not isinstance(v, list):
        _type_error(param, "an array", v)
    return v


def _required(obj: dict, key: str, param: str) -> object:
    """obj[key], which must be present (null is present: the caller type-checks it)."""
    try:
        return obj[key]
    except KeyError:
        _missing(f"{param}.{key}")


def _function_name(param: str, v: object) -> None:
    if not isinstance(v, str):
        _type_error(param, "a string", v)
    if _FUNCTION_NAME.fullmatch(v) is None:
        _value_error(param, "a function name is 1 to 64 characters from a-z, A-Z, 0-9, '_' and '-'.")


# --------------------------------------------------------------------------- messages

def _check_parts(param: str, parts: list, allowed: frozenset) -> None:
    if not parts:
        _empty_array(param)
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            _type_error(f"{param}[{j}]", "an object", part)
        ptype = part.get("type")
        if ptype == "text":
            # Checked first: by far the most common part.
            if "text" in allowed:
                text = _required(part, "text", f"{param}[{j}]")
                if not isinstance(text, str):
                    _type_error(f"{param}[{j}].text", "a string", text)
                continue
        elif ptype is None:
            if "type" not in part:
                _missing(f"{param}[{j}].type")
            _type_error(f"{param}[{j}].type", "a string", ptype)
        elif not isinstance(ptype, str):
            _type_error(f"{param}[{j}].type", "a string", ptype)
        elif ptype not in _ALL_PART_TYPES:
            _value_error(f"{param}[{j}].type", f"'{ptype}' is not one of {_one_of(_ALL_PART_TYPES)}.")
        if ptype not in allowed:
            _value_error(
                f"{param}[{j}].type",
                f"'{ptype}' parts are not allowed in this message; use one of {_one_of(allowed)}.",
            )
        p = f"{param}[{j}].{ptype}"
        inner = _required(part, ptype, f"{param}[{j}]")
        if ptype == "image_url":
            _str(f"{p}.url", _required(_obj(p, inner), "url", p))
        elif ptype == "input_audio":
            inner = _obj(p, inner)
            _str(f"{p}.data", _required(inner, "data", p))
            _literal(f"{p}.format", _required(inner, "format", p), _INPUT_AUDIO_FORMATS)
        elif ptype == "file":
            _obj(p, inner)  # file_data / file_id / filename are all optional
        else:  # refusal
            _str(p, inner)


def _check_content(param: str, content: object, allowed: frozenset) -> None:
    if isinstance(content, str):
        return
    if isinstance(content, list):
        _check_parts(param, content, allowed)
        return
    _type_error(param, "a string or an array of content parts", content)


def _check_tool_calls(param: str, calls: object) -> None:
    calls = _list(param, calls)
    if not calls:
        _empty_array(param)
    for k, call in enumerate(calls):
        p = f"{param}[{k}]"
        call = _obj(p, call)
        _str(f"{p}.id", _required(call, "id", p))
        ctype = _required(call, "type", p)
        if ctype == "function":
            fp = f"{p}.function"
            fn = _obj(fp, _required(call, "function", p))
            _str(f"{fp}.name", _required(fn, "name", fp))
            _str(f"{fp}.arguments", _required(fn, "arguments", fp))
        elif ctype == "custom":
            cp = f"{p}.custom"
            custom = _obj(cp, _required(call, "custom", p))
            _str(f"{cp}.name", _required(custom, "name", cp))
            _str(f"{cp}.input", _required(custom, "input", cp))
        else:
            _literal(f"{p}.type", ctype, ("function", "custom"))


def _check_message(i: int, m: object) -> None:
    p = f"messages[{i}]"
    if not isinstance(m, dict):
        _type_error(p, "an object", m)
    role = m.get("role")
    if role not in _ROLES:
        if "role" not in m:
            _missing(f"{p}.role")
        _literal(f"{p}.role", role, _ROLES)

    name = m.get("name")
    if name is not None or "name" in m:
        _str(f"{p}.name", name)

    if role == "assistant":
        tool_calls = m.get("tool_calls")
        if tool_calls is not None:
            _check_tool_calls(f"{p}.tool_calls", tool_calls)
        function_call = m.get("function_call")
        if function_call is not None:
            fp = f"{p}.function_call"
            function_call = _obj(fp, function_call)
            _str(f"{fp}.name", _required(function_call, "name", fp))
            _str(f"{fp}.arguments", _required(function_call, "arguments", fp))
        refusal = m.get("refusal")
        if refusal is not None:
            _str(f"{p}.refusal", refusal)
        audio = m.get("audio")
        if audio is not None:
            _str(f"{p}.audio.id", _required(_obj(f"{p}.audio", audio), "id", f"{p}.audio"))
        content = m.get("content")
        if content is None:
            # Content may be left out (or null) when the turn carries something else.
            if tool_calls is None and function_call is None and refusal is None and audio is None:
                _missing(f"{p}.content")
            return
        _check_content(f"{p}.content", content, _PART_TYPES_BY_ROLE["assistant"])
        return

    if role == "function":
        content = _required(m, "content", p)
        if content is not None:
            _str(f"{p}.content", content)
        _str(f"{p}.name", _required(m, "name", p))
        return

    if "content" not in m:
        _missing(f"{p}.content")
    _check_content(f"{p}.content", m["content"], _PART_TYPES_BY_ROLE[role])
    if role == "tool":
        _str(f"{p}.tool_call_id", _required(m, "tool_call_id", p))


# Fast, conservative predicates for the common message shapes. They build no strings and
# raise nothing; True must imply that the full check (_check_message) would pass, False
# just means "let the full check decide and name the problem". A message with any key
# they do not look at goes to the full check (counted with len(), which is cheaper than a
# key-set comparison).
_ABSENT = object()
_USER_PARTS = _PART_TYPES_BY_ROLE["user"]


def _parts_ok(parts: list, allowed: frozenset) -> bool:
    if not parts:
        return False
    for part in parts:
        if type(part) is not dict:
            return False
        ptype = part.get("type")
        if ptype == "text":
            if type(part.get("text")) is not str:
                return False
        elif ptype == "image_url" and "image_url" in allowed:
            image = part.get("image_url")
            if type(image) is not dict or type(image.get("url")) is not str:
                return False
        else:
            return False
    return True


def _tool_calls_ok(calls: object) -> bool:
    if type(calls) is not list or not calls:
        return False
    for call in calls:
        if type(call) is not dict or call.get("type") != "function" or type(call.get("id")) is not str:
            return False
        fn = call.get("function")
        if type(fn) is not dict or type(fn.get("name")) is not str or type(fn.get("arguments")) is not str:
            return False
    return True


def _message_ok(m: dict) -> bool:
    role = m.get("role")
    content = m.get("content", _ABSENT)
    extra = len(m) - 2  # keys besides role and content (when both are present)
    if role == "user" or role == "system" or role == "developer":
        allowed = _USER_PARTS if role == "user" else _TEXT_ONLY
    elif role == "assistant":
        tool_calls = m.get("tool_calls", _ABSENT)
        if tool_calls is not _ABSENT:
            extra -= 1
            if tool_calls is not None and not _tool_calls_ok(tool_calls):
                return False
        if content is _ABSENT:
            extra += 1
        if content is _ABSENT or content is None:
            if tool_calls is _ABSENT or tool_calls is None:
                return False
            content = ""
        allowed = _TEXT_ONLY
    elif role == "tool":
        if type(m.get("tool_call_id")) is not str:
            return False
        extra -= 1
        allowed = _TEXT_ONLY
    else:
        return False
    if extra:
        # Only `name` (a string) may be left over.
        if extra != 1 or type(m.get("name", _ABSENT)) is not str:
            return False
    if type(content) is str:
        return True
    return type(content) is list and _parts_ok(content, allowed)


def _check_messages(v: object) -> None:
    if not isinstance(v, list):
        _type_error("messages", "an array", v)
    if not v:
        _empty_array("messages")
    plain = _PLAIN_ROLES
    for i, m in enumerate(v):
        if type(m) is dict:
            # Fastest path: {"role": user|assistant|system|developer, "content": "<text>"}.
            # (`plain` is a tuple: `in` must not hash a client-supplied, maybe unhashable, role.)
            if len(m) == 2 and type(m.get("content")) is str and m.get("role") in plain:
                continue
            if _message_ok(m):
                continue
        _check_message(i, m)  # the authority: raises naming the problem, or accepts


# --------------------------------------------------------------------------- tools

def _check_function_def(p: str, fn: object) -> None:
    fn = _obj(p, fn)
    _function_name(f"{p}.name", _required(fn, "name", p))
    if "description" in fn:
        _str(f"{p}.description", fn["description"])
    if "parameters" in fn:
        _obj(f"{p}.parameters", fn["parameters"])
    strict = fn.get("strict")
    if strict is not None:
        _bool(f"{p}.strict", strict)


def _function_tool_ok(tool: object) -> bool:
    """Fast, conservative: True only if _check_tools would accept this tool."""
    if type(tool) is not dict or tool.get("type") != "function":
        return False
    fn = tool.get("function")
    if type(fn) is not dict:
        return False
    name = fn.get("name")
    if type(name) is not str or _FUNCTION_NAME.fullmatch(name) is None:
        return False
    if "description" in fn and type(fn["description"]) is not str:
        return False
    if "parameters" in fn and type(fn["parameters"]) is not dict:
        return False
    strict = fn.get("strict")
    return strict is None or type(strict) is bool


def _check_tool(i: int, tool: object) -> None:
    p = f"tools[{i}]"
    tool = _obj(p, tool)
    ttype = _required(tool, "type", p)
    if ttype == "function":
        _check_function_def(f"{p}.function", _required(tool, "function", p))
    elif ttype == "custom":
        cp = f"{p}.custom"
        custom = _obj(cp, _required(tool, "custom", p))
        _nonempty_str(f"{cp}.name", _required(custom, "name", cp))
        if "description" in custom:
            _str(f"{cp}.description", custom["description"])
        if "format" in custom:
            _obj(f"{cp}.format", custom["format"])
    else:
        _literal(f"{p}.type", ttype, ("function", "custom"))


def _check_tools(v: object) -> None:
    tools = _list("tools", v)
    for i, tool in enumerate(tools):
        if not _function_tool_ok(tool):
            _check_tool(i, tool)  # the authority: raises naming the problem, or accepts


def _check_functions(v: object) -> None:
    for i, fn in enumerate(_list("functions", v)):
        _check_function_def(f"functions[{i}]", fn)


def _check_tool_choice(v: object) -> None:
    if isinstance(v, str):
        if v not in _TOOL_CHOICE_MODES:
            _value_error("tool_choice", f"'{v}' is not one of {_one_of(_TOOL_CHOICE_MODES)}, or an object.")
        return
    if not isinstance(v, dict):
        _type_error("tool_choice", "a string or an object", v)
    ttype = _required(v, "type", "tool_choice")
    if ttype == "function":
        fn = _obj("tool_choice.function", _required(v, "function", "tool_choice"))
        _str("tool_choice.function.name", _required(fn, "name", "tool_choice.function"))
    elif ttype == "custom":
        custom = _obj("tool_choice.custom", _required(v, "custom", "tool_choice"))
        _str("tool_choice.custom.name", _required(custom, "name", "tool_choice.custom"))
    elif ttype == "allowed_tools":
        allowed = _obj("tool_choice.allowed_tools", _required(v, "allowed_tools", "tool_choice"))
        _literal("tool_choice.allowed_tools.mode",
                 _required(allowed, "mode", "tool_choice.allowed_tools"), _ALLOWED_TOOLS_MODES)
        tools = _list("tool_choice.allowed_tools.tools", _required(allowed, "tools", "tool_choice.allowed_tools"))
        for i, t in enumerate(tools):
            _obj(f"tool_choice.allowed_tools.tools[{i}]", t)
    else:
        _literal("tool_choice.type", ttype, ("function", "custom", "allowed_tools"))


def _check_function_call(v: object) -> None:
    if isinstance(v, str):
        if v not in _FUNCTION_CALL_MODES:
            _value_error("function_call", f"'{v}' is not one of {_one_of(_FUNCTION_CALL_MODES)}, or an object.")
        return
    if not isinstance(v, dict):
        _type_error("function_call", "a string or an object", v)
    _str("function_call.name", _required(v, "name", "function_call"))


# --------------------------------------------------------------------------- other fields

def _check_model(v: object) -> None:
    _nonempty_str("model", v)


def _check_response_format(v: object) -> None:
    v = _obj("response_format", v)
    rtype = _required(v, "type", "response_format")
    _literal("response_format.type", rtype, _RESPONSE_FORMATS)
    if rtype == "json_schema":
        js = _obj("response_format.json_schema", _required(v, "json_schema", "response_format"))
        _nonempty_str("response_format.json_schema.name", _required(js, "name", "response_format.json_schema"))
        if "schema" in js:
            _obj("response_format.json_schema.schema", js["schema"])
        if "description" in js:
            _str("response_format.json_schema.description", js["description"])
        strict = js.get("strict")
        if strict is not None:
            _bool("response_format.json_schema.strict", strict)


def _check_stop(v: object) -> None:
    if isinstance(v, str):
        return
    if not isinstance(v, list):
        _type_error("stop", "a string or an array of strings", v)
    if len(v) > _STOP_MAX:
        raise bad_request(f"'stop' takes at most {_STOP_MAX} sequences, got {len(v)}.", "stop", "array_above_max_length")
    for i, s in enumerate(v):
        if not isinstance(s, str):
            _type_error(f"stop[{i}]", "a string", s)


def _check_logit_bias(v: object) -> None:
    for key, bias in _obj("logit_bias", v).items():
        _number_in(f"logit_bias.{key}", bias, -100, 100)


def _check_metadata(v: object) -> None:
    for key, value in _obj("metadata", v).items():
        if not isinstance(value, str):
            _type_error(f"metadata.{key}", "a string", value)


def _check_modalities(v: object) -> None:
    for i, m in enumerate(_list("modalities", v)):
        _literal(f"modalities[{i}]", m, _MODALITIES)


def _check_stream_options(v: object) -> None:
    v = _obj("stream_options", v)
    for key in ("include_usage", "include_obfuscation"):
        flag = v.get(key)
        if flag is not None or key in v:
            _bool(f"stream_options.{key}", flag)


def _check_audio(v: object) -> None:
    v = _obj("audio", v)
    _literal("audio.format", _required(v, "format", "audio"), _AUDIO_FORMATS)
    voice = _required(v, "voice", "audio")
    if isinstance(voice, dict):
        _str("audio.voice.id", _required(voice, "id", "audio.voice"))
    elif not isinstance(voice, str):
        _type_error("audio.voice", "a string or an object", voice)


def _check_prediction(v: object) -> None:
    v = _obj("prediction", v)
    _literal("prediction.type", _required(v, "type", "prediction"), ("content",))
    _check_content("prediction.content", _required(v, "content", "prediction"), _TEXT_ONLY)


def _check_moderation(v: object) -> None:
    v = _obj("moderation", v)
    _str("moderation.model", _required(v, "model", "moderation"))
    policy = v.get("policy")
    if policy is not None:
        _obj("moderation.policy", policy)


def _check_prompt_cache_options(v: object) -> None:
    _obj("prompt_cache_options", v)


def _check_web_search_options(v: object) -> None:
    _obj("web_search_options", v)


def _check_group(v: object) -> None:
    _nonempty_str("group", v)


# The rules as data: the scalar checks below are built from these tables, and the public docs
# (reapi.site) read them through `parameter_rules()`, so a documented range is the enforced one.
REQUIRED: tuple[str, ...] = ("model", "messages")
NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "frequency_penalty": (-2, 2), "presence_penalty": (-2, 2), "temperature": (0, 2), "top_p": (0, 1)}
INT_RANGES: dict[str, tuple[int | None, int | None]] = {
    "max_completion_tokens": (1, None), "max_tokens": (1, None), "n": (1, _N_MAX), "seed": (None, None),
    "top_logprobs": (0, _TOP_LOGPROBS_MAX)}
LITERALS: dict[str, frozenset[str]] = {
    "prompt_cache_retention": _CACHE_RETENTIONS, "reasoning_effort": _REASONING_EFFORTS,
    "service_tier": _SERVICE_TIERS, "verbosity": _VERBOSITIES}
BOOLEANS: frozenset[str] = frozenset({"logprobs", "parallel_tool_calls", "store", "stream"})
STRINGS: frozenset[str] = frozenset({"prompt_cache_key", "safety_identifier", "user", "model", "group"})
# The JSON type of every other field (checked by its own function below).
SHAPES: dict[str, str] = {
    "messages": "array", "audio": "object", "function_call": "string | object", "functions": "array",
    "logit_bias": "object", "metadata": "object", "modalities": "array", "moderation": "object",
    "prediction": "object", "prompt_cache_options": "object", "response_format": "object",
    "stop": "string | array", "stream_options": "object", "tool_choice": "string | object", "tools": "array",
    "web_search_options": "object"}
ENUMS: dict[str, tuple[str, ...]] = {  # literal values inside the structured fields, for the docs
    "messages[].role": _ROLES, "modalities[]": tuple(sorted(_MODALITIES)),
    "response_format.type": tuple(sorted(_RESPONSE_FORMATS)), "tool_choice": tuple(sorted(_TOOL_CHOICE_MODES))}
MAX_ITEMS: dict[str, int] = {"stop": _STOP_MAX}


def parameter_rules() -> list[dict]:
    """Every accepted top-level field with the rule it is checked against: type, required, nullable,
    minimum/maximum (numbers), allowed values (literals), max_items. Sorted by name."""
    out = []
    for name in sorted(KNOWN_FIELDS):
        rule: dict = {"name": name, "required": name in REQUIRED, "nullable": name in _NULLABLE}
        if name in NUMBER_RANGES:
            rule.update(type="number", minimum=NUMBER_RANGES[name][0], maximum=NUMBER_RANGES[name][1])
        elif name in INT_RANGES:
            rule.update(type="integer", minimum=INT_RANGES[name][0], maximum=INT_RANGES[name][1])
        elif name in LITERALS:
            rule.update(type="string", enum=sorted(LITERALS[name]))
        elif name in BOOLEANS:
            rule["type"] = "boolean"
        elif name in STRINGS:
            rule["type"] = "string"
        else:
            rule["type"] = SHAPES[name]
        if name in ENUMS:
            rule["enum"] = list(ENUMS[name])
        if name in MAX_ITEMS:
            rule["max_items"] = MAX_ITEMS[name]
        out.append(rule)
    return out


def _num(name: str, lo: float, hi: float) -> Callable[[object], None]:
    return lambda v: _number_in(name, v, lo, hi)


def _int(name: str, lo: int | None, hi: int | None) -> Callable[[object], None]:
    return lambda v: _int_in(name, v, lo, hi)


def _lit(name: str, allowed: frozenset[str]) -> Callable[[object], None]:
    return lambda v: _literal(name, v, allowed)


def _boolean(name: str) -> Callable[[object], None]:
    return lambda v: _bool(name, v)


def _string(name: str) -> Callable[[object], None]:
    return lambda v: _str(name, v)


# Per-field checks. Each gets the raw value; validate_chat skips nulls on _NULLABLE fields,
# so a null reaching a check is a type error there.
_CHECKS: dict[str, Callable[[object], None]] = {
    "messages": _check_messages,
    "model": _check_model,
    "audio": _check_audio,
    "function_call": _check_function_call,
    "functions": _check_functions,
    "logit_bias": _check_logit_bias,
    "metadata": _check_metadata,
    "modalities": _check_modalities,
    "moderation": _check_moderation,
    "prediction": _check_prediction,
    "prompt_cache_options": _check_prompt_cache_options,
    "response_format": _check_response_format,
    "stop": _check_stop,
    "stream_options": _check_stream_options,
    "tool_choice": _check_tool_choice,
    "tools": _check_tools,
    "web_search_options": _check_web_search_options,
    "group": _check_group,
    **{k: _num(k, lo, hi) for k, (lo, hi) in NUMBER_RANGES.items()},
    **{k: _int(k, lo, hi) for k, (lo, hi) in INT_RANGES.items()},
    **{k: _lit(k, allowed) for k, allowed in LITERALS.items()},
    **{k: _boolean(k) for k in BOOLEANS},
    **{k: _string(k) for k in STRINGS - {"model", "group"}},
}
assert _CHECKS.keys() == KNOWN_FIELDS, "every known field needs a check"
assert _NULLABLE <= KNOWN_FIELDS


# --------------------------------------------------------------------------- entry point

def check_object_fields(body: object, known: frozenset[str]) -> None:
    """400 unless the body is a JSON object whose every field is in `known` (the first unknown one is named)."""
    if not isinstance(body, dict):
        raise bad_request(
            f"The request body must be a JSON object, not {_json_type(body)}.", None, "invalid_type"
        )
    if not known.issuperset(body):
        for key in body:
            if key not in known:
                raise bad_request(f"{_UNKNOWN_MESSAGE}{key}", key, "unknown_parameter")


def validate_chat(body: object) -> None:
    """Raise a 400 GatewayError naming the first problem in a chat-completions body.

    Order: body type, unknown fields (first in body order), missing `model`, missing
    `messages`, each field in body order, then the cross-field rules (`stream_options`
    needs `stream: true`, `top_logprobs` needs `logprobs: true`).
    """
    check_object_fields(body, KNOWN_FIELDS)
    if "model" not in body:
        _missing("model")
    if "messages" not in body:
        _missing("messages")

    checks = _CHECKS
    nullable = _NULLABLE
    for key, value in body.items():
        if value is None and key in nullable:
            continue  # null means absent; on other fields the check reports the type error
        checks[key](value)

    stream_options = body.get("stream_options")
    if stream_options is not None and body.get("stream") is not True:
        _value_error("stream_options", "it is only allowed when 'stream' is true.")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and body.get("logprobs") is not True:
        _value_error("top_logprobs", "it requires 'logprobs' to be true.")


# --------------------------------------------------------------------------- nesting depth

# The deepest JSON nesting a body may have, the body itself counting as level 1. orjson refuses to
# serialise past 254 levels and the gateway re-serialises parts of every body (the upstream request,
# prompt counting), so deeper bodies are refused up front, at parse time, on both routes.
MAX_JSON_DEPTH = 64

_KEEP = bytes.maketrans(b"[]{}", b"()()")
_NOT_KEPT = bytes(b for b in range(256) if b not in b'[]{}"')
_QUOTED = re.compile(rb'"[^"]*"')
_RUNS = re.compile(rb"\(+|\)+")
_LEAF_PASSES = 8


def json_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether valid JSON `raw` nests deeper than `limit` levels, in a few C-speed passes over the bytes.

    Escapes are dropped (then every quote left delimits a string) and only brackets (as parentheses)
    and quotes are kept; a body with at most `limit` brackets is within the limit (the common case).
    Otherwise strings are cut out: empty `""` pairs first, by replace; a regex runs only if a string
    held brackets. Each `replace(b"()", b"")` then removes one level of leaves; what is left after a
    few rounds (deep bodies only) is measured run by run."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = raw.translate(_KEEP, _NOT_KEPT)
    if shape.count(b"(") <= limit:
        return False
    shape = shape.replace(b'""', b"")
    if b'"' in shape:
        shape = _QUOTED.sub(b"", shape)
    for _ in range(_LEAF_PASSES):
        if not shape:
            return False
        shape = shape.replace(b"()", b"")
    depth, budget = 0, limit - _LEAF_PASSES
    for run in _RUNS.findall(shape):
        if run[0] == 40:  # "("
            depth += len(run)
            if depth > budget:
                return True
        else:
            depth -= len(run)
    return False


def _depth_over(value: object, limit: int) -> bool:
    """Whether a parsed value nests deeper than `limit` levels (iterative; only on the refusal path)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > limit:
                return True
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


def check_depth(raw: bytes, body: object) -> None:
    """400 invalid_value when `body` (parsed from `raw`) nests deeper than MAX_JSON_DEPTH; `param` names
    the top-level field that does."""
    if not json_too_deep(raw):
        return
    param = None
    if isinstance(body, dict):
        param = next((k for k, v in body.items() if _depth_over(v, MAX_JSON_DEPTH - 1)), None)
    where = f"'{param}'" if param else "The request body"
    raise bad_request(f"{where} is nested too deeply: at most {MAX_JSON_DEPTH} levels of JSON objects "
                      "and arrays are accepted.", param, "invalid_value")
