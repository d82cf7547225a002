"""Anthropic Messages wire format: request reading and response/stream building.

Non-stream: a ``message`` object whose ``content`` holds an optional ``thinking``
block (with a signature, when the request has ``thinking.type`` "enabled" or
"adaptive"), then one ``text`` or ``tool_use`` block.

Stream (named SSE events, in the real order)::

    message_start        message with empty content; usage.output_tokens is 1
    content_block_start  per block, then one ``ping`` after the first block start
    content_block_delta  thinking_delta* + signature_delta | text_delta* | input_json_delta*
    content_block_stop
    message_delta        stop_reason + cumulative usage (input/cache/output tokens)
    message_stop

Structured outputs: with ``output_config.format`` (or the beta ``output_format``) of type json_schema,
a text answer is a JSON value valid against the schema (reapi.mock_upstream.json_schema).

Usage: ``input_tokens`` excludes cache reads/writes as in the real API; the mock
reports ``[mock cached_tokens=N]`` as ``cache_read_input_tokens`` and
``[mock cache_write_tokens=N]`` as ``cache_creation_input_tokens`` without changing
``input_tokens``.  ``output_tokens`` counts thinking + text tokens (or the tool
call's name + arguments tokens).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from .directives import (
    THINKING_SIGNATURE,
    Plan,
    RequestInfo,
    StreamScript,
    count_pieces,
    new_id,
    split_arguments,
)
from .json_schema import instance

dumps = orjson.dumps

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES: dict[str, str] = {
    "invalid_request_error": "Invalid request (mock).",
    "authentication_error": "invalid x-api-key",
    "permission_error": "Your API key does not have permission to use the specified resource (mock).",
    "not_found_error": "Not found (mock).",
    "rate_limit_error": "Rate limited (mock).",
    "api_error": "Internal server error (mock).",
    "overloaded_error": "Overloaded",
}

STOP = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use", "refusal": "refusal",
        "content_filter": "refusal", "tool_calls": "tool_use"}


def default_error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_object(status: int, message: str | None = None, type: str | None = None,
                 code: str | None = None) -> dict[str, Any]:
    t = type or default_error_type(status)
    err: dict[str, Any] = {"type": t, "message": message or ERROR_MESSAGES.get(t, f"Mock error (HTTP {status}).")}
    if code is not None:
        err["details"] = {"error_code": code}
    return err


def error_body(status: int, message: str | None = None, type: str | None = None,
               code: str | None = None) -> bytes:
    return dumps({"type": "error", "error": error_object(status, message, type, code), "request_id": new_id("req_")})


# --------------------------------------------------------------------------------------
# Request reading
# --------------------------------------------------------------------------------------


def _blocks_text(content: Any, out: list[str], *, tool_use: bool) -> bool:
    """Append the text of ``content``; return True if it holds a tool_result block."""
    if isinstance(content, str):
        out.append(content)
        return False
    has_result = False
    if isinstance(content, list):
        for b in content:
            if not isinstance(b, dict):
                continue
            t = b.get("type")
            if t == "text":
                if isinstance(b.get("text"), str):
                    out.append(b["text"])
            elif t == "tool_result":
                has_result = True
                _blocks_text(b.get("content"), out, tool_use=False)
            elif t in ("tool_use", "server_tool_use") and tool_use:
                out.append(dumps(b.get("input", {})).decode())
    return has_result


def prompt_pieces(body: dict[str, Any]) -> list[str]:
    out: list[str] = []
    _blocks_text(body.get("system"), out, tool_use=False)
    for msg in body.get("messages") or ():
        if isinstance(msg, dict):
            _blocks_text(msg.get("content"), out, tool_use=True)
    return out


def count_prompt(body: dict[str, Any]) -> int:
    return count_pieces(prompt_pieces(body))


def pick_tool(body: dict[str, Any]) -> tuple[str, Any] | None:
    tools = body.get("tools")
    if not tools or not isinstance(tools, list):
        return None
    choice = body.get("tool_choice")
    ctype = choice.get("type") if isinstance(choice, dict) else None
    if ctype == "none":
        return None
    named = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
    if not named:
        return None
    if ctype == "tool":
        name = choice.get("name")
        for t in named:
            if t["name"] == name:
                return name, t.get("input_schema")
        raise ValueError(f"tool_choice names an unknown tool {name!r}")
    custom = [t for t in named if "input_schema" in t]
    first = (custom or named)[0]
    return first["name"], first.get("input_schema")


def read_request(body: dict[str, Any]) -> RequestInfo:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("model: Field required")
    cap = body.get("max_tokens")
    if not isinstance(cap, int) or isinstance(cap, bool):
        raise ValueError("max_tokens: Field required")
    if cap < 1:
        raise ValueError("max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages: at least one message is required")
    last = messages[-1]
    if not isinstance(last, dict):
        raise ValueError("messages: each message must be an object")
    text: list[str] = []
    directive_text = ""
    after_tool_result = False
    if last.get("role") == "user":
        after_tool_result = _blocks_text(last.get("content"), text, tool_use=False)
        directive_text = text[0] if len(text) == 1 else " ".join(text)
    else:
        for msg in reversed(messages):
            if isinstance(msg, dict) and msg.get("role") == "user":
                _blocks_text(msg.get("content"), text, tool_use=False)
                directive_text = " ".join(text)
                break
    thinking = body.get("thinking")
    return RequestInfo(
        model=model,
        stream=body.get("stream") is True,
        cap=cap,
        tool=pick_tool(body) if last.get("role") == "user" and not after_tool_result else None,
        after_tool_result=after_tool_result,
        thinking=isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"),
        directive_text=directive_text,
    )


def read_count_request(body: dict[str, Any]) -> str:
    """Check a ``/v1/messages/count_tokens`` body (model and messages, as the real API requires);
    return the text of its last user message, where directives are read. Raises ValueError."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("model: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages: at least one message is required")
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            text: list[str] = []
            _blocks_text(msg.get("content"), text, tool_use=False)
            return " ".join(text)
    return ""


def count_answer(input_tokens: int) -> bytes:
    """The count_tokens answer: the same count a /v1/messages call reports as ``input_tokens``."""
    return dumps({"input_tokens": input_tokens})


# --------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------


def _usage(plan: Plan, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": plan.prompt_tokens,
        "cache_creation_input_tokens": plan.cache_write_tokens,
        "cache_read_input_tokens": plan.cached_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": plan.cache_write_tokens, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _stop(plan: Plan) -> str:
    return STOP.get(plan.finish, plan.finish)


def output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema of Claude's structured outputs in a request: ``output_config.format`` (GA) or the
    beta top-level ``output_format``, when its type is json_schema."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        fmt = body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]
    return None


def structured(plan: Plan, body: dict[str, Any]) -> Plan:
    """A text answer under structured outputs: a JSON value that validates against the schema, in
    pieces (each a streamed text delta); output_tokens counts its tokens (plus any thinking)."""
    schema = output_schema(body)
    if schema is None or plan.tool_call is not None:
        return plan
    text = dumps(instance(schema)).decode()
    return replace(plan, tokens=tuple(split_arguments(text)),
                   completion_tokens=len(plan.thinking) + count_pieces([text]))


def build_response(plan: Plan, body: dict[str, Any]) -> bytes:
    plan = structured(plan, body)
    content: list[dict[str, Any]] = []
    if plan.thinking:
        content.append({"type": "thinking", "thinking": "".join(plan.thinking), "signature": THINKING_SIGNATURE})
    if plan.tool_call is not None:
        c = plan.tool_call
        content.append({"type": "tool_use", "id": c.id.replace("call_", "toolu_", 1), "name": c.name, "input": c.input})
    else:
        content.append({"type": "text", "text": "".join(plan.tokens)})
    out: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": _stop(plan),
        "stop_sequence": None,
    }
    if plan.usage:
        out["usage"] = _usage(plan, plan.completion_tokens)
    return dumps(out)


def _event(name: bytes, data: bytes) -> bytes:
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


_PING = _event(b"ping", b'{"type":"ping"}')
_STOP_EVENT = _event(b"message_stop", b'{"type":"message_stop"}')


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event(b"content_block_delta", dumps({"type": "content_block_delta", "index": index, "delta": delta}))


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return _event(b"content_block_start", dumps({"type": "content_block_start", "index": index, "content_block": block}))


def _block_stop(index: int) -> bytes:
    return _event(b"content_block_stop", b'{"type":"content_block_stop","index":' + str(index).encode() + b"}")


def build_stream(plan: Plan, body: dict[str, Any], error: dict[str, Any] | None) -> StreamScript:
    plan = structured(plan, body)
    message: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if plan.usage:
        message["usage"] = _usage(plan, min(1, plan.completion_tokens))
    head = _event(b"message_start", dumps({"type": "message_start", "message": message}))
    content: list[bytes] = []
    pending = b""  # glued in front of the next content unit (block transitions)
    index = 0
    if plan.thinking:
        head += _block_start(0, {"type": "thinking", "thinking": "", "signature": ""}) + _PING
        for t in plan.thinking:
            content.append(_delta(0, {"type": "thinking_delta", "thinking": t}))
        pending = _delta(0, {"type": "signature_delta", "signature": THINKING_SIGNATURE}) + _block_stop(0)
        index = 1
    if plan.tool_call is not None:
        c = plan.tool_call
        start = _block_start(index, {"type": "tool_use", "id": c.id.replace("call_", "toolu_", 1), "name": c.name,
                                     "input": {}})
        opening = _delta(index, {"type": "input_json_delta", "partial_json": ""})
        pieces = [_delta(index, {"type": "input_json_delta", "partial_json": p}) for p in split_arguments(c.arguments)]
    else:
        start = _block_start(index, {"type": "text", "text": ""})
        opening = b""
        pieces = [_delta(index, {"type": "text_delta", "text": t}) for t in plan.tokens]
    if index == 0:
        head += start + _PING + opening  # one ping, right after the first block start
    else:
        pending += start + opening
    if pieces:
        pieces[0] = pending + pieces[0]
        pending = b""
    content.extend(pieces)
    delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": _stop(plan), "stop_sequence": None}}
    if plan.usage:
        u = _usage(plan, plan.completion_tokens)
        del u["cache_creation"], u["service_tier"]
        delta["usage"] = u
    tail = pending + _block_stop(index) + _event(b"message_delta", dumps(delta)) + _STOP_EVENT
    error_event = b"" if error is None else _event(b"error", dumps({"type": "error", "error": error}))
    return StreamScript(head=head, content=content, tail=tail, error_event=error_event)
