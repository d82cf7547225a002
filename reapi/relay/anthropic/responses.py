"""The Responses API (`POST /v1/responses`) on `anthropic` channels: a Responses request -> a Messages payload,
and a whole Messages answer -> a `response` object (README "Responses API on Claude" has the table).

The body has passed reapi.api.responses_validation. What Claude cannot honour is refused here, before
anything goes upstream, with a 400 `unsupported_parameter` naming the param: hosted tools (anything but
`function`), `previous_response_id`, `conversation`, `prompt`, `background: true`, `max_tool_calls`,
`truncation: "auto"`, `top_logprobs` > 0, `include` values other than `reasoning.encrypted_content`, file ids,
item references and every other field not listed in HONOURED / IGNORED. `store` is accepted and is a no-op:
reapi keeps nothing of a Claude response, so the answer says `store: false` and its id is never found by the
stored-response routes.

Thinking: `reasoning.effort` -> `thinking.budget_tokens` = min(THINKING_BUDGETS[effort], max_tokens // 2),
at least MIN_THINKING_BUDGET (chat's mapping, reapi.relay.anthropic.request); `max_tokens` is billing's cap
(`max_output_tokens`, else the model's cap). A thinking block comes back as a `reasoning` item whose summary
is the thinking text; its signature travels in `encrypted_content` (when `include` asks for it) so a later
request can hand the block back to Claude. Pure: no I/O.
"""
from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import orjson

from reapi.catalog import Channel
from reapi.errors import GatewayError, bad_request
from reapi.relay.anthropic.adapter import ADAPTER as CHAT_ADAPTER
from reapi.relay.anthropic.errors import _bad_upstream, load_message
from reapi.relay.anthropic.request import (ANTHROPIC_VERSION, JSON_OBJECT_INSTRUCTION, MIN_THINKING_BUDGET,
                                           THINKING_BUDGETS, UNSUPPORTED, _file_block, _image_block, clamp_budget,
                                           push_turn, sampling, upstream_url, with_parallel_flag)
from reapi.relay.anthropic.request import _cannot as cannot
from reapi.relay.base import UpstreamRequest, Usage
from reapi.relay.openai_responses import Whole
from reapi.relay.usage import anthropic_usage

ENCRYPTED = "reasoning.encrypted_content"
# Fields translated for Claude; fields accepted and not sent (see the module docstring and README).
HONOURED: frozenset[str] = frozenset({
    "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice",
    "parallel_tool_calls", "reasoning", "text", "include", "stream", "user", "safety_identifier", "store",
    "metadata", "background", "truncation", "top_logprobs",
})
IGNORED: frozenset[str] = frozenset({
    "service_tier", "stream_options", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options",
    "client_metadata", "group",
})
# Claude has no schema-less JSON mode: text.format json_object becomes request.JSON_OBJECT_INSTRUCTION (as
# chat's response_format json_object does on the anth branch).
# stop_reason -> (status, incomplete_details.reason)
_STOP: dict[str, tuple[str, str | None]] = {
    "max_tokens": ("incomplete", "max_output_tokens"),
    "model_context_window_exceeded": ("incomplete", "max_output_tokens"),
    "refusal": ("incomplete", "content_filter"),
}
CLAUDE_ID_PREFIX = "resp_claude_"  # the ids of our Claude responses: never stored, never found
_SEALED = "rcl1."  # our encrypted_content: a thinking block Claude may be handed back


def _claude(what: str, param: str) -> GatewayError:
    return cannot(f"{what} is not supported on this model (Claude) by this gateway's Responses API.", param)


def check_fields(body: dict) -> None:
    """400 for every field (or value) Claude cannot honour; see the module docstring."""
    for key, value in body.items():
        if value is None or key in HONOURED or key in IGNORED:
            continue
        raise _claude(f"'{key}'", key)
    if body.get("background") is True:
        raise _claude("background mode", "background")
    if body.get("truncation") == "auto":
        raise _claude("truncation 'auto'", "truncation")
    if body.get("top_logprobs"):
        raise _claude("top_logprobs", "top_logprobs")
    for j, inc in enumerate(body.get("include") or ()):
        if inc != ENCRYPTED:
            raise _claude(f"include {str(inc)[:80]!r}", f"include[{j}]")


# --- input -> Messages turns ---------------------------------------------------------------------

def seal(block: dict) -> str:
    """A thinking or redacted_thinking block as our `encrypted_content` (opaque to clients)."""
    keep = {"thinking": block.get("thinking") or "", "signature": block.get("signature") or ""} \
        if block.get("type") == "thinking" else {"data": block.get("data") or ""}
    return _SEALED + base64.urlsafe_b64encode(orjson.dumps(keep)).decode()


def unseal(value: Any) -> dict | None:
    """The thinking block an `encrypted_content` we made holds; None if it is not ours or is malformed."""
    if not isinstance(value, str) or not value.startswith(_SEALED):
        return None
    try:
        obj = orjson.loads(base64.urlsafe_b64decode(value[len(_SEALED):].encode()))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if isinstance(obj, dict) and isinstance(obj.get("thinking"), str) and isinstance(obj.get("signature"), str) \
            and obj["signature"]:
        return {"type": "thinking", "thinking": obj["thinking"], "signature": obj["signature"]}
    if isinstance(obj, dict) and isinstance(obj.get("data"), str) and obj["data"] and len(obj) == 1:
        return {"type": "redacted_thinking", "data": obj["data"]}
    return None


def _text(part: dict, param: str) -> dict | None:
    text = part.get("text")
    if not isinstance(text, str):
        raise bad_request(f"{param}.text must be a string.", param=f"{param}.text")
    return {"type": "text", "text": text} if text else None


def _image(part: dict, param: str) -> dict:
    if part.get("file_id") is not None:
        raise _claude("input_image file_id (send image_url: an http(s) URL or a data: URL)", f"{param}.file_id")
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise bad_request(f"{param}.image_url is required.", param=f"{param}.image_url")
    return _image_block({"image_url": {"url": url}}, f"{param}.image_url")


def _file(part: dict, param: str) -> dict:
    if part.get("file_id") is not None:
        raise _claude("input_file file_id (send file_data as a data: URL)", f"{param}.file_id")
    url = part.get("file_url")
    if isinstance(url, str) and url[:8].lower() == "https://":
        return {"type": "document", "source": {"type": "url", "url": url}}
    data = part.get("file_data")
    if isinstance(data, str) and data and data[:5].lower() != "data:":
        data = "data:application/pdf;base64," + data
    return _file_block({"file": {"file_data": data, "filename": part.get("filename")}}, param)


def _parts(content: Any, param: str, kinds: frozenset[str]) -> list[dict]:
    """A message's (or a call output's) content -> Claude blocks; `kinds`: the part types allowed there."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise bad_request(f"{param} must be a string or an array of content parts.", param=param)
    blocks: list[dict] = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in kinds:
            raise _claude(f"A content part of type {str(kind)[:40]!r} here", f"{p}.type")
        if kind in ("input_text", "output_text"):
            block = _text(part, p)
        elif kind == "refusal":
            refusal = part.get("refusal")
            block = {"type": "text", "text": refusal} if isinstance(refusal, str) and refusal else None
        elif kind == "input_image":
            block = _image(part, p)
        else:
            block = _file(part, p)
        if block is not None:
            blocks.append(block)
    return blocks


_USER_PARTS = frozenset({"input_text", "input_image", "input_file"})
_ASSISTANT_PARTS = frozenset({"output_text", "refusal", "input_text"})
_SYSTEM_PARTS = frozenset({"input_text"})


def _arguments(value: Any, param: str) -> dict:
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    try:
        parsed = orjson.loads(value) if isinstance(value, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise bad_request(f"{param} must be a JSON object (as a string).", param=param)
    return parsed


def _call_id(item: dict, param: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{param}.call_id is required.", param=f"{param}.call_id")
    return call_id


def convert_input(body: dict) -> tuple[list[dict], list[dict]]:
    """`instructions` and `input` -> (Claude system blocks, alternating Claude turns). System and developer
    messages anywhere in `input` join the system prompt (Claude has one, at the top)."""
    system: list[dict] = []
    turns: list[dict] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append({"type": "text", "text": instructions})

    def push(role: str, blocks: list[dict]) -> None:
        push_turn(turns, role, blocks)

    items = body.get("input")
    if isinstance(items, str):
        push("user", [{"type": "text", "text": items}] if items else [])
        items = []
    for i, item in enumerate(items or ()):
        param = f"input[{i}]"
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            content = item.get("content")
            if role in ("system", "developer"):
                system.extend(_parts(content, f"{param}.content", _SYSTEM_PARTS))
            elif role == "user":
                push("user", _parts(content, f"{param}.content", _USER_PARTS))
            elif role == "assistant":
                push("assistant", _parts(content, f"{param}.content", _ASSISTANT_PARTS))
            else:
                raise bad_request(f"{param}.role must be one of user, assistant, system, developer.",
                                  param=f"{param}.role")
        elif kind == "function_call":
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise bad_request(f"{param}.name is required.", param=f"{param}.name")
            name = claude_tool_name(name, item.get("namespace"))
            push("assistant", [{"type": "tool_use", "id": _call_id(item, param), "name": name,
                                "input": _arguments(item.get("arguments"), f"{param}.arguments")}])
        elif kind == "function_call_output":
            block: dict = {"type": "tool_result", "tool_use_id": _call_id(item, param)}
            output = _parts(item.get("output"), f"{param}.output", _USER_PARTS)
            if output:
                block["content"] = output
            push("user", [block])
        elif kind == "reasoning":
            # Ours (a thinking block with its signature) goes back to Claude; any other is dropped.
            thinking = unseal(item.get("encrypted_content"))
            if thinking is not None:
                push("assistant", [thinking])
        else:
            raise _claude(f"An input item of type {kind[:40]!r}", f"{param}.type")
    return system, turns


# --- tools, choice, thinking, format ---------------------------------------------------------------

NS_SEP = "__"  # a namespace's function `f` in namespace `crm` is Claude's tool `crm__f`


def claude_tool_name(name: str, namespace: Any) -> str:
    return f"{namespace}{NS_SEP}{name}" if isinstance(namespace, str) and namespace else name


def namespaced(body: dict) -> dict[str, tuple[str, str]]:
    """Claude tool name -> (namespace, function name) for the request's namespace tools."""
    out: dict[str, tuple[str, str]] = {}
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "namespace" and isinstance(tool.get("name"), str):
            for inner in tool.get("tools") or ():
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    out[claude_tool_name(inner["name"], tool["name"])] = (tool["name"], inner["name"])
    return out


def _function_tools(tools: list) -> list[tuple[str, dict, str | None]]:
    """(param, function tool, namespace) of every function tool, namespace tools flattened; 400 for the rest."""
    out = []
    for j, tool in enumerate(tools):
        kind = tool.get("type")
        if kind == "namespace":
            ns = tool.get("name")
            if not isinstance(ns, str) or not ns or not isinstance(tool.get("tools"), list):
                raise bad_request(f"tools[{j}] needs a name and tools.", param=f"tools[{j}]")
            for k, inner in enumerate(tool["tools"]):
                p = f"tools[{j}].tools[{k}]"
                if not isinstance(inner, dict) or inner.get("type") != "function":
                    kind = inner.get("type") if isinstance(inner, dict) else None
                    raise _claude(f"The tool type {str(kind)[:40]!r}", f"{p}.type")
                if not isinstance(inner.get("name"), str) or not inner["name"]:
                    raise bad_request(f"{p}.name is required.", param=f"{p}.name")
                out.append((p, inner, ns))
        elif kind == "function":
            out.append((f"tools[{j}]", tool, None))
        else:
            raise _claude(f"The hosted tool {str(kind)[:40]!r}", f"tools[{j}].type")
    return out


def convert_tools(tools: list) -> list[dict]:
    out = []
    for param, tool, ns in _function_tools(tools):
        if tool.get("defer_loading"):
            raise _claude("defer_loading (tool search)", f"{param}.defer_loading")
        entry: dict = {"name": claude_tool_name(tool["name"], ns)}
        if isinstance(tool.get("description"), str) and tool["description"]:
            entry["description"] = tool["description"]
        params = tool.get("parameters")
        entry["input_schema"] = params if isinstance(params, dict) else {"type": "object", "properties": {}}
        if tool.get("strict") is True:
            entry["strict"] = True
        out.append(entry)
    return out


def convert_tool_choice(choice: Any, names: set[str]) -> dict | None:
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice} if names else None
    if choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if not isinstance(name, str) or name not in names:
            raise bad_request("tool_choice.name must name one of the request's function tools.",
                              param="tool_choice.name")
        out = {"type": "tool", "name": name}
    else:
        kind = choice.get("type") if isinstance(choice, dict) else choice
        raise _claude(f"tool_choice {str(kind)[:40]!r}", "tool_choice")
    if not names:
        raise bad_request("tool_choice requires function tools.", param="tool_choice")
    return out


def thinking_budget(effort: str, max_tokens: int) -> int:
    """reasoning.effort -> budget_tokens: min(THINKING_BUDGETS[effort], max_tokens // 2), at least 1024."""
    nominal = THINKING_BUDGETS.get(effort)
    if nominal is None:
        raise _claude(f"reasoning.effort {effort!r}", "reasoning.effort")
    if max_tokens <= MIN_THINKING_BUDGET:
        raise bad_request(f"reasoning.effort {effort!r} needs max_output_tokens above {MIN_THINKING_BUDGET} "
                          f"on this model (it is {max_tokens}); raise it or set reasoning.effort to \"none\".",
                          param="reasoning.effort", code="invalid_value")
    return clamp_budget(nominal, max_tokens)


def output_config(text: Any) -> tuple[dict | None, bool]:
    """text.format -> (Claude's output_config.format or None, whether to ask for a JSON object)."""
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None, False
    if kind == "json_object":
        return None, True
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise bad_request("text.format.schema must be a JSON Schema object.", param="text.format.schema")
        return {"type": "json_schema", "schema": schema}, False
    raise _claude(f"text.format {str(kind)[:40]!r}", "text.format.type")


def build_payload(body: dict, upstream_model: str, *, stream: bool, max_tokens: int) -> dict:
    """A validated Responses body -> Claude's Messages payload (raises 400 for what Claude cannot honour)."""
    check_fields(body)
    system, turns = convert_input(body)
    if not turns:
        raise bad_request("input must hold at least one user message.", param="input")
    fmt, json_object = output_config(body.get("text"))
    if json_object:
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    out: dict = {"model": upstream_model, "max_tokens": max_tokens}
    if system:
        out["system"] = system
    out["messages"] = turns
    if fmt is not None:
        out["output_config"] = {"format": fmt}
    tools = convert_tools(body.get("tools") or [])
    if tools:
        out["tools"] = tools
    choice = with_parallel_flag(convert_tool_choice(body.get("tool_choice"), {t["name"] for t in tools}),
                                bool(tools), body.get("parallel_tool_calls"))
    if choice is not None:
        out["tool_choice"] = choice
    temperature, top_p = body.get("temperature"), body.get("top_p")
    if temperature is not None and not 0 <= temperature <= 1:
        raise bad_request(f"temperature must be between 0 and 1 on this model (got {temperature}).",
                          param="temperature", code="invalid_value")
    reasoning = body.get("reasoning") or {}
    effort = reasoning.get("effort")
    budget = thinking_budget(effort, max_tokens) if effort is not None and effort != "none" else None
    sampling(out, budget, choice, temperature, top_p,
             forced_choice="A forced tool_choice (required or a named function) cannot be combined with "
                           "reasoning.effort on this model (Claude).",
             locked="{name} cannot be changed while reasoning.effort is set on this model (Claude).")
    user_id = body.get("safety_identifier") or body.get("user")
    if isinstance(user_id, str) and user_id:
        out["metadata"] = {"user_id": user_id}
    if stream:
        out["stream"] = True
    return out


# --- a whole Messages answer -> a response object -------------------------------------------------

def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def response_shell(rid: str, created: int, public_model: str, body: dict, status: str) -> dict:
    """A `response` object for this request (output and usage filled in by the caller)."""
    reasoning = body.get("reasoning") or {}
    text = body.get("text") or {}
    return {
        "id": rid, "object": "response", "created_at": created, "status": status, "background": False,
        "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "max_tool_calls": None, "model": public_model,
        "output": [], "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": None, "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": body.get("safety_identifier"), "service_tier": "default",
        "store": False,  # reapi keeps nothing of a Claude response
        "temperature": body.get("temperature", 1.0), "text": {"format": text.get("format") or {"type": "text"},
                                                             "verbosity": text.get("verbosity") or "medium"},
        "tool_choice": body.get("tool_choice") or "auto", "tools": body.get("tools") or [], "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0), "truncation": "disabled", "usage": None, "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def status_of(stop_reason: Any) -> tuple[str, dict | None]:
    status, reason = _STOP.get(stop_reason if isinstance(stop_reason, str) else "", ("completed", None))
    return status, ({"reason": reason} if reason else None)


def responses_usage(usage: Usage | None) -> dict | None:
    """Billing's usage in the Responses shape: input_tokens counts cache reads and writes too."""
    if usage is None:
        return None
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},  # Claude does not report it apart
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


def reasoning_item(block: dict, include: bool) -> dict:
    text = block.get("thinking") if block.get("type") == "thinking" else ""
    item: dict = {"id": new_id("rs_"), "type": "reasoning",
                  "summary": [{"type": "summary_text", "text": text}] if text else []}
    if include:
        item["encrypted_content"] = seal(block)
    return item


def message_item(texts: list[str], status: str) -> dict:
    return {"id": new_id("msg_"), "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": [], "logprobs": []} for t in texts]}


def call_item(block: dict, arguments: str, names: dict[str, tuple[str, str]]) -> dict:
    """A tool_use block as a function_call item (a namespace's function named back: `namespace` + `name`)."""
    item = {"id": new_id("fc_"), "type": "function_call", "status": "completed", "call_id": block.get("id"),
            "name": block.get("name"), "arguments": arguments}
    if block.get("name") in names:
        item["namespace"], item["name"] = names[block["name"]]
    return item


def wants_encrypted(body: dict) -> bool:
    return ENCRYPTED in (body.get("include") or ())


def _checked_block(block: Any) -> dict:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise _bad_upstream("a malformed content block")
    kind = block["type"]
    if kind == "text" and not isinstance(block.get("text"), str) \
            or kind == "thinking" and not isinstance(block.get("thinking"), str) \
            or kind == "tool_use" and not (isinstance(block.get("id"), str) and isinstance(block.get("name"), str)
                                           and isinstance(block.get("input", {}), dict)):
        raise _bad_upstream("a malformed content block")
    return block


def parse_message(raw: bytes, public_model: str, body: dict) -> Whole:
    """A 2xx Messages body -> a Whole (reapi.relay.openai_responses) holding our response object."""
    msg = load_message(raw)
    content = msg["content"]
    status, incomplete = status_of(msg.get("stop_reason"))
    include = wants_encrypted(body)
    names = namespaced(body)
    output: list[dict] = []
    produced: list[str] = []
    for block in content:  # one output item a content block, in order
        block = _checked_block(block)
        kind = block["type"]
        if kind == "text":
            output.append(message_item([block["text"]], status))
            produced.append(block["text"])
        elif kind in ("thinking", "redacted_thinking"):
            output.append(reasoning_item(block, include))
            produced.append(block.get("thinking") or "")
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            output.append(call_item(block, arguments, names))
            produced.append(block["name"] + arguments)
    usage = anthropic_usage(msg.get("usage"))
    obj = response_shell(new_id(CLAUDE_ID_PREFIX), int(time.time()), public_model, body, status)
    obj["incomplete_details"] = incomplete
    obj["output"] = output
    obj["usage"] = responses_usage(usage)
    text = "".join(produced)
    has_output = any(i["type"] != "reasoning" for i in output)
    return Whole(orjson.dumps(obj), usage, None, status, text, has_output)


class ClaudeResponsesAdapter:
    """Builds a Responses call's upstream request on an `anthropic` channel and reads its answer."""

    tokenizer_family = "claude"
    requires_max_tokens = True  # Claude requires max_tokens: billing's cap is always sent
    stores = False  # nothing of a Claude response is kept: no id recorded, store is a no-op
    raw_lines = False  # the stream converter is fed `data:` payloads

    def build_request(self, channel: Channel, body: dict, upstream_model: str, *, stream: bool,
                      max_tokens: int | None) -> UpstreamRequest:
        if max_tokens is None:
            raise ValueError("Claude needs max_tokens: the route always sends billing's cap")
        payload = build_payload(body, upstream_model, stream=stream, max_tokens=max_tokens)
        headers = {"x-api-key": channel.api_key, "anthropic-version": ANTHROPIC_VERSION,
                   "content-type": "application/json"}
        return UpstreamRequest(url=upstream_url(channel.base_url), headers=headers, body=orjson.dumps(payload))

    def parse_whole(self, raw: bytes, public_model: str, body: dict) -> Whole:
        return parse_message(raw, public_model, body)

    def stream_converter(self, public_model: str, channel: Channel, body: dict, on_id=None):
        from reapi.relay.anthropic.responses_stream import ClaudeResponsesStream

        return ClaudeResponsesStream(public_model, channel, body)

    def map_error(self, status: int, raw: bytes, channel: Channel) -> GatewayError:
        return CHAT_ADAPTER.map_error(status, raw, channel)


ADAPTER = ClaudeResponsesAdapter()
