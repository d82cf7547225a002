"""OpenAI chat request -> Anthropic Messages payload (docs/anthropic.md, "Request parameters"). Pure: no I/O."""
from __future__ import annotations

from typing import Any

import orjson

from reapi.errors import GatewayError, bad_request

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
    "response_format",
})
UNSUPPORTED_PARAMS: frozenset[str] = frozenset({
    "n", "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "seed",
    "audio", "modalities", "prediction", "functions", "function_call",
    "web_search_options", "moderation",
})
UNSUPPORTED = "unsupported_parameter"  # the code of every 400 for what Anthropic cannot honour
# response_format json_object: Claude has no schema-less JSON mode (its structured outputs need a schema
# whose every object closes with additionalProperties false), so the nearest is this system instruction.
JSON_OBJECT_INSTRUCTION = ("Respond with one valid JSON object and nothing else: no prose before or after it, "
                           "no Markdown code fences.")
IGNORED_PARAMS: frozenset[str] = frozenset({
    "store", "metadata", "service_tier", "stream_options", "prompt_cache_key", "prompt_cache_options",
    "prompt_cache_retention", "verbosity", "group",
})
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _reject(param: str, what: str) -> GatewayError:
    return _cannot(f"{what} is not supported by this model's provider (Anthropic).", param)


def _cannot(message: str, param: str | None = None) -> GatewayError:
    """bad_request for what this provider cannot honour: code unsupported_parameter."""
    return bad_request(message, param=param, code=UNSUPPORTED)


def push_turn(turns: list[dict], role: str, blocks: list[dict]) -> None:
    """Append blocks to the conversation, merged into the last turn when it has the same role (Claude's turns
    alternate); nothing for no blocks."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def with_parallel_flag(choice: dict | None, has_tools: bool, parallel_tool_calls: Any) -> dict | None:
    """tool_choice with disable_parallel_tool_use when the client set parallel_tool_calls false (and tools can
    be called)."""
    if parallel_tool_calls is False and has_tools and (choice is None or choice["type"] != "none"):
        choice = dict(choice or {"type": "auto"})
        choice["disable_parallel_tool_use"] = True
    return choice


def clamp_budget(nominal: int, max_tokens: int) -> int:
    """budget_tokens for a nominal thinking budget: min(nominal, max_tokens // 2), at least MIN_THINKING_BUDGET."""
    return max(MIN_THINKING_BUDGET, min(nominal, max_tokens // 2))


def sampling(out: dict, budget: int | None, choice: dict | None, temperature: Any, top_p: Any, *,
             forced_choice: str, locked: str) -> None:
    """Thinking (budget set) or temperature/top_p into the payload. Claude's thinking refuses a forced
    tool_choice (`forced_choice` is that 400's message) and any temperature/top_p but 1 (`locked`, with
    {name}); 1 is Claude's default and is not sent."""
    if budget is not None:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if choice is not None and choice["type"] in ("any", "tool"):
            raise _cannot(forced_choice, param="tool_choice")
        for name, value in (("temperature", temperature), ("top_p", top_p)):
            if value is not None and value != 1:
                raise _cannot(locked.format(name=name), param=name)
    else:
        if temperature is not None and temperature != 1:
            out["temperature"] = temperature
        if top_p is not None and top_p != 1:
            out["top_p"] = top_p


def output_format(rf: Any) -> tuple[dict | None, bool]:
    """response_format -> (Claude's output_config.format, or None; whether to ask for a JSON object).
    The chat route has already checked the shape (reapi.api.validation)."""
    if rf is None:
        return None, False
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind == "text":
        return None, False
    if kind == "json_object":
        return None, True
    if kind == "json_schema":
        js = rf.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        if not isinstance(schema, dict):
            raise _cannot("response_format json_schema needs json_schema.schema (a JSON Schema object) on "
                          "this model's provider (Anthropic).", "response_format.json_schema.schema")
        return {"type": "json_schema", "schema": schema}, False
    raise _reject("response_format", f"response_format {kind!r}" if kind else "response_format")


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
            raise _cannot(f"Content part type {kind!r} is not supported in {param} by this model's provider.",
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
        raise _cannot(f"{param}: only base64 data: URIs are supported.", param=param)
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
            raise _cannot(f"{param}: image type {media_type!r} is not supported by this model's provider "
                              "(jpeg, png, gif, webp).", param=param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url[:7].lower() == "http://" or url[:8].lower() == "https://":
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request(f"{param}: image_url.url must be an http(s) URL or a data: URI.", param=param)


def _file_block(part: dict, param: str) -> dict:
    f = part.get("file") or {}
    data_uri = f.get("file_data")
    if not isinstance(data_uri, str) or data_uri[:5].lower() != "data:":
        raise _cannot(f"{param}: only inline PDF files (file_data as a data: URI) are supported by this "
                          "model's provider; file_id references are not.", param=param)
    media_type, data = _parse_data_uri(data_uri, param)
    if media_type != "application/pdf":
        raise _cannot(f"{param}: file type {media_type!r} is not supported (PDF only).", param=param)
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
            raise _cannot(f"Content part type {kind!r} is not supported by this model's provider.", param=param)
    return blocks


def _assistant_blocks(m: dict, i: int) -> list[dict]:
    for field in ("audio", "function_call"):
        if m.get(field) is not None:
            raise _cannot(f"messages[{i}].{field} is not supported by this model's provider.",
                              param=f"messages[{i}].{field}")
    blocks = _text_only(m.get("content"), f"messages[{i}].content", allow_refusal=True)
    param = f"messages[{i}].tool_calls"
    for tc in m.get("tool_calls") or ():
        if not isinstance(tc, dict) or tc.get("type", "function") != "function":
            raise _cannot(f"{param}: only function tool calls are supported by this model's provider.",
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
        push_turn(turns, role, blocks)

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
            raise _cannot(f"messages[{i}].role {role!r} is not supported by this model's provider.",
                              param=f"messages[{i}].role")
    return system, turns


def _convert_tools(tools: list) -> list[dict]:
    out = []
    for j, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type", "function") != "function":
            raise _cannot("Only function tools are supported by this model's provider.", param=f"tools[{j}].type")
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
        raise _cannot("This tool_choice is not supported by this model's provider "
                          "(use auto, none, required or a named function).", param="tool_choice")
    if not has_tools:
        raise bad_request("tool_choice requires tools.", param="tool_choice")
    return choice


def thinking_budget(effort: str, max_tokens: int) -> int:
    """The budget_tokens sent for an OpenAI reasoning_effort (see the module docstring)."""
    nominal = THINKING_BUDGETS.get(effort)
    if nominal is None:
        raise _cannot(f"reasoning_effort {effort!r} is not supported.", param="reasoning_effort")
    if max_tokens <= MIN_THINKING_BUDGET:
        raise _cannot(
            f"reasoning_effort {effort!r} needs an output limit above {MIN_THINKING_BUDGET} tokens on this model "
            f"(the limit is {max_tokens}); raise max_completion_tokens or set reasoning_effort to \"none\".",
            param="reasoning_effort")
    return clamp_budget(nominal, max_tokens)


def upstream_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    return base + "/v1/messages"


def count_tokens_url(base_url: str) -> str:
    """The channel's token-counting endpoint (POST /v1/messages/count_tokens)."""
    return upstream_url(base_url) + "/count_tokens"


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
    fmt, json_object = output_format(body.get("response_format"))
    if json_object:
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    out: dict = {"model": upstream_model, "max_tokens": max_tokens}
    if system:
        out["system"] = system
    out["messages"] = turns
    if fmt is not None:
        out["output_config"] = {"format": fmt}

    tools = body.get("tools") or []
    if tools:
        out["tools"] = _convert_tools(tools)
    choice = with_parallel_flag(_convert_tool_choice(body.get("tool_choice"), bool(tools)), bool(tools),
                                body.get("parallel_tool_calls"))
    if choice is not None:
        out["tool_choice"] = choice

    temperature = body.get("temperature")
    top_p = body.get("top_p")
    if temperature is not None and not 0 <= temperature <= 1:
        raise _cannot(f"temperature must be between 0 and 1 for this model (got {temperature}).",
                          param="temperature")

    effort = body.get("reasoning_effort")
    budget = thinking_budget(effort, max_tokens) if effort is not None and effort != "none" else None
    sampling(out, budget, choice, temperature, top_p,
             forced_choice="A forced tool_choice cannot be combined with reasoning_effort on this model.",
             locked="{name} cannot be changed while reasoning_effort is set on this model.")

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
