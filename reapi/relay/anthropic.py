"""The `anthropic` channel type: Anthropic Messages upstreams behind the OpenAI format.

The client speaks OpenAI Chat Completions; the upstream is
`POST {base_url}/v1/messages` (anthropic-version 2023-06-01). Everything here is
a pure transformation (see reapi.relay.base): no I/O.

Request parameters
==================

Every top-level field of an OpenAI chat request falls in exactly one row. A
field that is absent or `null` is never an error. A field that is present but
in no row is rejected with 400 "Unrecognized request argument" (as OpenAI does),
so nothing the client asked for is ever dropped without notice.

Honoured (translated)
---------------------
=========================  ===================================================
OpenAI                     Anthropic
=========================  ===================================================
model                      model (the channel's upstream name)
messages (system,          system (text blocks, in order, wherever the
developer)                 messages stood in the conversation)
messages (user)            user turn: text / image (data: URI -> base64 source,
                           http(s) -> url source) / file (PDF data: URI ->
                           document block); image `detail` has no equivalent
                           and is ignored
messages (assistant)       assistant turn: text blocks + tool_use blocks
                           (input = parsed JSON arguments); `refusal` parts
                           become text; `name` and `reasoning_content` are not
                           sent (Anthropic cannot accept unsigned thinking)
messages (tool)            user turn of tool_result blocks (tool_use_id =
                           tool_call_id); consecutive results share one turn
(any)                      consecutive same-role turns are merged (Anthropic
                           requires alternation); empty text parts are skipped
                           (Anthropic rejects empty text blocks)
max_completion_tokens /    max_tokens (the value billing passes in; if none,
max_tokens                 the client's, else 4096)
stream                     stream
temperature                temperature (Anthropic's range is 0..1: > 1 is 400;
                           the neutral 1 is not sent, see "Sampling" below)
top_p                      top_p (the neutral 1 is not sent)
stop                       stop_sequences (a string becomes a 1-item list)
tools                      tools {name, description, input_schema, strict}
tool_choice                auto -> auto, required -> any, none -> none,
                           {function: {name}} -> {type: tool, name}
parallel_tool_calls=false  tool_choice.disable_parallel_tool_use = true
                           (true is the default on both sides)
reasoning_effort           thinking {type: enabled, budget_tokens} (see below)
user, safety_identifier    metadata.user_id (`user` wins when both are set)
=========================  ===================================================

Rejected (400, param = the field) when set to a value that changes behaviour
---------------------------------------------------------------------------
n > 1, logprobs=true, top_logprobs (non-zero), logit_bias (non-empty),
presence_penalty / frequency_penalty (non-zero), seed, response_format
json_object / json_schema, audio, modalities other than ["text"], prediction,
functions / function_call (legacy), web_search_options, moderation (OpenAI's
moderated completions). The names are exported
as `UNSUPPORTED_PARAMS`. Inside messages: role "function", input_audio parts,
file_id references, non-PDF files, other image types than jpeg/png/gif/webp,
assistant `audio` / `function_call`, non-function tools and tool calls.

Ignored (no effect on the answer, or nothing Anthropic can do with them)
------------------------------------------------------------------------
store, metadata (OpenAI's stored-completion tags), service_tier,
stream_options (the relay asks the converter for the usage chunk instead),
parallel_tool_calls=true, prompt_cache_key / prompt_cache_options /
prompt_cache_retention (OpenAI cache hints; content parts' prompt_cache_breakpoint
is likewise not translated), verbosity, group (reapi's own field, normally
stripped before the adapter). Exported as `IGNORED_PARAMS`.

reasoning_effort -> extended thinking
=====================================
Anthropic requires 1024 <= budget_tokens < max_tokens. The nominal budget is
capped at half the output cap so the answer keeps at least half of it:

    budget = max(1024, min(NOMINAL[effort], max_tokens // 2))

=============  =======  =========================================
effort         nominal  e.g. max_tokens=4096 / 16384 / 64000
=============  =======  =========================================
none / absent  -        no `thinking` field
minimal        1024     1024 / 1024 / 1024
low            2048     2048 / 2048 / 2048
medium         8192     2048 / 8192 / 8192
high           16384    2048 / 8192 / 16384
xhigh          32768    2048 / 8192 / 32000
max            65536    2048 / 8192 / 32000
=============  =======  =========================================

With max_tokens <= 1024 no valid budget exists: 400 (param reasoning_effort).
Anthropic does not accept sampling changes while thinking, so temperature and
top_p are then never sent: the neutral value 1 is accepted (and, as always,
omitted), any other value is 400 (param temperature / top_p). Thinking also
cannot be combined with a forced tool (tool_choice required / named): 400
(param tool_choice).

Sampling
========
temperature = 1 and top_p = 1 change nothing (1 is Anthropic's default
temperature; nucleus sampling at 1 keeps the whole distribution), so they are
never sent: OpenAI clients often send both defaults, and recent Claude models
reject a request carrying both temperature and top_p, the newest ones any
temperature at all. Other values are sent as asked; if the model refuses them,
Anthropic's invalid_request_error message reaches the client as a 400.

Responses
=========
Text blocks -> message.content; tool_use -> message.tool_calls; thinking ->
message.reasoning_content (redacted thinking is not readable and is skipped).
stop_reason: end_turn / stop_sequence / pause_turn -> stop, max_tokens /
model_context_window_exceeded -> length, tool_use -> tool_calls, refusal ->
content_filter. Usage: prompt_tokens = input + cache read + cache creation
(Anthropic's input_tokens excludes both), cached_tokens = cache read.

Errors (map_error, and `error` events inside a stream)
======================================================
invalid_request_error -> 400 (Anthropic's message, scrubbed); other 4xx types
we do not know -> 400 likewise (Anthropic's documented catch-all);
authentication / permission -> 502 upstream_auth_failed (generic text: the key
is the gateway's); billing -> 502; not_found -> 502 upstream_not_found (model
mapping); request_too_large -> 413; rate_limit -> 429 upstream_rate_limited;
api_error -> 502; overloaded (529) -> 503 upstream_overloaded. An unreadable
body -> 502, except 413 / 429 / 529, which mean the same whatever the body
(Cloudflare answers 413 in HTML). Messages never carry the channel's key, URL
or host, nor anything shaped like an Anthropic key.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from reapi.catalog import Channel
from reapi.errors import GatewayError, bad_request
from reapi.relay.base import Adapter, StreamConverter, UpstreamRequest, Usage
from reapi.relay.openai import redirect_error
from reapi.relay.scrub import scrub
from reapi.relay.usage import anthropic_stream_usage, anthropic_usage

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024

# Nominal thinking budgets per OpenAI reasoning_effort; see the module docstring.
THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 65536,
}

HONOURED_PARAMS: frozenset[str] = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "stream", "temperature", "top_p",
    "stop", "tools", "tool_choice", "parallel_tool_calls", "reasoning_effort", "user", "safety_identifier",
})
UNSUPPORTED_PARAMS: frozenset[str] = frozenset({
    "n", "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "seed",
    "response_format", "audio", "modalities", "prediction", "functions", "function_call",
    "web_search_options", "moderation",
})
IGNORED_PARAMS: frozenset[str] = frozenset({
    "store", "metadata", "service_tier", "stream_options", "prompt_cache_key", "prompt_cache_options",
    "prompt_cache_retention", "verbosity", "group",
})

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str:
    return _FINISH.get(stop_reason or "end_turn", "stop")


# ---------------------------------------------------------------- request

def _reject(param: str, what: str) -> GatewayError:
    return bad_request(f"{what} is not supported by this model's provider (Anthropic).", param=param)


def _check_unsupported(body: dict) -> None:
    g = body.get
    if g("n") is not None and g("n") != 1:
        raise _reject("n", "n > 1")
    if g("logprobs"):
        raise _reject("logprobs", "logprobs")
    if g("top_logprobs") not in (None, 0):
        raise _reject("top_logprobs", "top_logprobs")
    if g("logit_bias"):
        raise _reject("logit_bias", "logit_bias")
    for p in ("presence_penalty", "frequency_penalty"):
        if g(p) not in (None, 0):
            raise _reject(p, p)
    if g("seed") is not None:
        raise _reject("seed", "seed")
    rf = g("response_format")
    if rf is not None and not (isinstance(rf, dict) and rf.get("type") == "text"):
        kind = rf.get("type") if isinstance(rf, dict) else None
        raise _reject("response_format", f"response_format {kind!r}" if kind else "response_format")
    if g("audio") is not None:
        raise _reject("audio", "Audio output")
    mods = g("modalities")
    if mods is not None and list(mods) != ["text"]:
        raise _reject("modalities", "modalities other than [\"text\"]")
    if g("prediction") is not None:
        raise _reject("prediction", "prediction")
    for p in ("functions", "function_call"):
        if g(p) is not None:
            raise _reject(p, f"The legacy `{p}` field (use tools / tool_choice)")
    if g("web_search_options") is not None:
        raise _reject("web_search_options", "web_search_options")
    if g("moderation") is not None:
        raise _reject("moderation", "moderation")
    for key, value in body.items():
        if value is None:
            continue
        if key not in HONOURED_PARAMS and key not in UNSUPPORTED_PARAMS and key not in IGNORED_PARAMS:
            raise bad_request(f"Unrecognized request argument supplied: {key}", param=key, code="unknown_parameter")


def _parts(content: Any, param: str) -> list[dict]:
    """OpenAI message content (string or list of parts) -> list of parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        for j, p in enumerate(content):
            if not isinstance(p, dict):
                raise bad_request(f"{param}[{j}] must be an object.", param=param)
        return content
    raise bad_request(f"{param} must be a string or an array of content parts.", param=param)


def _text_only(content: Any, param: str, allow_refusal: bool = False) -> list[dict]:
    blocks = []
    for p in _parts(content, param):
        kind = p.get("type")
        if kind == "text":
            text = p.get("text")
        elif kind == "refusal" and allow_refusal:
            text = p.get("refusal")
        else:
            raise bad_request(f"Content part type {kind!r} is not supported in {param} by this model's provider.",
                              param=param)
        if not isinstance(text, str):
            raise bad_request(f"{param}: a text part needs a string `text`.", param=param)
        if text:
            blocks.append({"type": "text", "text": text})
    return blocks


def _parse_data_uri(uri: str, param: str) -> tuple[str, str]:
    header, sep, data = uri[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding.lower() != "base64" or not data:
        raise bad_request(f"{param}: only base64 data: URIs are supported.", param=param)
    return media_type.strip().lower(), data


def _image_block(part: dict, param: str) -> dict:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise bad_request(f"{param}: image_url.url is required.", param=param)
    if url[:5].lower() == "data:":
        media_type, data = _parse_data_uri(url, param)
        if media_type == "image/jpg":
            media_type = "image/jpeg"
        if media_type not in _IMAGE_TYPES:
            raise bad_request(f"{param}: image type {media_type!r} is not supported by this model's provider "
                              "(jpeg, png, gif, webp).", param=param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url[:7].lower() == "http://" or url[:8].lower() == "https://":
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request(f"{param}: image_url.url must be an http(s) URL or a data: URI.", param=param)


def _file_block(part: dict, param: str) -> dict:
    f = part.get("file") or {}
    data_uri = f.get("file_data")
    if not isinstance(data_uri, str) or data_uri[:5].lower() != "data:":
        raise bad_request(f"{param}: only inline PDF files (file_data as a data: URI) are supported by this "
                          "model's provider; file_id references are not.", param=param)
    media_type, data = _parse_data_uri(data_uri, param)
    if media_type != "application/pdf":
        raise bad_request(f"{param}: file type {media_type!r} is not supported (PDF only).", param=param)
    block: dict = {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if f.get("filename"):
        block["title"] = f["filename"]
    return block


def _user_blocks(content: Any, param: str) -> list[dict]:
    blocks = []
    for p in _parts(content, param):
        kind = p.get("type")
        if kind == "text":
            text = p.get("text")
            if not isinstance(text, str):
                raise bad_request(f"{param}: a text part needs a string `text`.", param=param)
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image_block(p, param))
        elif kind == "file":
            blocks.append(_file_block(p, param))
        else:
            raise bad_request(f"Content part type {kind!r} is not supported by this model's provider.", param=param)
    return blocks


def _assistant_blocks(m: dict, i: int) -> list[dict]:
    for field in ("audio", "function_call"):
        if m.get(field) is not None:
            raise bad_request(f"messages[{i}].{field} is not supported by this model's provider.",
                              param=f"messages[{i}].{field}")
    blocks = _text_only(m.get("content"), f"messages[{i}].content", allow_refusal=True)
    param = f"messages[{i}].tool_calls"
    for tc in m.get("tool_calls") or ():
        if not isinstance(tc, dict) or tc.get("type", "function") != "function":
            raise bad_request(f"{param}: only function tool calls are supported by this model's provider.",
                              param=param)
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        if args is None or (isinstance(args, str) and not args.strip()):
            parsed: Any = {}
        else:
            try:
                parsed = orjson.loads(args) if isinstance(args, str) else None
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                raise bad_request(f"{param}: function.arguments of tool call {tc.get('id')!r} must be a JSON object.",
                                  param=param)
        blocks.append({"type": "tool_use", "id": tc.get("id"), "name": fn.get("name"), "input": parsed})
    return blocks


def _tool_result_block(m: dict, i: int) -> dict:
    tool_call_id = m.get("tool_call_id")
    if not tool_call_id:
        raise bad_request(f"messages[{i}].tool_call_id is required.", param=f"messages[{i}].tool_call_id")
    block: dict = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = m.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        texts = _text_only(content, f"messages[{i}].content")
        if texts:
            block["content"] = texts
    return block


def convert_messages(messages: list) -> tuple[list[dict], list[dict]]:
    """OpenAI messages -> (Anthropic system blocks, alternating Anthropic turns)."""
    system: list[dict] = []
    turns: list[dict] = []

    def push(role: str, blocks: list[dict]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise bad_request(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(_text_only(m.get("content"), f"messages[{i}].content"))
        elif role == "user":
            push("user", _user_blocks(m.get("content"), f"messages[{i}].content"))
        elif role == "assistant":
            push("assistant", _assistant_blocks(m, i))
        elif role == "tool":
            push("user", [_tool_result_block(m, i)])
        else:
            raise bad_request(f"messages[{i}].role {role!r} is not supported by this model's provider.",
                              param=f"messages[{i}].role")
    return system, turns


def _convert_tools(tools: list) -> list[dict]:
    out = []
    for j, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type", "function") != "function":
            raise bad_request("Only function tools are supported by this model's provider.", param=f"tools[{j}].type")
        fn = t.get("function") or {}
        if not fn.get("name"):
            raise bad_request(f"tools[{j}].function.name is required.", param=f"tools[{j}].function.name")
        tool: dict = {"name": fn["name"]}
        if fn.get("description"):
            tool["description"] = fn["description"]
        tool["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        if fn.get("strict"):
            tool["strict"] = True
        out.append(tool)
    return out


def _convert_tool_choice(tc: Any, has_tools: bool) -> dict | None:
    if tc is None:
        return None
    if tc == "auto":
        return {"type": "auto"} if has_tools else None
    if tc == "none":
        return {"type": "none"} if has_tools else None
    if tc == "required":
        choice = {"type": "any"}
    elif isinstance(tc, dict) and tc.get("type") == "function" and (tc.get("function") or {}).get("name"):
        choice = {"type": "tool", "name": tc["function"]["name"]}
    else:
        raise bad_request("This tool_choice is not supported by this model's provider "
                          "(use auto, none, required or a named function).", param="tool_choice")
    if not has_tools:
        raise bad_request("tool_choice requires tools.", param="tool_choice")
    return choice


def thinking_budget(effort: str, max_tokens: int) -> int:
    """The budget_tokens sent for an OpenAI reasoning_effort (see the module docstring)."""
    nominal = THINKING_BUDGETS.get(effort)
    if nominal is None:
        raise bad_request(f"reasoning_effort {effort!r} is not supported.", param="reasoning_effort")
    if max_tokens <= MIN_THINKING_BUDGET:
        raise bad_request(
            f"reasoning_effort {effort!r} needs an output limit above {MIN_THINKING_BUDGET} tokens on this model "
            f"(the limit is {max_tokens}); raise max_completion_tokens or set reasoning_effort to \"none\".",
            param="reasoning_effort")
    return max(MIN_THINKING_BUDGET, min(nominal, max_tokens // 2))


def upstream_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    return base + "/v1/messages"


def build_payload(body: dict, upstream_model: str, *, stream: bool, max_tokens: int | None) -> dict:
    _check_unsupported(body)
    if max_tokens is None:
        for key in ("max_completion_tokens", "max_tokens"):
            if body.get(key) is not None:
                max_tokens = body[key]
                break
        else:
            max_tokens = DEFAULT_MAX_TOKENS

    system, turns = convert_messages(body.get("messages") or [])
    out: dict = {"model": upstream_model, "max_tokens": max_tokens}
    if system:
        out["system"] = system
    out["messages"] = turns

    tools = body.get("tools") or []
    if tools:
        out["tools"] = _convert_tools(tools)
    choice = _convert_tool_choice(body.get("tool_choice"), bool(tools))
    if body.get("parallel_tool_calls") is False and tools and (choice is None or choice["type"] != "none"):
        choice = dict(choice or {"type": "auto"})
        choice["disable_parallel_tool_use"] = True
    if choice is not None:
        out["tool_choice"] = choice

    temperature = body.get("temperature")
    top_p = body.get("top_p")
    if temperature is not None and not 0 <= temperature <= 1:
        raise bad_request(f"temperature must be between 0 and 1 for this model (got {temperature}).",
                          param="temperature")

    effort = body.get("reasoning_effort")
    if effort is not None and effort != "none":
        out["thinking"] = {"type": "enabled", "budget_tokens": thinking_budget(effort, max_tokens)}
        if choice is not None and choice["type"] in ("any", "tool"):
            raise bad_request("A forced tool_choice cannot be combined with reasoning_effort on this model.",
                              param="tool_choice")
        for name, value in (("temperature", temperature), ("top_p", top_p)):
            if value is not None and value != 1:
                raise bad_request(f"{name} cannot be changed while reasoning_effort is set on this model.",
                                  param=name)
    else:
        if temperature is not None and temperature != 1:
            out["temperature"] = temperature
        if top_p is not None and top_p != 1:
            out["top_p"] = top_p

    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif stop:
        out["stop_sequences"] = list(stop)

    user_id = body.get("user") or body.get("safety_identifier")
    if user_id:
        out["metadata"] = {"user_id": user_id}
    if stream:
        out["stream"] = True
    return out


# ---------------------------------------------------------------- responses

def usage_from_anthropic(u: object) -> Usage | None:
    """An Anthropic `usage` object (a message's, or message_start's merged with message_delta's) in billing
    terms, or None when it is absent or malformed (see reapi.relay.usage: billed on our own count).

    prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens
    (Anthropic's input_tokens excludes both cache parts; ours counts every input token),
    cached_tokens = the cache read, cache_write_tokens = the cache creation,
    completion_tokens = output_tokens. Missing or null cache fields count as 0."""
    return anthropic_usage(u)


def openai_usage(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _bad_upstream(what: str) -> GatewayError:
    return GatewayError(502, f"The upstream provider returned {what}.", type="upstream_error", code="upstream_error")


# ---------------------------------------------------------------- errors

_AUTH_MESSAGE = ("The upstream provider rejected this gateway's credentials for the model. "
                 "This is not a problem with your API key; the operator has to fix the channel.")
# Anthropic error type -> (status, type, code, message or None to pass the upstream message through)
_ERRORS: dict[str, tuple[int, str, str | None, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None, None),
    "authentication_error": (502, "upstream_error", "upstream_auth_failed", _AUTH_MESSAGE),
    "permission_error": (502, "upstream_error", "upstream_auth_failed", _AUTH_MESSAGE),
    "billing_error": (502, "upstream_error", "upstream_error",
                      "The upstream provider refused the call for a billing reason on the gateway's account."),
    "not_found_error": (502, "upstream_error", "upstream_not_found",
                        "The upstream provider does not know the model this gateway mapped the request to."),
    "request_too_large": (413, "invalid_request_error", "request_too_large",
                          "The request is larger than the upstream provider accepts."),
    "rate_limit_error": (429, "upstream_error", "upstream_rate_limited",
                         "The upstream provider is rate limiting this gateway; retry shortly."),
    "api_error": (502, "upstream_error", "upstream_error", "The upstream provider hit an internal error."),
    "overloaded_error": (503, "upstream_error", "upstream_overloaded",
                         "The upstream provider is temporarily overloaded; retry shortly."),
}
_STATUS_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    529: "overloaded_error",
}
_TYPE_STATUS = {t: s for s, t in _STATUS_TYPES.items()}
# Statuses that mean the same thing whatever the body (Cloudflare answers 413 before the API does).
_STATUS_ONLY = {413, 429, 529}


def error_from_anthropic(status: int, err_type: str | None, message: Any, channel: Channel | None) -> GatewayError:
    if not isinstance(err_type, str) or err_type not in _ERRORS:
        fallback = _STATUS_TYPES.get(status)
        if fallback is not None:
            err_type = fallback
        elif 400 <= status < 500:
            # Anthropic documents invalid_request_error as its catch-all for other 4xx statuses.
            err_type = "invalid_request_error"
        else:
            err_type = "api_error"
    out_status, out_type, code, generic = _ERRORS[err_type]
    if generic is None:
        text = message if isinstance(message, str) and message else "The upstream provider rejected the request."
        generic = scrub(text, channel)
    return GatewayError(out_status, generic, type=out_type, code=code)


# ---------------------------------------------------------------- stream

class AnthropicStreamConverter(StreamConverter):
    """Anthropic Messages SSE events -> OpenAI chat.completion.chunk events."""

    def __init__(self, public_model: str, upstream_model: str, include_usage: bool,
                 channel: Channel | None = None) -> None:
        self.public_model = public_model
        self.channel = channel  # whose secrets to scrub from `error` events
        self.upstream_model = upstream_model
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.finished = False
        self._id = "chatcmpl-" + uuid.uuid4().hex
        self._created = int(time.time())
        self._input: dict = {}
        self._blocks: dict[int, tuple[str, int]] = {}  # content block index -> (kind, tool call index)
        self._tool_args: dict[int, bool] = {}  # tool call index -> any arguments streamed yet
        self._tools = 0
        self._text: list[str] = []

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        obj: dict = {
            "id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self.public_model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            obj["usage"] = None
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def _tool_delta(self, k: int, function: dict, **extra: Any) -> bytes:
        return self._chunk({"tool_calls": [{"index": k, **extra, "function": function}]})

    def feed(self, data: bytes) -> list[bytes]:
        try:
            ev = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _bad_upstream("an unreadable stream event") from None
        if not isinstance(ev, dict):
            raise _bad_upstream("an unreadable stream event")
        kind = ev.get("type")

        if kind == "message_start":
            msg = ev.get("message")
            msg = msg if isinstance(msg, dict) else {}
            if isinstance(msg.get("id"), str) and msg["id"]:
                self._id = "chatcmpl-" + msg["id"]
            usage = msg.get("usage")
            self._input = dict(usage) if isinstance(usage, dict) else {}
            return [self._chunk({"role": "assistant", "content": ""})]

        if kind == "content_block_start":
            index, block = ev.get("index"), ev.get("content_block") or {}
            btype = block.get("type")
            if btype == "tool_use":
                k = self._tools
                self._tools += 1
                self._blocks[index] = ("tool_use", k)
                self._tool_args[k] = False
                return [self._tool_delta(k, {"name": block.get("name"), "arguments": ""},
                                         id=block.get("id"), type="function")]
            self._blocks[index] = (btype, -1)
            if btype == "text" and block.get("text"):
                self._text.append(block["text"])
                return [self._chunk({"content": block["text"]})]
            if btype == "thinking" and block.get("thinking"):
                self._text.append(block["thinking"])
                return [self._chunk({"reasoning_content": block["thinking"]})]
            return []

        if kind == "content_block_delta":
            delta = ev.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text") or ""
                self._text.append(text)
                return [self._chunk({"content": text})] if text else []
            if dtype == "input_json_delta":
                part = delta.get("partial_json") or ""
                _, k = self._blocks.get(ev.get("index"), ("", -1))
                if not part or k < 0:
                    return []
                self._tool_args[k] = True
                self._text.append(part)
                return [self._tool_delta(k, {"arguments": part})]
            if dtype == "thinking_delta":
                text = delta.get("thinking") or ""
                self._text.append(text)
                return [self._chunk({"reasoning_content": text})] if text else []
            return []  # signature_delta, citations_delta

        if kind == "content_block_stop":
            btype, k = self._blocks.get(ev.get("index"), ("", -1))
            if btype == "tool_use" and not self._tool_args.get(k):
                # A tool without arguments streams no JSON at all; OpenAI clients expect a parseable object.
                self._tool_args[k] = True
                self._text.append("{}")
                return [self._tool_delta(k, {"arguments": "{}"})]
            return []

        if kind == "message_delta":
            self.usage = anthropic_stream_usage(self._input, ev.get("usage"))
            stop = (ev.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, finish_reason(stop))]

        if kind == "message_stop":
            self.finished = True
            if not self.include_usage:
                return []
            # Without a valid report the call is billed on our own count, which the client cannot see here.
            obj = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                   "model": self.public_model, "choices": [],
                   "usage": openai_usage(self.usage) if self.usage is not None else None}
            return [b"data: " + orjson.dumps(obj) + b"\n\n"]

        if kind == "error":
            err = ev.get("error")
            err = err if isinstance(err, dict) else {"message": err}
            err_type = err.get("type") if isinstance(err.get("type"), str) else None
            status = _TYPE_STATUS.get(err_type, 500)
            raise error_from_anthropic(status, err_type, err.get("message"), self.channel)

        return []  # ping and future event types

    def produced_text(self) -> str:
        return "".join(self._text)

    def input_usage(self) -> Usage | None:
        """The prompt side of the usage as Anthropic counted it in message_start (input + cache read + cache
        creation), completion_tokens left 0; None before message_start or when it carried no usage.

        For a stream cut short before message_delta: the relay charges this prompt count rather than its own
        estimate, and counts the completion from produced_text()."""
        return anthropic_usage(self._input, prompt_only=True) if self._input else None


# ---------------------------------------------------------------- adapter

class AnthropicAdapter(Adapter):
    requires_max_tokens = True  # Anthropic requires max_tokens: always send the cap billing decided
    tokenizer_family = "claude"  # o200k + a margin (reapi.billing.tokens)

    def build_request(
        self, channel: Channel, body: dict, upstream_model: str, *, stream: bool, max_tokens: int | None
    ) -> UpstreamRequest:
        payload = build_payload(body, upstream_model, stream=stream, max_tokens=max_tokens)
        headers = {
            "x-api-key": channel.api_key,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
        }
        return UpstreamRequest(url=upstream_url(channel.base_url), headers=headers, body=orjson.dumps(payload))

    def parse_response(self, raw: bytes, public_model: str) -> tuple[bytes, Usage | None]:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _bad_upstream("an unreadable response") from None
        if not isinstance(msg, dict):
            raise _bad_upstream("an unreadable response")
        if msg.get("type") == "error":
            err = msg.get("error")
            err = err if isinstance(err, dict) else {}
            # No channel here to scrub with: the upstream's text is not relayed, only its type's generic one.
            raise error_from_anthropic(500, err.get("type"), None, None)
        content = msg.get("content")
        if not isinstance(content, list):
            raise _bad_upstream("a response without content")

        texts: list[str] = []
        thinking: list[str] = []
        tool_calls: list[dict] = []
        for block in content:
            btype = block.get("type") if isinstance(block, dict) else None
            if btype == "text":
                texts.append(block.get("text") or "")
            elif btype == "thinking":
                thinking.append(block.get("thinking") or "")
            elif btype == "tool_use":
                tool_calls.append({
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"),
                                 "arguments": orjson.dumps(block.get("input") or {}).decode()},
                })
        message: dict = {
            "role": "assistant",
            "content": None if (not texts and tool_calls) else "".join(texts),
            "refusal": None,
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        if thinking:
            message["reasoning_content"] = "".join(thinking)

        usage = usage_from_anthropic(msg.get("usage"))  # None: billed on our count, no usage in the answer
        out = {
            "id": "chatcmpl-" + str(msg.get("id") or uuid.uuid4().hex),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": public_model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason(msg.get("stop_reason"))}],
        }
        if usage is not None:
            out["usage"] = openai_usage(usage)
        return orjson.dumps(out), usage

    def stream_converter(self, public_model: str, upstream_model: str, include_usage: bool,
                         channel: Channel | None = None) -> AnthropicStreamConverter:
        return AnthropicStreamConverter(public_model, upstream_model, include_usage, channel)

    def map_error(self, status: int, raw: bytes, channel: Channel) -> GatewayError:
        if 300 <= status < 400:
            return redirect_error(status)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        err = obj.get("error") if isinstance(obj, dict) else None
        if not isinstance(err, dict):
            if status in _STATUS_ONLY:
                return error_from_anthropic(status, _STATUS_TYPES[status], None, channel)
            return GatewayError(502, f"The upstream provider returned an unreadable error (HTTP {status}).",
                                type="upstream_error", code="upstream_error")
        return error_from_anthropic(status, err.get("type"), err.get("message"), channel)


ADAPTER = AnthropicAdapter()
